"""The stand-alone executables (`make exe-test`, `make exe-torch-test`): the built program grades rows. Skipped
unless TOWERLAB_EXE (the ONNX Runtime program) or TOWERLAB_EXE_TORCH (the PyTorch one) names the built file, since
building one takes minutes and is not part of `make test`."""

import os
import subprocess
import time

import pytest

import dbcases
from serve_helpers import write_config

EXE = os.environ.get("TOWERLAB_EXE")
EXE_TORCH = os.environ.get("TOWERLAB_EXE_TORCH")


def _grades(exe: str, model, tmp_path, digit_rows) -> None:
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    db = dbcases.Db(url)
    cfg = write_config(tmp_path / "serve.yaml", url, model)
    db.insert(dbcases.rows(digit_rows, 1, 100) + [(500, 1, "1,2")])
    t = time.perf_counter()
    proc = subprocess.run([exe, str(cfg), "--once"], capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    out = {o["row_key"]: o for o in db.outcomes()}
    assert len(out) == 101 and out[500]["status"] == "error"
    good = [o for k, o in out.items() if k != 500]
    assert sum(o["class_name"] == str(o["label"]) for o in good) > 80
    print(f"\n{exe}: {os.path.getsize(exe) / 2**20:.0f} MiB, grading 101 rows took {wall:.1f} s including start-up")


@pytest.mark.skipif(not EXE, reason="set TOWERLAB_EXE to a built dist/towerlab-serve (make exe-test does)")
def test_onnx_program_grades_rows_and_refuses_a_run_directory_in_one_line(tmp_path, model_run, digit_rows):
    from towerlab.export import export

    _grades(EXE, export(model_run, "onnx", tmp_path / "digits.onnx")["path"], tmp_path, digit_rows)
    url = f"sqlite:///{tmp_path / 'other.db'}"
    proc = subprocess.run(
        [EXE, str(write_config(tmp_path / "run.yaml", url, model_run)), "--once"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert (
        proc.returncode == 2 and len(lines) == 1 and "towerlab export" in lines[0] and "ONNX Runtime only" in lines[0]
    )


@pytest.mark.skipif(
    not EXE_TORCH, reason="set TOWERLAB_EXE_TORCH to a built dist/towerlab-serve-torch (make exe-torch-test does)"
)
def test_torch_program_grades_rows(tmp_path, model_run, digit_rows):
    _grades(EXE_TORCH, model_run, tmp_path, digit_rows)
