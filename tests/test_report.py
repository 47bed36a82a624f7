"""`towerlab report`: self-contained pages (no network, every picture decodes), written at the end of train,
search and ensemble unless asked not to; their figures are the runs' own. The runs: conftest's every_kind."""

import base64
import io
import json
import re

import pytest
from PIL import Image

from helpers import run_cli


def _images(page: str) -> list[Image.Image]:
    out = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()  # decodes the whole picture: a broken one raises
        out.append(im)
    return out


def test_every_report_is_one_file_whose_pictures_decode(every_kind):
    for name in ("digits", "fcn8s", "segdec", "chemvae", "smiles-lstm", "search", "ensemble", "jobs", "jobs/small"):
        page = (every_kind / name / "report.html").read_text()
        assert not re.search(r'(src|href)="(https?:)?//', page), name  # nothing fetched from a network
        assert _images(page), name


def test_a_classification_report_shows_the_runs_own_accuracy(every_kind):
    page = (every_kind / "digits" / "report.html").read_text()  # written by `towerlab train` at its end
    best = json.loads((every_kind / "digits" / "final_metrics.json").read_text())["best"]["value"]
    assert float(re.search(r'id="accuracy">([0-9.]+)<', page).group(1)) == round(best, 4)
    assert "Most confident mistakes" in page and len(_images(page)) >= 6
    segdec = (every_kind / "segdec" / "report.html").read_text()
    assert "Precision-recall and ROC" in segdec
    # issue 43: the matrix decided at 0.5 while predict and serve decide at the run's operating threshold
    from towerlab import infer

    threshold = infer.load(every_kind / "segdec", "best").cfg.threshold
    assert f"class 1 from probability {threshold:.3f} (the run's operating point)" in segdec
    fcn = json.loads((every_kind / "fcn8s" / "final_metrics.json").read_text())
    assert "iou per class" in (every_kind / "fcn8s" / "report.html").read_text() and any(
        k.startswith("iou/") for k in fcn
    )


def test_no_report_is_written_when_asked_not_to(tmp_path):
    run_cli(
        "train", "digits", "--epochs", "1", "--no-report", "--out", str(tmp_path / "run"), env={"TOWERLAB_REPORT": "1"}
    )
    assert (tmp_path / "run" / "final_metrics.json").is_file() and not (tmp_path / "run" / "report.html").exists()


def test_a_folder_that_is_neither_is_one_line(tmp_path):
    proc = run_cli("report", str(tmp_path), check=False)
    assert proc.returncode == 2 and "neither a run directory" in proc.stderr and "Traceback" not in proc.stderr


def test_a_grid_search_gets_its_report(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("units: {choices: [16, 32]}\n")
    run_cli(
        "search",
        "mlp",
        "--algo",
        "grid",
        "--space",
        str(space),
        "--workers",
        "2",
        "--out",
        str(tmp_path / "s"),
        "--set",
        "dataset=digits",
        "--set",
        "epochs=1",
        env={"TOWERLAB_REPORT": "1"},
    )
    page = (tmp_path / "s" / "report.html").read_text()
    assert "a grid search" in page and "Trials" in page and page.count("<tr>") >= 3


@pytest.mark.parametrize("procs", ["1", "2"])
def test_the_best_evaluations_predictions_are_kept_in_item_order_and_the_report_reads_them(tmp_path, procs):
    """Issue 43: the end-of-run report evaluated the validation split again (~50 s for MNIST after 85 s of
    evaluation). A classifier's evaluation keeps its predictions, gathered from every process in item order; the
    report reads those of the best step."""
    import torch

    from towerlab import infer
    from towerlab.dist import Dist
    from towerlab.runs import RunRecord

    run = tmp_path / "run"
    run_cli(
        "train",
        "digits",
        "--max-steps",
        "30",
        "--eval-every-steps",
        "10",
        "--procs",
        procs,
        "--out",
        str(run),
        "--no-report",
    )
    rec = RunRecord.load(run)
    probs, labels = rec.predictions(rec.best["step"])
    loaded = infer.load(run, "best")
    val = loaded.recipe.build_data(loaded.cfg, Dist()).val
    assert torch.equal(labels, val.tensors[-1].cpu())  # every item once, in order, whatever the processes
    assert (probs.argmax(1) == labels).double().mean().item() == pytest.approx(rec.best["value"], abs=1e-12)
    assert rec.predictions(rec.best["step"] + 1) is None  # another step's are never taken for the best's
    run_cli("report", str(run))
    page = (run / "report.html").read_text()
    assert float(re.search(r'id="accuracy">([0-9.]+)<', page).group(1)) == round(rec.best["value"], 4)
