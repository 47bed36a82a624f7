"""The board shows what a service wrote (rows graded, errors, grades per minute), read from the real outcome table,
in a real browser."""

import json
import threading
import urllib.request

from towerlab.board import make_server

import dbcases
from browser import Browser
from serve_helpers import run_serve, write_config


def test_the_board_shows_the_services_outcome_table(tmp_path, model_run, digit_rows):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    db = dbcases.Db(url)
    cfg = write_config(tmp_path / "serve.yaml", url, model_run)
    db.insert(dbcases.rows(digit_rows, 1, 40))
    db.insert([(500, 1, "1,2,x")])  # an error outcome
    assert run_serve(cfg, "--once").returncode == 0
    (tmp_path / "runs").mkdir()
    server = make_server(tmp_path / "runs", 0, every=0.5, service=str(cfg))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    browser = Browser(tmp_path / "profile")
    try:
        summary = json.loads(urllib.request.urlopen(base + "service.json", timeout=10).read())
        assert summary[0]["graded"] == 41 and summary[0]["errors"] == 1
        assert sum(summary[0]["per_minute"].values()) == 41  # graded just now: all in the last hour
        browser.goto(base)
        row = browser.wait(
            "document.querySelector('#outcomes tr[data-db]') && "
            "document.querySelector('#outcomes tr[data-db]').innerText"
        )
        assert (
            "41" in row and "2.44 %" in row and browser.eval("document.querySelectorAll('#outcomes rect').length") >= 1
        )
    finally:
        browser.close()
        server.shutdown()
        server.server_close()
