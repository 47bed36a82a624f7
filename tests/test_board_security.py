"""The board and reports against planted links and foreign Host headers (issue 24): nothing outside the served folder
is read or written, a GET writes nothing, a request not addressed to 127.0.0.1/localhost is refused."""

import http.client
import os
import threading
import time
from pathlib import Path

import pytest

from towerlab.board import find_runs, make_server
from towerlab.files import atomic_write, link_leaving

from helpers import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real digits run (a few steps), its report not written."""
    root = tmp_path_factory.mktemp("board-security")
    run_cli(
        "train",
        "digits",
        "--max-steps",
        "20",
        "--eval-every-steps",
        "20",
        "--out",
        str(root / "runs" / "digits"),
        env={"TOWERLAB_REPORT": "0"},
    )
    return root


@pytest.fixture
def world(trained, tmp_path):
    """A fresh copy of the runs folder and a secret file beside (outside) it."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(trained / "runs", root, symlinks=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:the secret\n")
    return root, secret


@pytest.fixture
def board(world):
    root, _ = world
    server = make_server(root, 0, every=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def get(port: int, path: str, host: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Host": host or f"127.0.0.1:{port}"})
    r = conn.getresponse()
    body = r.read().decode(errors="replace")
    conn.close()
    return r.status, body


def test_a_report_link_to_a_file_outside_is_neither_served_nor_overwritten(world, board):
    root, secret = world
    run = root / "digits"
    (run / "report.html").symlink_to(secret)
    os.utime(run / "metrics.jsonl", (time.time() + 10, time.time() + 10))  # the run has logged since the "report"
    code, body = get(board, "/report/digits/")
    assert code == 403 and "the secret" not in body and "link that leaves" in body
    assert secret.read_text() == "root:x:0:0:the secret\n"


def test_towerlab_report_replaces_a_planted_link_instead_of_writing_through_it(world):
    root, secret = world
    run = root / "digits"
    (run / "report.html").symlink_to(secret)
    run_cli("report", str(run))
    assert secret.read_text() == "root:x:0:0:the secret\n"
    assert not (run / "report.html").is_symlink() and "<html" in (run / "report.html").read_text()


@pytest.mark.parametrize("planted", ["metrics.jsonl", "final_metrics.json", "checkpoints/last.json", "tb"])
def test_a_run_holding_any_link_that_leaves_the_folder_is_refused(world, board, planted):
    root, secret = world
    target = root / "digits" / planted
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    target.symlink_to(secret if planted != "tb" else secret.parent)
    code, body = get(board, "/report/digits/")
    assert code == 403 and "the secret" not in body
    if planted in ("metrics.jsonl", "final_metrics.json"):  # what the listing reads is not read through a link
        assert "digits" not in [r["path"] for r in find_runs(root)]


def test_a_get_writes_nothing_and_a_stale_report_is_rendered_in_memory(world, board):
    root, _ = world
    run = root / "digits"
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    code, body = get(board, "/report/digits/")
    assert code == 200 and "<html" in body and "digits" in body
    code, again = get(board, "/report/digits/report.html")  # the address a search's link to a trial takes
    assert code == 200 and again == body
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # no report.html, nothing else


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "127.0.0.1:1", ""]
)
def test_a_request_not_addressed_to_the_board_is_refused(board, host):
    for path in ("/", "/runs.json", "/report/digits/"):
        code, body = get(board, path, host.format(port=board) or " ")
        assert code == 403 and "digits" not in body, (host, path)


def test_the_board_answers_its_own_addresses(board):
    for host in (f"127.0.0.1:{board}", f"localhost:{board}", f"LOCALHOST:{board}"):
        code, body = get(board, "/runs.json", host)
        assert code == 200 and '"digits"' in body


def test_a_port_out_of_range_is_one_line(tmp_path):
    proc = run_cli("board", str(tmp_path), "--port", "99999", check=False)
    assert proc.returncode == 2 and "--port 99999" in proc.stderr and "Traceback" not in proc.stderr


def test_atomic_write_never_follows_a_link(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("keep")
    (tmp_path / "out").symlink_to(secret)
    atomic_write(tmp_path / "out", "new")
    assert secret.read_text() == "keep" and (tmp_path / "out").read_text() == "new"
    assert link_leaving(tmp_path, tmp_path) is None
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("/")
    assert link_leaving(tmp_path, tmp_path) == tmp_path / "sub" / "up"


def test_a_metric_name_that_is_not_mathtext_still_gets_its_report(world):
    """A recipe's metric named like TeX ($, _{, ^) is a name: drawn as text, never parsed (it raised before)."""
    import json

    from towerlab import report

    root, _ = world
    run = root / "digits"
    with open(run / "metrics.jsonl", "a") as f:
        for step in (21, 22):
            f.write(json.dumps({"step": step, "val/odd$x_{1$": 0.5, "train/loss": 0.1}) + "\n")
    page = report.write(run).read_text()
    assert "<img" in page


@pytest.mark.parametrize(
    "path, code",
    [("/report/a%00b", 400), ("/report/" + "x" * 5000, 400), ("/report/" + "y" * 300 + "/" + "z" * 300, 404)],
)
def test_a_hostile_request_path_is_answered_not_dropped(board, path, code):
    """Issue 43: a NUL or a 5,000-character name raised inside the handler and the connection was dropped."""
    assert get(board, path)[0] == code


def test_every_page_carries_a_content_security_policy(world, board):
    """Issue 43: report pages had none; a name planted in a run must never load or send anything."""
    conn = http.client.HTTPConnection("127.0.0.1", board, timeout=60)
    for path in ("/", "/report/digits/"):
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{board}"})
        r = conn.getresponse()
        r.read()
        policy = r.getheader("Content-Security-Policy") or ""
        assert r.status == 200 and "default-src 'none'" in policy and r.getheader("X-Content-Type-Options") == "nosniff"
    conn.close()
    root, _ = world
    run_cli("report", str(root / "digits"))
    page = (root / "digits" / "report.html").read_text()
    assert "http-equiv='Content-Security-Policy'" in page and "default-src 'none'" in page


def test_a_run_with_a_string_where_a_number_belongs_is_listed_without_it(world):
    """Issue 43: one such run blanked the board's whole table (its page called toFixed on a string)."""
    import json
    import shutil

    root, _ = world
    shutil.copytree(root / "digits", root / "odd")
    final = json.loads((root / "odd" / "final_metrics.json").read_text())
    final["best"]["value"], final["wall_s"] = "0.9", [1]
    (root / "odd" / "final_metrics.json").write_text(json.dumps(final))
    rows = {r["path"]: r for r in find_runs(root)}
    assert rows["odd"]["metric"] is None and rows["odd"]["seconds"] is None
    assert isinstance(rows["digits"]["metric"], float)
