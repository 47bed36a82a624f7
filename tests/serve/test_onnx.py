"""The service grading with an exported ONNX model on ONNX Runtime: the same grades as PyTorch, and no torch in
the process (what lets the one-file program leave it out)."""

import json
import subprocess
import sys

import numpy as np
import pytest

import dbcases
from serve_helpers import run_serve, write_config


@pytest.fixture(scope="module")
def onnx_model(model_run, tmp_path_factory):
    from towerlab.export import export

    return export(model_run, "onnx", tmp_path_factory.mktemp("onnx") / "digits.onnx")["path"]


def test_onnx_grades_as_pytorch_does_without_torch(tmp_path, model_run, onnx_model, digit_rows):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    db, cfg = dbcases.Db(url), write_config(tmp_path / "serve.yaml", url, onnx_model)
    db.insert(dbcases.rows(digit_rows, 1, 150) + [(500, 1, "1,2,x")])
    code = (
        "import sys; from towerlab.serve.__main__ import main; rc = main(sys.argv[1:]); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import json; " + code, str(cfg), "--once"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []  # ONNX Runtime alone did the grading
    out = {o["row_key"]: o for o in db.outcomes()}
    assert len(out) == 151 and out[500]["status"] == "error"

    from towerlab.serve.payload import to_input
    from towerlab.serve.scorer import TorchScorer as Scorer
    from towerlab.serve.settings import load

    source = load(cfg).sources[0]
    rows = [{"vals": v} for _, v in (digit_rows[i % len(digit_rows)] for i in range(1, 151))]
    scorer = Scorer(model_run)
    images = [to_input(r, source.payload, source.normalize, scorer.input_shape) for r in rows]
    torch_grades = scorer.score(images)
    with db.engine.connect() as c:
        from sqlalchemy import text

        onnx_rows = c.execute(
            text("SELECT row_key, probabilities, class_name FROM towerlab_outcome WHERE status = 'ok' ORDER BY row_key")
        ).all()
    assert [r.class_name for r in onnx_rows] == [g["class_name"] for g in torch_grades]
    diff = max(
        abs(a - b)
        for r, g in zip(onnx_rows, torch_grades)
        for a, b in zip(json.loads(r.probabilities).values(), json.loads(g["probabilities"]).values())
    )
    assert diff < 1e-5


def test_a_damaged_model_file_is_one_line(tmp_path, onnx_model):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(open(onnx_model, "rb").read()[:5000])
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    proc = run_serve(write_config(tmp_path / "serve.yaml", url, bad), "--once")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.onnx does not load in ONNX Runtime" in lines[0] and "towerlab export" in lines[0]


def test_fit_to_matches_torch():
    import torch

    from towerlab.data.images import fit_to as torch_fit
    from towerlab.serve.model import fit_to

    images = np.random.default_rng(0).integers(0, 256, (3, 1, 20, 24), dtype=np.uint8)
    for shape in ((1, 20, 24), (3, 20, 24), (1, 8, 8), (1, 28, 28)):
        want = torch_fit(torch.from_numpy(images), shape).numpy().astype(int)
        assert np.abs(fit_to(images, shape).astype(int) - want).max() <= 1, shape  # rounding of the last bit
