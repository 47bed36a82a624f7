"""Modules in the folder a command is started from never shadow the project's imports, in the command's own process
or in the processes it starts (issue 24): a yaml.py there that records being imported is never imported, by a
`--procs 2` relaunch (two real gloo processes under the elastic agent), a `jobs run` trial or `python -m
towerlab.serve`."""

import sys

import pytest

from helpers import REPO, run_cli


@pytest.fixture
def planted(tmp_path):
    """A folder whose yaml.py and torch.py leave a marker and fail if anyone imports them."""
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("yaml", "torch"):
        (folder / f"{name}.py").write_text(
            "import os, pathlib\n"
            f"pathlib.Path(__file__).with_name('imported-{name}-' + str(os.getpid())).write_text('x')\n"
            f"raise RuntimeError('the working folder shadowed {name}')\n"
        )
    return folder


def _markers(folder):
    return sorted(p.name for p in folder.glob("imported-*"))


def test_a_two_process_relaunch_imports_nothing_from_the_working_folder(planted):
    proc = run_cli(
        "train",
        "digits",
        "--gpus",
        "0",
        "--procs",
        "2",
        "--max-steps",
        "4",
        "--eval-every-steps",
        "4",
        "--out",
        str(planted / "run"),
        cwd=planted,
        env={"TOWERLAB_REPORT": "0"},
        check=False,
        fresh=True,
    )  # fresh: this is about how a process starts
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _markers(planted) == []


def test_a_jobs_trial_imports_nothing_from_the_working_folder(planted):
    (planted / "jobs.yaml").write_text(
        "jobs:\n  - {name: a, recipe: digits, overrides: {max_steps: 2, eval_every_steps: 2}}\n"
    )
    proc = run_cli(
        "jobs", "run", "jobs.yaml", "--out", str(planted / "out"), "--no-report", cwd=planted, check=False, fresh=True
    )
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert _markers(planted) == []


def test_the_service_module_imports_nothing_from_the_working_folder(planted):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "towerlab.serve", "missing.yaml", "--once"],
        cwd=planted,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src")},
    )
    assert proc.returncode == 2 and "missing.yaml not found" in proc.stderr, proc.stderr[-2000:]
    assert _markers(planted) == []
