"""Many runs on many devices: a queue of jobs (recipe + overrides), each pinned to a free device.

    # JOBS.yaml
    jobs:
      - {name: digits-lr01, recipe: digits, overrides: {lr: 0.01}}
      - {name: mnist-a, recipe: mnist, overrides: {epochs: 2}}

    towerlab jobs run JOBS.yaml --gpus 0,1,2,3 [--per-gpu 2]     # or --workers N on a machine without GPUs

A failing job is recorded and the others go on; a re-run skips finished jobs and resumes interrupted ones.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from towerlab import recipes
from towerlab.config import load_yaml
from towerlab.errors import ConfigError
from towerlab.search.executor import LocalExecutor, Result, Trial


def load_jobs(path: str | Path, out: Path) -> list[Trial]:
    data = load_yaml(path)
    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ConfigError(f"{path} needs a non-empty list under `jobs:` (each with name, recipe, overrides)")
    trials, names = [], set()
    for i, job in enumerate(jobs):
        if not isinstance(job, dict) or "recipe" not in job:
            raise ConfigError(f"{path}: job {i + 1} needs at least `recipe:`")
        recipes.get(job["recipe"])  # an unknown recipe fails here, before anything runs
        name = str(job.get("name") or f"{job['recipe']}-{i + 1}")
        if name in names or "/" in name:
            raise ConfigError(f"{path}: job name {name!r} is repeated or holds '/'; names are folder names")
        names.add(name)
        trials.append(Trial(name, job["recipe"], dict(job.get("overrides") or {}), out / name))
    return trials


def summary_rows(trials: list[Trial], results: list[Result]) -> list[dict]:
    rows = []
    for t, r in zip(trials, results):
        metric, _ = recipes.get(t.recipe).MAIN_METRIC
        rows.append({"job": t.name, "recipe": t.recipe, "device": r.device, "status": r.status,
                     "seconds": round(r.seconds, 1), metric: r.metrics.get(metric, ""), "error": r.error})
    return rows


def run(path: str | Path, out: str | Path, executor: LocalExecutor) -> list[dict]:
    out = Path(out)
    trials = load_jobs(path, out)
    rows = summary_rows(trials, executor.run(trials))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    return rows
