"""Training a plan into its run directory: fresh, continued, or in stages; what a failure leaves behind."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from towerlab import checkpoint, perf, preempt
from towerlab.config import TrainConfig
from towerlab.dist import Dist, peer_failure, print0, setup
from towerlab.engine import state
from towerlab.engine.trainer import Trainer
from towerlab.errors import Preempted, TowerlabError
from towerlab.preempt import Preemption
from towerlab.runs import RunRecord
from towerlab.runs.opening import open_run, run_dir_of
from towerlab.runs.plan import Plan


def fit(recipe, cfg: TrainConfig, dist: Dist | None = None, out: str | Path | None = None) -> dict:
    """Train `recipe` with `cfg` into the run directory `out` (default runs/<recipe>-<time>), in stages for a recipe
    that has them; return the final metrics. The library's door: the plan is made here from what it is handed."""
    cfg.validate()
    return fit_plan(Plan.of(recipe, cfg, out), dist)


def fit_stages(recipe, cfg: TrainConfig, dist: Dist | None = None, out: str | Path | None = None) -> dict:
    """fit (kept under its old name: a staged recipe trains in stages through fit too)."""
    return fit(recipe, cfg, dist, out)


def resume(
    run_dir: str | Path, dist: Dist | None = None, overrides: dict | None = None, allow_world_size_change: bool = False
) -> dict:
    """Continue the run in run_dir from its newest checkpoint (config read from its config.yaml, `overrides`
    applied to the fields runs.plan.RESUMABLE lists; the new values are written back to config.yaml)."""
    return fit_plan(Plan.continuing(run_dir, overrides, allow_world_size_change), dist)


def fit_plan(plan: Plan, dist: Dist | None = None) -> dict:
    """Train what the plan says. A continued run ends with the same weights as one never interrupted (on as many
    processes as it was trained with; plan.allow_world_size_change continues on another count, not exactly)."""
    dist = dist or setup()
    if plan.resume:
        return _unchanged(plan, dist) or _fit(plan, dist)
    if plan.can("stages"):
        return _fit_stages(plan, dist)
    return _fit(plan, dist)


def _unchanged(plan: Plan, dist: Dist) -> dict | None:
    """A finished run continued with no more steps asked for: its metrics as they are, no file rewritten."""
    record = RunRecord.load(plan.out)
    saved, cfg = record.build_config()[1], plan.built()
    if record.status != "done" or (cfg.max_steps, cfg.epochs) != (saved.max_steps, saved.epochs):
        return None
    print0(
        f"{plan.out} finished at step {record.final.get('step')}; nothing to do (raise --max-steps or --epochs to "
        f"train it on)",
        dist=dist,
    )
    return {**record.final, "run_dir": str(plan.out), "unchanged": True}


def _fit_stages(plan: Plan, dist: Dist) -> dict:
    """One run directory per stage of a recipe that trains in stages (segdec: seg, then dec), out/<stage>, each
    started from the best weights of the one before. Returns the last stage's metrics."""
    recipe = plan.recipe_object()
    stages = recipe.stages(plan.built())
    if len(stages) == 1:
        return _fit(dataclasses.replace(plan, config=dataclasses.asdict(stages[0][1])), dist)
    base = run_dir_of(recipe.NAME, plan.out, dist)
    previous, metrics = None, {}
    for name, stage_cfg in stages:
        if previous:
            stage_cfg = dataclasses.replace(stage_cfg, init_from=previous)
        print0(f"stage {name}: {base / name}", dist=dist)
        stage = dataclasses.replace(plan, config=dataclasses.asdict(stage_cfg), out=str(base / name))
        if plan.resume_stages and checkpoint.of_run(stage.out):  # a finished stage as it is, a cut-off one resumed
            # (its own config with this command's changes, refused in one line if they would alter steps taken)
            stage = Plan.continuing(stage.out, stage.config, plan.allow_world_size_change, plan.world_size)
        metrics = (stage.resume and _unchanged(stage, dist)) or _fit(stage, dist)
        previous = str(base / name)
    return metrics


def _fit(plan: Plan, dist: Dist) -> dict:
    """One run directory: opened (fresh or continued, under its lock), trained, closed with its status."""
    recipe, cfg, resume = plan.recipe_object(), plan.built(), plan.resume
    # config.yaml keeps the settings as given (`fast: true`), chosen again for the device on resume; env.json what ran
    fast, chosen = perf.apply_fast(cfg, dist.device)
    out = run_dir_of(recipe.NAME, plan.out, dist)
    # from here on a signal is a request to stop at the next step boundary (the first one included: a run signalled
    # while it reads its data stops with a step-0 checkpoint that --resume continues), never a kill mid-write
    preemption = Preemption(cfg.preempt_signals, dist)
    run, trainer = None, None
    made = not resume and not Path(out).exists()  # a refused start removes the folder it made (the board lists none)
    try:
        run, folder = open_run(recipe.NAME, cfg, dist, out, resume, plan.allow_world_size_change, speed=fast)
        cfg = fast
        if chosen:
            print0(chosen, dist=dist)
        trainer = Trainer(recipe, cfg, dist, run, frozenset(plan.capabilities))
        if run and plan.can("artifacts"):  # files a run needs besides weights (chemvae's vocabulary)
            recipe.save_artifacts(cfg, trainer.data, run.path)
        if folder:
            state.load(trainer, folder)
        metrics = trainer.train(preemption)
        if run:
            metrics["run_dir"] = str(run.path)
            run.write_final(metrics)
        return metrics
    except KeyboardInterrupt:
        if run:
            run.write_status("interrupted")
        raise
    except Preempted as e:
        if run:
            run.write_status("preempted", str(e))
            done = preempt.requeue() if cfg.requeue else None
            if done:
                print0(f"requeued: {done}", dist=dist)
        raise
    except Exception as e:
        if run and made and isinstance(e, TowerlabError) and (trainer is None or trainer.step == 0):
            run.close()  # refused before a step was taken: a user's mistake, said in one line; no folder stays
            shutil.rmtree(run.path, ignore_errors=True)
            run = None
        if run:  # a collective broken by another process's death leaves a run to resume, not a failed one
            status = "interrupted" if isinstance(e, RuntimeError) and peer_failure(e) else "failed"
            run.write_status(status, (str(e).strip().splitlines() or [type(e).__name__])[0][:500])
        raise
    finally:
        preemption.restore()
        if run:
            run.close()
