"""Opening a run directory for training, on every rank at once: rank 0 takes the lock and decides (a fresh run, or
the checkpoint to continue from, refusing a continuation that cannot be exact before anything is touched); every
rank gets the same answer or the same error, so a refusal never leaves a process waiting in a collective."""

from __future__ import annotations

from pathlib import Path

from towerlab import checkpoint, errors, perf
from towerlab.dist import Dist, broadcast_object
from towerlab.errors import ConfigError, TowerlabError
from towerlab.runs.run import Run, default_dir


def _check_resumable(folder: Path, cfg, dist: Dist, allow_world_size_change: bool) -> None:
    """Refuse a continuation that cannot be exact before anything in the run directory is touched."""
    saved = checkpoint.folder_world_size(folder)
    if saved != dist.world_size and not allow_world_size_change:
        raise ConfigError(
            f"the run was trained on {saved} process(es), this is {dist.world_size}: resume with "
            f"--procs {saved} (the default), or pass --allow-world-size-change to continue on "
            f"{dist.world_size} (not bit-exact: dropout and augmentation draw differently)"
        )
    if cfg.max_steps and cfg.max_steps < checkpoint.step_of(folder):
        raise ConfigError(
            f"the run has taken {checkpoint.step_of(folder)} steps already, more than max_steps="
            f"{cfg.max_steps}; raise --max-steps"
        )


def _plan(
    recipe: str, cfg, dist: Dist, out: str | Path, resume: bool, allow_world_size_change: bool
) -> tuple[Run, Path | None]:
    """Rank 0: lock the run directory, then (Run, the checkpoint to continue from, if resuming)."""
    path = Path(out)
    run = Run(path)  # takes the directory's lock: a second process training it is refused here
    try:
        folder = None
        if resume:
            folder = checkpoint.find(path)
            _check_resumable(folder, cfg, dist, allow_world_size_change)
        elif checkpoint.of_run(path):
            raise ConfigError(
                f"{path} already holds a run; continue it with `towerlab train --resume {path}` or choose another --out"
            )
        run.open(recipe, cfg, resume_step=checkpoint.step_of(folder) if folder else 0)
        return run, folder
    except BaseException:
        run.close()
        raise


def run_dir_of(recipe: str, out: str | Path | None, dist: Dist) -> Path:
    """--out, or the default run directory runs/<recipe>-<time>, decided on rank 0 and told to every rank (processes
    started by hand under torchrun would each see another time). `towerlab train` decides it before it launches
    processes (train.launch), so that restarts find the same folder."""
    return Path(out) if out else broadcast_object(default_dir(recipe) if dist.is_main else None, dist)


def open_run(
    recipe: str, cfg, dist: Dist, out: str | Path, resume: bool, allow_world_size_change: bool = False, speed=None
) -> tuple[Run | None, Path | None]:
    """(rank 0's Run or None, the checkpoint folder to resume from). Rank 0 decides and every rank gets the same
    answer or the same error, so a refusal never leaves a process waiting in a collective until it times out."""
    run, folder, answer = None, None, None
    if dist.is_main:
        try:
            run, folder = _plan(recipe, cfg, dist, out, resume, allow_world_size_change)
            answer = ("ok", str(folder) if folder else None)
        except TowerlabError as e:
            answer = ("error", type(e).__name__, str(e))
            if not dist.distributed:
                raise
    answer = broadcast_object(answer, dist)
    if answer[0] == "error":
        raise getattr(errors, answer[1], TowerlabError)(answer[2], all_ranks=True)
    if run:  # the speed settings that run, which config.yaml of a --fast run does not hold (it says fast: true)
        env = run.write_env(
            dist.world_size,
            dist.device,
            {f: getattr(speed or cfg, f) for f in perf.FAST_FIELDS},
            getattr(cfg, "data", ""),
        )
        run.start_tracking(recipe, cfg, dist.world_size, env["provenance"].get("git"))
    return run, Path(answer[1]) if answer[1] else None
