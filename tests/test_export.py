"""towerlab export: one file, pixels in and probabilities out, that ONNX Runtime (or TorchScript) runs as PyTorch
does; its metadata says what it is."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from towerlab import config, infer
from towerlab.data.images import read_image
from towerlab.engine import fit
from towerlab.export import export
from towerlab.recipes import digits

from helpers import run_cli


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "digits"
    fit(digits, config.build(digits.Config, None, {"max_steps": 60, "eval_every_epochs": 0.0}), out=out)
    return out


def test_onnx_grades_real_scans_as_pytorch_does(digits_run, tmp_path):
    done = export(digits_run, "onnx", tmp_path / "m.onnx")
    assert done["max_abs_diff"] < 1e-5
    paths = run_cli("data", "export", "digits", str(tmp_path / "img"), "--n", "16").stdout.split()
    images = np.stack([read_image(p, 1).numpy() for p in paths])  # real held-out scans, uint8 [16, 1, 8, 8]
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"images": images})[0]
    loaded = infer.load(digits_run)
    with torch.no_grad():
        want = digits.predict(loaded.model, digits.prepare(loaded.cfg, torch.from_numpy(images))).numpy()
    assert np.abs(got - want).max() < 1e-5 and (got.argmax(1) == want.argmax(1)).all()
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["towerlab.recipe"] == "digits" and meta["towerlab.kind"] == "classify"
    assert json.loads(meta["towerlab.classes"]) == [str(i) for i in range(10)]
    assert json.loads(meta["towerlab.input_shape"]) == [1, 8, 8] and meta["towerlab.step"] == "60"
    assert len(meta["towerlab.weights_sha256"]) == 64


def test_torchscript_and_the_command_line(digits_run, tmp_path):
    out = run_cli("export", str(digits_run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")).stdout
    assert out.startswith(f"torchscript: {tmp_path / 'm.pt'} (digits, step 60); largest difference from PyTorch")
    extra = {"towerlab.json": ""}
    module = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["towerlab.json"])["towerlab.recipe"] == "digits"
    assert module(torch.zeros(3, 1, 8, 8, dtype=torch.uint8)).shape == (3, 10)


def test_a_segmentation_model_takes_any_size(tmp_path, shared_data):
    run = tmp_path / "fcn"
    run_cli(
        "train",
        "fcn8s",
        "--max-steps",
        "1",
        "--width",
        "0.125",
        "--batch-size",
        "2",
        "--eval-limit",
        "2",
        "--out",
        str(run),
    )
    done = export(run, "onnx")
    assert done["max_abs_diff"] < 1e-5 and done["towerlab.kind"] == "segment"
    session = ort.InferenceSession(done["path"])
    for h, w in ((40, 56), (72, 48)):
        probs = session.run(None, {"images": np.zeros((2, 3, h, w), np.uint8)})[0]
        assert probs.shape[0] == 2 and probs.shape[2:] == (h, w)


def test_what_cannot_be_exported_is_one_line(tmp_path):
    proc = run_cli("export", str(tmp_path / "nothing"), check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "no last checkpoint" in proc.stderr


def test_out_is_made_or_refused_in_one_line(digits_run, tmp_path):
    assert export(digits_run, "onnx", tmp_path / "new" / "folder" / "m.onnx")["max_abs_diff"] < 1e-5
    proc = run_cli("export", str(digits_run), "--out", "/proc/towerlab/m.onnx", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--out's folder /proc/towerlab cannot be written" in proc.stderr
