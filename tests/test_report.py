"""`towerlab report`: a self-contained page per run or search, whose figures are the run's own and whose every
picture decodes."""

import base64
import io
import json
import re

import yaml
from helpers import run_cli
from PIL import Image

from towerlab import report


def _images(page: str) -> list[Image.Image]:
    out = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()  # decodes the whole picture: a broken one raises
        out.append(im)
    return out


def test_a_classification_run_shows_its_own_accuracy_and_pictures(tmp_path):
    run = tmp_path / "run"
    run_cli("train", "digits", "--epochs", "2", "--out", str(run))
    out = run_cli("report", str(run)).stdout
    page = (run / "report.html").read_text()
    assert "report.html" in out and "http" not in page.replace("http-equiv", "")  # nothing fetched from a network
    best = json.loads((run / "final_metrics.json").read_text())["best"]["value"]
    assert float(re.search(r'id="accuracy">([0-9.]+)<', page).group(1)) == round(best, 4)
    assert "Most confident mistakes" in page
    assert len(_images(page)) >= 6  # curves, confusion matrix, per-class bars, mistakes


def test_a_generator_run_shows_molecules(lstm_run):
    page = report.run_report(lstm_run)
    assert "sampled molecules" in page and "training set size" in page
    assert any(im.width > 800 for im in _images(page))  # the 4-wide grid of molecule drawings


def test_a_search_report_links_its_trials(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": {"logfloat": [1e-3, 0.1]}, "units": {"choices": [16, 64]}}))
    out = tmp_path / "search"
    run_cli("search", "mlp", "--space", str(space), "--population", "3", "--generations", "2", "--workers", "2",
            "--out", str(out), "--set", "dataset=digits", "--set", "epochs=1")
    trial = sorted((out / "trials").iterdir())[0]
    run_cli("report", str(trial))
    page = (run_cli("report", str(out)) and (out / "report.html").read_text())
    assert f'href="trials/{trial.name}/report.html"' in page and page.count("<tr>") >= 4
    assert len(_images(page)) == 2  # fitness per generation, genes against fitness


def test_a_folder_that_is_neither_is_one_line(tmp_path):
    proc = run_cli("report", str(tmp_path), check=False)
    assert proc.returncode == 2 and "neither a run directory" in proc.stderr and "Traceback" not in proc.stderr
