"""The board and the reports in a real browser (headless Chromium over the DevTools protocol): every run listed
with its status and metric, every picture decodes, the report's figure is the run's own; screenshots saved."""

import json
import shutil
import threading

import pytest
from browser import BROKEN_IMAGES, Browser
from helpers import run_cli

from towerlab.board import find_runs, make_server


@pytest.fixture
def board(tmp_path, lstm_run):
    root = tmp_path / "runs"
    run_cli("train", "digits", "--epochs", "2", "--out", str(root / "digits"))
    shutil.copytree(lstm_run, root / "molecules" / "lstm")
    (root / "not-a-run").mkdir()
    server = make_server(root, 0, every=0.5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_the_board_lists_every_run_and_its_reports_render(board, browser, tmp_path):
    root, url = board
    browser.goto(url)
    rows = browser.wait("document.querySelectorAll('#runs tbody tr').length === 2 && "
                        "Array.from(document.querySelectorAll('#runs tbody tr')).map(r => r.dataset.run)")
    assert sorted(rows) == ["digits", "molecules/lstm"]
    text = browser.eval("document.querySelector('#runs').innerText")
    best = json.loads((root / "digits" / "final_metrics.json").read_text())["best"]["value"]
    assert "done" in text and f"accuracy {best:.4f}" in text
    browser.screenshot(tmp_path / "board.png")
    browser.eval("document.querySelector('tr[data-run=\"digits\"] a').click()")
    browser.wait("document.title.startsWith('digits') && document.readyState === 'complete'")
    assert browser.eval("document.images.length") >= 6 and browser.eval(BROKEN_IMAGES) == 0
    assert float(browser.eval("document.getElementById('accuracy').textContent")) == round(best, 4)
    browser.screenshot(tmp_path / "report.png")
    browser.goto(url + "report/molecules/lstm")
    assert browser.eval("document.images.length") >= 3 and browser.eval(BROKEN_IMAGES) == 0
    for name in ("board.png", "report.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_the_board_is_on_loopback_and_stays_inside_its_folder(board):
    import urllib.error
    import urllib.request

    root, url = board
    assert url.startswith("http://127.0.0.1:")
    assert [r["path"] for r in find_runs(root)] == ["digits", "molecules/lstm"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "report/..%2F..%2Fetc", timeout=10)
    assert e.value.code == 404


def test_a_folder_that_is_not_there_is_one_line(tmp_path):
    proc = run_cli("board", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
