"""The trial executors: each trial's share of the CPU, and the Ray executor against a real local Ray instance."""

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from towerlab.errors import ConfigError
from towerlab.executor import LocalExecutor, RayExecutor, Trial, trial_env, wait_any

from helpers import run_cli

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


@pytest.fixture(scope="module")
def ray_head():
    """A real Ray cluster on this machine, as `ray start --head` makes one (once for the module's tests: each test
    leaves it as it found it); stopped afterwards."""
    ray = str(Path(sys.executable).parent / "ray")
    subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--port",
            "0",
            "--num-cpus",
            "2",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    try:
        yield
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=180)


def test_a_slot_is_free_the_moment_its_trial_exits_not_at_the_next_poll():
    """The executor sleeps until one of its trials ends: with a long poll it still wakes as the short one exits."""
    long = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    short = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        t0 = time.monotonic()
        wait_any([long, short], timeout=60)
        woke = time.monotonic() - t0
        assert short.poll() == 0 and long.poll() is None
        t0 = time.monotonic()
        wait_any([long], timeout=0.5)  # nothing ends: the poll's timeout, as before
        slept = time.monotonic() - t0
        assert woke < 30 and slept >= 0.5, (woke, slept)  # woken by the exit, long before the 60 s poll
    finally:
        long.kill()
        long.wait()


def test_jobs_on_a_ray_cluster_one_failing_then_a_rerun(tmp_path, ray_head):
    spec = {
        "jobs": [
            {"name": "a", "recipe": "digits", "overrides": QUICK},
            {"name": "b", "recipe": "mlp", "overrides": {**QUICK, "dataset": "digits"}},
            {
                "name": "bad",
                "recipe": "digits",  # fails when it runs: its init_from run is not there
                "overrides": {**QUICK, "init_from": str(tmp_path / "no-such-run")},
            },
        ]
    }
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(spec))
    args = ["jobs", "run", str(tmp_path / "jobs.yaml"), "--executor", "ray", "--out", str(tmp_path / "out")]
    proc = run_cli(*args, "--address", "auto", check=False, timeout=600)  # the cluster `ray start` runs here
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {r["job"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert rows["a"]["status"] == rows["b"]["status"] == "ok" and float(rows["b"]["accuracy"]) > 0
    assert rows["bad"]["status"] == "failed" and "no-such-run" in rows["bad"]["error"]
    assert rows["a"]["device"].endswith(":cpu")  # host:devices, as the Ray worker saw them
    del spec["jobs"][2]["overrides"]["init_from"]
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(spec))
    run_cli(*args, "--address", "local", timeout=600)  # a private Ray this time: finished jobs are not rerun
    rows = {r["job"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert [rows[k]["status"] for k in ("a", "b", "bad")] == ["done", "done", "ok"]


def test_an_unreachable_ray_cluster_is_one_line():
    with pytest.raises(ConfigError, match=r"cannot reach the Ray cluster at 127.0.0.1:9 .*ray start --head"):
        RayExecutor("127.0.0.1:9")


def test_a_trial_on_ray_is_pruned_while_it_trains(tmp_path, ray_head):
    """--prune on the Ray executor: a running trial's curve is judged as it grows and its task cancelled; the trial
    is recorded as pruned at its first evaluation and never trains to its end."""
    script = f"""
from pathlib import Path
from towerlab.executor import RayExecutor, Trial
from towerlab.search.prune import Pruner

pruner = Pruner("asha", "accuracy", maximize=True)
pruner.reference = [[1.0] * 50] * 4  # earlier trials that were perfect: anything less is pruned at rung 1
fields = {{"max_steps": 4000, "eval_every_steps": 5, "log_every": 5}}
trial = Trial("t0", "digits", fields, Path({str(tmp_path / "t0")!r}))
(r,) = RayExecutor("auto", gpus=False).run([trial], pruner=pruner)
print("RESULT", r.status, r.error)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert "RESULT pruned pruned at evaluation 1" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert yaml.safe_load((tmp_path / "t0" / "pruned.json").read_text())["evaluation"] == 1
    assert not (tmp_path / "t0" / "final_metrics.json").is_file()  # cancelled long before its 4,000 steps


def test_a_search_on_ray_with_pruning_through_the_cli(tmp_path, ray_head):
    """issue 46: `towerlab search --executor ray --address auto --prune asha` as a user runs it: the second batch's
    trials are judged against the first's curves while they train on the cluster, the hopeless ones cancelled and
    recorded as pruned (trials.csv, pruned.json), the others finished."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": {"logfloat": [1.0e-5, 0.3]}, "units": {"choices": [16, 64]}}))
    out = tmp_path / "search"
    args = ["search", "mlp", "--space", str(space), "--algo", "random", "--prune", "asha", "--population", "4"]
    args += ["--generations", "2", "--executor", "ray", "--address", "auto", "--out", str(out)]
    for field in ("dataset=digits", "epochs=3", "eval_every_epochs=1", "seed=1"):
        args += ["--set", field]
    run_cli(*args, timeout=600)
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 8 and {r["status"] for r in rows} <= {"ok", "pruned"}, rows
    pruned = [r for r in rows if r["status"] == "pruned"]
    # (a trial may end before the poll that would cancel it: judged on its whole curve, it is pruned all the same)
    assert pruned and all((out / "trials" / r["trial"] / "pruned.json").is_file() for r in pruned), rows
    assert any(r["status"] == "ok" for r in rows)
