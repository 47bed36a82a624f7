"""The board and the reports in a real browser (headless Chromium over the DevTools protocol): every run listed
with its status and metric, every picture decodes, the report's figure is the run's own; screenshots saved."""

import json
import threading

import pytest

from towerlab.board import find_runs, make_server

from browser import BROKEN_IMAGES, Browser
from helpers import run_cli


@pytest.fixture
def board(every_kind):
    server = make_server(every_kind, 0, every=0.5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield every_kind, f"http://127.0.0.1:{server.server_address[1]}/"
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
    trials = len(list((root / "search" / "trials").iterdir()))
    listed = browser.wait(
        f"document.querySelectorAll('#runs tbody tr').length === {9 + trials} && "
        "Array.from(document.querySelectorAll('#runs tbody tr')).map(r => r.dataset.run)"
    )
    assert {
        "digits",
        "fcn8s",
        "segdec",
        "chemvae",
        "smiles-lstm",
        "ensemble/member0",
        "ensemble/member1",
        "jobs/small",
        "jobs/wide",
    } <= set(listed)
    assert sum(r.startswith("search/trials/") for r in listed) == trials >= 3 and "not-a-run" not in listed
    text = browser.eval("document.querySelector('#runs').innerText")
    best = json.loads((root / "digits" / "final_metrics.json").read_text())["best"]["value"]
    assert "done" in text and f"accuracy {best:.4f}" in text
    segdec = browser.eval("document.querySelector('tr[data-run=\"segdec\"]').innerText")
    final = json.loads((root / "segdec" / "final_metrics.json").read_text())
    assert f"pixel_aupro {final['pixel_aupro']:.4f}" in segdec and "image_auroc" in segdec  # anomalib's figures
    browser.screenshot(tmp_path / "board.png")
    browser.eval("document.querySelector('tr[data-run=\"digits\"] a').click()")
    browser.wait("document.title.startsWith('digits') && document.readyState === 'complete'")
    assert browser.eval("document.images.length") >= 6 and browser.eval(BROKEN_IMAGES) == 0
    assert float(browser.eval("document.getElementById('accuracy').textContent")) == round(best, 4)
    browser.screenshot(tmp_path / "report.png")
    assert (tmp_path / "board.png").stat().st_size > 10_000 and (tmp_path / "report.png").stat().st_size > 10_000


def test_the_board_is_on_loopback_and_stays_inside_its_folder(board):
    import urllib.error
    import urllib.request

    root, url = board
    assert url.startswith("http://127.0.0.1:")
    assert "not-a-run" not in [r["path"] for r in find_runs(root)]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "report/..%2F..%2Fetc", timeout=10)
    assert e.value.code == 404


def test_a_folder_that_is_not_there_is_one_line(tmp_path):
    proc = run_cli("board", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


REPORTS = {
    "digits": ("Most confident mistakes", 6),
    "fcn8s": ("Validation images", 6),
    "segdec": ("Precision-recall and ROC", 6),
    "chemvae": ("training set size", 3),
    "smiles-lstm": ("reinvent-qed", 7),  # beside hillclimb-qed: two more pictures
    "search": ("Trials", 2),
    "ensemble": ("Side by side", 1),
    "jobs": ("Side by side", 1),
}


def test_every_kind_of_report_renders_in_the_browser(every_kind, browser, tmp_path):
    for name, (marker, images) in REPORTS.items():
        browser.goto(f"file://{every_kind / name / 'report.html'}")  # from disk, as a user opens it
        assert marker in browser.eval("document.body.innerText"), name
        assert browser.eval("document.images.length") >= images, name
        assert browser.eval(BROKEN_IMAGES) == 0, name
        browser.screenshot(tmp_path / f"{name}.png")
    m = json.loads((every_kind / "ensemble" / "ensemble.json").read_text())
    browser.goto(f"file://{every_kind / 'ensemble' / 'report.html'}")
    assert f"{m['ensemble']['accuracy']:.4g}" in browser.eval("document.body.innerText")
    browser.goto(f"file://{every_kind / 'search' / 'report.html'}")
    linked = browser.eval("Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href'))")
    assert linked and all((every_kind / "search" / href).is_file() for href in linked)  # each trial's own page


def test_one_run_with_a_string_metric_does_not_blank_the_table(every_kind, browser, tmp_path):
    """Issue 43: the page called toFixed on whatever final_metrics.json held; one string emptied the whole table."""
    import shutil

    root = tmp_path / "runs"
    for name in ("good", "odd"):
        shutil.copytree(every_kind / "digits", root / name)
    final = json.loads((root / "odd" / "final_metrics.json").read_text())
    final["best"]["value"], final["wall_s"] = "0.9", "soon"
    (root / "odd" / "final_metrics.json").write_text(json.dumps(final))
    server = make_server(root, 0, every=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        rows = browser.wait(
            "document.querySelectorAll('#runs tbody tr').length === 2 && "
            "Array.from(document.querySelectorAll('#runs tbody tr')).map(r => r.innerText)"
        )
        best = json.loads((root / "good" / "final_metrics.json").read_text())["best"]["value"]
        assert f"accuracy {best:.4f}" in rows[0] and "odd" in rows[1]
    finally:
        server.shutdown()
        server.server_close()
