"""Searches as a user runs them: TPE through the executor with ASHA pruning, SIGKILLed mid-batch and re-run to the
same end; trials.csv and TensorBoard's hyperparameter view."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import yaml

from helpers import run_cli

SPACE = {"lr": {"logfloat": [1.0e-5, 0.3]}, "units": {"choices": [16, 64]}}


def _args(space, out):
    return [
        "search",
        "mlp",
        "--space",
        str(space),
        "--algo",
        "tpe",
        "--prune",
        "asha",
        "--population",
        "4",
        "--storage",
        f"journal:{out.parent / (out.name + '.journal')}",
        "--generations",
        "2",
        "--workers",
        "2",
        "--out",
        str(out),
        "--set",
        "dataset=digits",
        "--set",
        "epochs=3",
        "--set",
        "eval_every_epochs=1",
        "--set",
        "ckpt_every_steps=5",
        "--set",
        "deterministic=true",
    ]


def _rows(out):
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


def test_tpe_with_pruning_survives_a_sigkill_and_ends_the_same(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    whole = tmp_path / "whole"
    run_cli(*_args(space, whole), fresh=True)  # fresh: another hash seed than the resumed search's
    rows = _rows(whole)
    assert len(rows) == 8 and {r["status"] for r in rows} <= {"ok", "pruned"}
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert pruned, rows  # the second batch meets the first at ASHA's rungs
    for r in pruned:
        record = json.loads((whole / "trials" / r["trial"] / "pruned.json").read_text())
        assert record["evaluation"] in (1, 3) and float(r["accuracy"]) == record["value"]
    assert any((whole / "tb").rglob("events.out.tfevents.*"))  # the HPARAMS view, one entry per trial
    before = {p.name: p.stat().st_mtime for p in (whole / "trials").iterdir()}
    run_cli(*_args(space, whole))  # finished: nothing is trained again, a pruned trial least of all
    assert {p.name: p.stat().st_mtime for p in (whole / "trials").iterdir()} == before

    cut = tmp_path / "cut"
    search = subprocess.Popen(
        [sys.executable, "-m", "towerlab", *_args(space, cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 180
    while time.time() < deadline and search.poll() is None and len(list((cut / "trials").glob("*"))) <= 4:
        time.sleep(0.05)
    assert search.poll() is None, "the search ended before its second batch could be interrupted"
    os.kill(search.pid, signal.SIGKILL)  # mid second batch: its trials die with the search
    search.wait()
    run_cli(*_args(space, cut))
    states = [json.loads((d / "search_state.json").read_text()) for d in (whole, cut)]
    assert states[0] == states[1]
    assert [(r["trial"], r["status"], r["accuracy"]) for r in _rows(cut)] == [
        (r["trial"], r["status"], r["accuracy"]) for r in rows
    ]
    # the Optuna storage optuna-dashboard reads: each trial once, even after the kill, with its curve and state
    studies = [_study(tmp_path / f"{name}.journal", name) for name in ("whole", "cut")]
    assert studies[0] == studies[1] and len(studies[0]) == 8
    for r in rows:
        _, state, value, curve, _ = next(t for t in studies[0] if t[0][1] == r["trial"])
        assert state == ("PRUNED" if r["status"] == "pruned" else "COMPLETE") and value == float(r["accuracy"])
        assert curve and (curve[-1] == value or state == "COMPLETE")  # a pruned trial's curve ends where it stopped


def _study(path, name):
    """(key, state, value, intermediate values, generation) of every trial, read back by Optuna itself."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))
    return sorted(
        (
            (t.user_attrs["towerlab_key"], t.user_attrs["trial_folder"].split("/")[-1]),
            t.state.name,
            t.value,
            [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
            t.user_attrs["generation"],
        )
        for t in study.trials
    )
