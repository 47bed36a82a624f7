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

from towerlab.chem import objectives, props
from towerlab.generate import model as gen
from towerlab.generate.hillclimb import Settings, hillclimb

from helpers import REAL_SMILES, run_cli

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
    run_cli("chem", "hillclimb", str(lstm_run), *FAST, "--out", str(tmp_path / "whole"), fresh=True)  # own hash seed
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
    proc = run_cli(
        "chem", "hillclimb", str(lstm_run), *FAST, "--keep", "8", "--out", str(tmp_path / "cut"), check=False
    )
    assert proc.returncode == 2 and "holds a hill-climb with other settings" in proc.stderr


def test_a_failing_objective_is_counted_and_the_search_goes_on(lstm_run, tmp_path):
    (tmp_path / "picky.py").write_text(
        "def score(smiles):\n    if 'N' in smiles:\n        raise ValueError('N')\n    return smiles.count('C')\n"
    )
    proc = run_cli(
        "chem",
        "hillclimb",
        str(lstm_run),
        *FAST,
        "--objective",
        "picky:score",
        "--out",
        str(tmp_path / "hc"),
        env={"PYTHONPATH": str(tmp_path)},
    )
    report = json.loads(proc.stdout[proc.stdout.index("{\n") : proc.stdout.rindex("}") + 1])
    assert report["failed"] > 0 and report["rounds"] == 3 and "ValueError: N" in report["failed_examples"][0]


@pytest.fixture(scope="module")
def fresh_prior(shared_data, tmp_path_factory):
    """smiles-lstm after one step: what it writes is not yet chemistry."""
    tmp = tmp_path_factory.mktemp("fresh")
    zinc = tmp / "zinc.txt"  # the first 60 real ZINC molecules
    zinc.write_text("\n".join((shared_data / "zinc250k_jtvae" / "test.txt").read_text().split()[:60]) + "\n")
    run_cli(
        "train",
        "smiles-lstm",
        "--data",
        str(zinc),
        "--val-fraction",
        "0.1",
        "--max-len",
        "80",
        "--hidden",
        "32",
        "--embedding",
        "8",
        "--layers",
        "1",
        "--max-steps",
        "1",
        "--eval-every-steps",
        "1",
        "--eval-samples",
        "4",
        "--batch-size",
        "16",
        "--out",
        str(tmp / "run"),
        env={"TOWERLAB_REPORT": "0"},
    )
    return tmp / "run"


def test_rounds_without_a_valid_molecule_are_reported_and_the_climb_goes_on(fresh_prior, tmp_path):
    proc = run_cli(
        "chem",
        "hillclimb",
        str(fresh_prior),
        "--rounds",
        "2",
        "--samples",
        "4",
        "--keep",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--objective",
        "qed",
        "--start",
        "none",  # no seeded pool
        "--out",
        str(tmp_path / "hc"),
        check=False,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "NaN" not in proc.stdout
    rounds = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith('{"round"')]
    assert [r["round"] for r in rounds] == [1, 2]
    empty = [r for r in rounds if r["best"] is None]
    assert empty and "is a valid molecule with a score" in proc.stdout  # (this prior has not learned SMILES yet)
    assert (tmp_path / "hc" / "rounds.csv").is_file() and (tmp_path / "hc" / "score.png").is_file()


def test_a_tiny_tree_search_says_best_none_not_nan(fresh_prior, tmp_path):
    proc = run_cli(
        "chem",
        "mcts",
        str(fresh_prior),
        "--budget",
        "3",
        "--objective",
        "qed",
        "--out",
        str(tmp_path / "m"),
        check=False,
    )
    assert proc.returncode == 0 and "NaN" not in proc.stdout, proc.stdout + proc.stderr[-2000:]
    report = json.loads(proc.stdout[proc.stdout.index("{\n") : proc.stdout.rindex("}") + 1])
    assert report["best"] is None or report["best"] > 0
    assert ("grid:" in proc.stdout) == (tmp_path / "m" / "best.png").is_file()


def test_the_pool_starts_from_the_best_of_a_file_and_max_calls_is_never_passed(lstm_run, tmp_path):

    start = tmp_path / "start.smi"
    start.write_text("\n".join(REAL_SMILES) + "\n")
    best_of_file = max(props.properties(s)["qed"] for s in REAL_SMILES)
    m, objective = gen.load(lstm_run), objectives.get("qed")
    history = hillclimb(
        m, objective, tmp_path / "hc", Settings(rounds=1, samples=64, keep=8, epochs=1, batch_size=8), start=str(start)
    )
    assert history[0]["best"] >= best_of_file - 1e-12  # the file's best is in the pool from the start
    assert objective.calls >= len(set(REAL_SMILES))
    objective = objectives.get("qed")
    history = hillclimb(
        gen.load(lstm_run),
        objective,
        tmp_path / "bounded",
        Settings(rounds=5, samples=64, keep=8, epochs=1, batch_size=8, max_calls=50),
        start=str(start),
    )
    assert objective.calls <= 50 and len(history) < 5
