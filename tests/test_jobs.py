"""Many runs side by side: real `towerlab train` processes on two CPU workers; a failing job; a re-run; a search,
also SIGKILLed and re-run."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers import run_cli

QUICK = {"max_steps": 15, "eval_every_epochs": 0, "log_every": 5}


def test_three_jobs_on_two_workers_one_failing_then_a_rerun(tmp_path):
    spec = {
        "jobs": [
            {"name": "a", "recipe": "digits", "overrides": {**QUICK, "lr": 0.001}},
            {"name": "b", "recipe": "mlp", "overrides": {**QUICK, "dataset": "digits"}},
            {
                "name": "bad",
                "recipe": "digits",  # fails when it runs: its init_from run is not there
                "overrides": {**QUICK, "init_from": str(tmp_path / "no-such-run")},
            },
        ]
    }
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(spec))
    proc = run_cli(
        "jobs", "run", str(tmp_path / "jobs.yaml"), "--workers", "2", "--out", str(tmp_path / "out"), check=False
    )
    assert proc.returncode == 1  # one job failed; the others finished
    rows = {r["job"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert rows["a"]["status"] == rows["b"]["status"] == "ok" and float(rows["a"]["accuracy"]) > 0
    assert rows["bad"]["status"] == "failed" and "no-such-run" in rows["bad"]["error"]
    assert (tmp_path / "out" / "a" / "final_metrics.json").is_file()
    # fixed the bad job, ran again: finished jobs are not trained twice
    del spec["jobs"][2]["overrides"]["init_from"]
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(spec))
    run_cli("jobs", "run", str(tmp_path / "jobs.yaml"), "--workers", "2", "--out", str(tmp_path / "out"))
    rows = {r["job"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert [rows[k]["status"] for k in ("a", "b", "bad")] == ["done", "done", "ok"]


def _trial_processes(folder: Path) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(folder).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
        except OSError:
            pass
    return pids


def _mid_trial(search_dir: Path) -> bool:
    """Some trial has checkpoints and has not finished."""
    return any(
        (t / "checkpoints" / "last.json").is_file() and not (t / "final_metrics.json").is_file()
        for t in (search_dir / "trials").glob("*")
    )


def test_genetic_search_over_the_mlp_runs_trials_resumes_and_survives_a_sigkill(tmp_path):
    space = {
        "units": {"choices": [16, 64]},
        "activation": {"choices": ["relu", "tanh"]},
        "hidden_layers": {"int": [1, 2]},
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))

    def args(out):
        return [
            "search",
            "mlp",
            "--space",
            str(tmp_path / "space.yaml"),
            "--population",
            "4",
            "--generations",
            "2",
            "--workers",
            "2",
            "--out",
            str(out),
            "--set",
            "dataset=digits",
            "--set",
            "max_steps=120",
            "--set",
            "ckpt_every_steps=5",
            "--set",
            "eval_every_epochs=0",
            "--set",
            "deterministic=true",
        ]

    proc = run_cli(*args(tmp_path / "s"), fresh=True)  # fresh: another hash seed than the resumed search's
    assert "start  " in proc.stdout and " ok     " in proc.stdout  # a line as each trial starts and ends
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    assert best["metric"] == "accuracy" and 0 < best["fitness"] <= 1
    trials = list((tmp_path / "s" / "trials").iterdir())
    assert len(trials) == best["evaluations"] <= 8
    assert yaml.safe_load((tmp_path / "s" / "best.yaml").read_text())["dataset"] == "digits"
    assert len(list(csv.reader(open(tmp_path / "s" / "generations.csv")))) == 3
    from PIL import Image

    with Image.open(tmp_path / "s" / "fitness.png") as im:
        assert im.size == (600, 400)
    before = {p.name: p.stat().st_mtime for p in trials}
    run_cli(*args(tmp_path / "s"))  # complete already: resumes at the end, trains nothing
    assert {p.name: p.stat().st_mtime for p in (tmp_path / "s" / "trials").iterdir()} == before

    # the same search, its process SIGKILLed while a trial trains: no trial outlives it, the re-run ends the same
    k = tmp_path / "k"
    search = subprocess.Popen(
        [sys.executable, "-m", "towerlab", *args(k)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not _mid_trial(k) and time.time() < deadline and search.poll() is None:
        time.sleep(0.01)
    assert search.poll() is None, "the search ended before it could be killed"
    unfinished = {t.name for t in (k / "trials").glob("*") if not (t / "final_metrics.json").exists()}
    os.kill(search.pid, signal.SIGKILL)
    search.wait()
    deadline = time.time() + 1.5
    while _trial_processes(k / "trials") and time.time() < deadline:
        time.sleep(0.05)
    assert _trial_processes(k / "trials") == [], "trial processes outlived their search"
    # an orphan that trained on to its end (on a fast machine, within the wait) would have left its final metrics
    assert not [t for t in unfinished if (k / "trials" / t / "final_metrics.json").exists()], "a trial outlived it"
    run_cli(*args(k))
    state = [json.loads((d / "search_state.json").read_text()) for d in (tmp_path / "s", k)]
    assert state[0]["cache"] == state[1]["cache"] and state[0]["history"] == state[1]["history"]


def test_ensemble_of_two_seeds_and_a_single_member_equals_itself(tmp_path):
    out = run_cli(
        "ensemble",
        "digits",
        "--members",
        "2",
        "--workers",
        "2",
        "--out",
        str(tmp_path / "e"),
        "--set",
        "max_steps=20",
        "--set",
        "eval_every_epochs=0",
    ).stdout
    report = json.loads((tmp_path / "e" / "ensemble.json").read_text())
    assert set(report["members"]) == {"member0", "member1"} and "ensemble" in out
    assert 0.3 < report["ensemble"]["accuracy"] <= 1
    assert set(report["ensemble"]) == {"accuracy", "mean_class_accuracy"}  # issue 43: IoU of image classes was shown
    assert "iou" not in out.lower()
    assert report["members"]["member0"]["accuracy"] != report["members"]["member1"]["accuracy"]  # other seeds
    from pathlib import Path

    from towerlab.jobs import evaluate_ensemble

    alone = evaluate_ensemble([Path(tmp_path / "e" / "member1")])
    assert alone["accuracy"] == report["members"]["member1"]["accuracy"]
