"""The trial executors: each trial's share of the CPU, and the Ray executor against a real local Ray instance."""

import csv
import os

import pytest
import yaml
from helpers import run_cli

from towerlab.errors import ConfigError
from towerlab.search.executor import LocalExecutor, RayExecutor, Trial, trial_env

QUICK = {"max_steps": 15, "eval_every_epochs": 0, "log_every": 5}


def test_each_cpu_slot_gets_its_share_of_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count()
    assert LocalExecutor(workers=2).threads == max(1, cores // 2)
    assert trial_env("", 3)["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's choice wins
    assert trial_env("", 3)["OMP_NUM_THREADS"] == "5"
    monkeypatch.delenv("OMP_NUM_THREADS")
    # and a real trial runs with it: two workers on this machine, each told half of the cores
    trials = [Trial(f"t{i}", "digits", {**QUICK, "seed": i}, tmp_path / f"t{i}") for i in range(2)]
    results = LocalExecutor(workers=2).run(trials)
    assert [r.status for r in results] == ["ok", "ok"]
    log = (tmp_path / "t0" / "log.txt").read_text()
    assert f"{max(1, cores // 2)} CPU threads each" in log


def test_jobs_through_ray_one_failing_then_a_rerun(tmp_path):
    spec = {"jobs": [{"name": "a", "recipe": "digits", "overrides": QUICK},
                     {"name": "b", "recipe": "mlp", "overrides": {**QUICK, "dataset": "digits"}},
                     {"name": "bad", "recipe": "digits", "overrides": {**QUICK, "lr": -1.0}}]}
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(spec))
    args = ["jobs", "run", str(tmp_path / "jobs.yaml"), "--executor", "ray", "--address", "local",
            "--out", str(tmp_path / "out")]
    proc = run_cli(*args, check=False, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {r["job"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert rows["a"]["status"] == rows["b"]["status"] == "ok" and float(rows["b"]["accuracy"]) > 0
    assert rows["bad"]["status"] == "failed" and "lr=-1.0 must be >= 0" in rows["bad"]["error"]
    assert rows["a"]["device"].endswith(":cpu")  # host:devices, as the Ray worker saw them
    spec["jobs"][2]["overrides"]["lr"] = 0.01
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(spec))
    run_cli(*args, timeout=600)
    rows = {r["job"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert [rows[k]["status"] for k in ("a", "b", "bad")] == ["done", "done", "ok"]


def test_an_unreachable_ray_cluster_is_one_line():
    with pytest.raises(ConfigError, match=r"cannot reach the Ray cluster at 127.0.0.1:9 .*ray start --head"):
        RayExecutor("127.0.0.1:9")
