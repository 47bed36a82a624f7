"""The run record: a run directory read back, its status among them."""

import json

import pytest

from towerlab import config
from towerlab.engine import fit
from towerlab.errors import ConfigError, DivergedError
from towerlab.recipes import digits
from towerlab.runs import Run, RunRecord

QUIET = {"log_every": 2, "eval_every_epochs": 0.0}


def test_a_finished_run_reads_back_whole(tmp_path):
    fit(digits, config.build(digits.Config, None, {"max_steps": 6, "ckpt_every_steps": 2, **QUIET}), out=tmp_path / "r")
    record = RunRecord.load(tmp_path / "r")
    assert (record.recipe, record.status, record.config["max_steps"]) == ("digits", "done", 6)
    assert [step for step, _ in record.checkpoints] == [6, 4, 2]
    assert record.final["step"] == 6 and record.main_metric() == record.final["best"]["value"]
    assert [m["step"] for m in record.metrics() if "train/loss" in m] == [2, 4, 6]


def test_running_interrupted_and_failed(tmp_path):
    held = Run(tmp_path / "r")
    held.write_config("digits", digits.Config())
    held.write_status("running")
    assert RunRecord.load(tmp_path / "r").status == "running"  # its process lives and holds the lock
    held.close()  # as if killed: the lock is gone, the file still says running
    assert RunRecord.load(tmp_path / "r").status == "interrupted"
    with pytest.raises(DivergedError):
        fit(digits, config.build(digits.Config, None, {"max_steps": 4, "lr": 1e12, **QUIET}), out=tmp_path / "f")
    record = RunRecord.load(tmp_path / "f")
    assert record.status == "failed" and "training loss became" in record.error and record.final is None
    assert json.loads((tmp_path / "f" / "status.json").read_text())["status"] == "failed"


def test_not_a_run_directory_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is not a run directory"):
        RunRecord.load(tmp_path)


def test_only_the_records_know_the_files_of_a_folder_by_name():
    """runs/ is the one place that names the files of a run, trial, search, jobs or ensemble folder: every other
    module reads and writes them through its records (a string naming one elsewhere is a second reader)."""
    import re
    from pathlib import Path

    import towerlab

    names = (
        "config.yaml",
        "metrics.jsonl",
        "final_metrics.json",
        "status.json",
        "trial.json",
        "result.json",
        "pruned.json",
        "search_state.json",
        "generations.json",
        "best.json",
        "trials.csv",
        "summary.json",
        "ensemble.json",
        "log.txt",
        "env.json",
    )
    alternatives = "|".join(re.escape(n) for n in names)
    pattern = re.compile(rf"""["'/]({alternatives})["']""")
    src = Path(towerlab.__file__).parent
    found = [
        f"{p.relative_to(src)}:{i}: {line.strip()}"
        for p in sorted(src.rglob("*.py"))
        if p.parent.name != "runs"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)
    assert pattern.search('x / "config.yaml"') and pattern.search("f'{d}/best.json'")  # the pattern does match


def test_one_metric_decides_which_value_is_better_and_one_best_reads_a_run():
    import math

    from towerlab.decide import decide
    from towerlab.runs.best import Best, Metric

    up, down = Metric("accuracy", "max"), Metric("loss", "min")
    assert up.better(0.9, 0.8) and not up.better(0.8, 0.9) and down.better(0.1, 0.2) and not down.better(0.2, 0.1)
    assert up.better(0.1, None) and not up.better(None, 0.1) and not up.better(math.nan, 0.1)
    assert up.better(0.1, math.nan)  # a number beats a NaN that was kept
    assert up.reached(0.99, 0.99) and not up.reached(0.98, 0.99) and down.reached(0.5, 0.6) and not up.reached(None, 1)
    assert up.best_of({"a": 0.2, "b": 0.7}) == "b" and down.best_of({"a": 0.2, "b": 0.7}) == "a"
    best = Best.of({"best": {"metric": "accuracy", "value": 0.9, "step": 40, "test": {"accuracy": 0.88}}})
    assert best and best.as_dict() == {"metric": "accuracy", "value": 0.9, "step": 40, "test": {"accuracy": 0.88}}
    assert not Best.of(None) and not Best.of({"best": None}) and Best.of({}).as_dict()["value"] is None
    # one decision rule for torch and numpy alike (the ONNX service has no torch)
    import numpy as np
    import torch

    probs = [[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]]
    assert decide(np.array(probs), 0.25).tolist() == [1, 1, 0] == decide(torch.tensor(probs), 0.25).tolist()
    assert decide(np.array(probs)).tolist() == [0, 1, 0] == decide(torch.tensor(probs), None).tolist()
