"""The stand-alone executable (`make exe-test`): the built program grades rows. Skipped unless TOWERLAB_EXE
names the built file, since building it takes minutes and is not part of `make test`."""

import os
import subprocess
import time

import pytest

import dbcases
from serve_helpers import write_config

EXE = os.environ.get("TOWERLAB_EXE")


@pytest.mark.skipif(not EXE, reason="set TOWERLAB_EXE to a built dist/towerlab-serve (make exe-test does)")
def test_built_program_grades_rows(tmp_path, model_run, digit_rows):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    db = dbcases.Db(url)
    cfg = write_config(tmp_path / "serve.yaml", url, model_run)
    db.insert(dbcases.rows(digit_rows, 1, 100) + [(500, 1, "1,2")])
    t = time.perf_counter()
    proc = subprocess.run([EXE, str(cfg), "--once"], capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    out = {o["row_key"]: o for o in db.outcomes()}
    assert len(out) == 101 and out[500]["status"] == "error"
    good = [o for k, o in out.items() if k != 500]
    assert sum(o["class_name"] == str(o["label"]) for o in good) > 80
    print(f"\nexecutable: {os.path.getsize(EXE) / 2**20:.0f} MiB, grading 101 rows took {wall:.1f} s including start-up")
