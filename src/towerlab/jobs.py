"""Many runs on many devices: a queue of jobs (recipe + overrides), each pinned to a free device.

    # JOBS.yaml
    jobs:
      - {name: digits-lr01, recipe: digits, overrides: {lr: 0.01}}
      - {name: mnist-a, recipe: mnist, overrides: {epochs: 2}}

    towerlab jobs run JOBS.yaml --gpus 0,1,2,3 [--per-gpu 2]     # or --workers N on a machine without GPUs

A failing job is recorded and the others go on; a re-run skips finished jobs and resumes interrupted ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from towerlab import recipes
from towerlab.config import load_yaml
from towerlab.errors import ConfigError
from towerlab.executor import Executor
from towerlab.runs import GroupFolder, Result, RunRecord, Trial

# names become folder names and links in reports: matched whole, so "javascript:x", "../x" and "a\n" never pass
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def load_jobs(path: str | Path, out: Path) -> list[Trial]:
    data = load_yaml(path)
    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ConfigError(f"{path} needs a non-empty list under `jobs:` (each with name, recipe, overrides)")
    trials, names = [], set()
    for i, job in enumerate(jobs):
        if not isinstance(job, dict) or "recipe" not in job:
            raise ConfigError(f"{path}: job {i + 1} needs at least `recipe:`")
        recipes.config_class(job["recipe"])  # an unknown recipe fails here, before anything runs (and before torch)
        name = str(job.get("name") or f"{job['recipe']}-{i + 1}")
        if not NAME.fullmatch(name):
            raise ConfigError(
                f"{path}: job {i + 1}: name {name!r} is not a plain folder name (letters, digits, . _ -, "
                f"starting with a letter or digit); rename it"
            )
        if name in names:
            raise ConfigError(f"{path}: job name {name!r} is repeated; names are folder names")
        names.add(name)
        overrides = job.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: job {name}: overrides must be a mapping of field: value")
        recipes.check_overrides(job["recipe"], overrides, f"{path}: job {name}")  # all of them, before any job runs
        trials.append(Trial(name, job["recipe"], dict(overrides), out / name))
    return trials


def summary_rows(trials: list[Trial], results: list[Result]) -> list[dict]:
    rows = []
    for t, r in zip(trials, results):
        metric, _ = recipes.get(t.recipe).MAIN_METRIC
        rows.append(
            {
                "job": t.name,
                "recipe": t.recipe,
                "device": r.device,
                "status": r.status,
                "seconds": round(r.seconds, 1),
                metric: r.metrics.get(metric, ""),
                "error": r.error,
            }
        )
    return rows


def run(path: str | Path, out: str | Path, executor: Executor) -> list[dict]:
    out = Path(out)
    trials = load_jobs(path, out)
    rows = summary_rows(trials, executor.run(trials))
    GroupFolder(out).write_summary(rows)
    return rows


def ensemble(recipe_name: str, members: int, out: str | Path, executor: Executor, fixed: dict | None = None) -> dict:
    """Train `members` copies of a recipe with seeds 0..K-1 side by side, then evaluate them together: the
    average of their predicted probabilities, scored on the validation split. Returns each member's metrics and
    the ensemble's."""
    out, fixed = Path(out), fixed or {}
    if members < 1:
        raise ConfigError(f"--members {members}: an ensemble needs at least 1 member (2 or more to be one)")
    recipes.check_overrides(recipe_name, fixed, "--set")
    trials = [Trial(f"member{i}", recipe_name, {**fixed, "seed": i}, out / f"member{i}") for i in range(members)]
    results = executor.run(trials)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise ConfigError(
            f"ensemble members {', '.join(r.name for r in failed)} failed: {failed[0].error or 'see their log.txt'}"
        )
    report = {
        "members": {t.name: _metrics_of(t) for t in trials},
        "ensemble": evaluate_ensemble([t.out for t in trials]),
    }
    GroupFolder(out).write_ensemble(report)
    return report


def _metrics_of(t: Trial) -> dict:
    m = RunRecord.load(t.out).final or {}
    return {k: v for k, v in m.items() if isinstance(v, float) and "/" not in k}


def evaluate_ensemble(run_dirs: list[Path], which: str = "best") -> dict:
    """Average the members' probabilities over the validation split of the first member's config, then take the
    argmax: image classes, or per-pixel classes for segmentation (ignored pixels never count)."""
    import torch

    from towerlab import infer
    from towerlab.dist import Dist
    from towerlab.metrics import ConfusionMatrix

    runs = [infer.load(d, which) for d in run_dirs]
    recipe, cfg = runs[0].recipe, runs[0].cfg
    recipes.require(recipe, "classify", "segment", command="an ensemble (it averages class probabilities)")
    val = recipe.build_data(cfg, Dist()).val
    cm = ConfusionMatrix(len(recipe.class_names(cfg)), torch.device("cpu"))
    with torch.no_grad():
        for batch in val:
            probs = sum(recipe.predict(r.model, batch[0]) for r in runs) / len(runs)
            cm.update(probs.argmax(1), batch[-1].long())
    metrics = cm.compute()
    if not recipes.has(recipe, "segment"):  # a classifier's figures are its members': no IoU of image classes
        metrics = {k: metrics[k] for k in ("accuracy", "mean_class_accuracy")}
    return metrics
