"""Hill-climb MLE on a real (tiny) SMILES LSTM: it raises the objective, survives SIGKILL to the same molecules,
and counts a failing objective instead of dying."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import run_cli

from towerlab.chem import objectives, props
from towerlab.generate import model as gen
from towerlab.generate.hillclimb import Settings, hillclimb

FAST = ["--rounds", "3", "--samples", "128", "--keep", "32", "--epochs", "2", "--batch-size", "16", "--lr", "3e-3"]


def _mean_qed(smiles):
    values = [p["qed"] for s in smiles if (p := props.properties(s))]
    return sum(values) / len(values)


def test_a_round_on_qed_raises_the_mean_qed_of_what_the_model_writes(lstm_run, tmp_path):
    m = gen.load(lstm_run)
    before = _mean_qed(gen.sample(m, 256, seed=1))
    history = hillclimb(m, objectives.get("qed"), tmp_path / "hc", Settings(2, 256, 32, 3, 16, 3e-3))
    after = _mean_qed(gen.sample(m, 256, seed=1))
    assert after > before + 0.03, (before, after)
    assert history[-1]["mean_kept"] >= history[0]["mean_kept"] and history[-1]["scoring_calls"] > 0
    for name in ("best.csv", "rounds.csv", "score.png", "best.png"):
        assert (tmp_path / "hc" / name).stat().st_size > 0
    best = list(csv.DictReader(open(tmp_path / "hc" / "best.csv")))
    assert float(best[0]["score"]) == pytest.approx(props.properties(best[0]["smiles"])["qed"])  # RDKit's number


def test_killed_mid_search_it_continues_to_the_same_molecules(lstm_run, tmp_path):
    run_cli("chem", "hillclimb", str(lstm_run), *FAST, "--out", str(tmp_path / "whole"))
    cmd = [sys.executable, "-m", "towerlab", "chem", "hillclimb", str(lstm_run), *FAST, "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "checkpoints" / "last.json").is_file() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # after round 1's checkpoint, somewhere in round 2
    proc.wait()
    assert not (tmp_path / "cut" / "rounds.csv").exists()  # it really was stopped before the end
    out = run_cli("chem", "hillclimb", str(lstm_run), *FAST, "--out", str(tmp_path / "cut")).stdout
    assert "resuming" in out
    for name in ("rounds.csv", "best.csv"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "whole" / name).read_text()
    proc = run_cli("chem", "hillclimb", str(lstm_run), *FAST, "--keep", "8", "--out", str(tmp_path / "cut"), check=False)
    assert proc.returncode == 2 and "holds a hill-climb with other settings" in proc.stderr


def test_a_failing_objective_is_counted_and_the_search_goes_on(lstm_run, tmp_path):
    (tmp_path / "picky.py").write_text("def score(smiles):\n    if 'N' in smiles:\n        raise ValueError('N')\n"
                                       "    return smiles.count('C')\n")
    proc = run_cli("chem", "hillclimb", str(lstm_run), *FAST, "--objective", "picky:score", "--out",
                   str(tmp_path / "hc"), env={"PYTHONPATH": str(tmp_path)})
    report = json.loads(proc.stdout[proc.stdout.index("{\n"):proc.stdout.rindex("}") + 1])
    assert report["failed"] > 0 and report["rounds"] == 3 and "ValueError: N" in report["failed_examples"][0]
