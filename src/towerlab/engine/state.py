"""A trainer's checkpoint: everything a continuation needs to take the next step exactly as an uninterrupted run
would (weights, optimizer, schedule, loss scale, EMA, every rank's random streams, the data position, the early
stop's count), written as full tensors under every strategy (checkpoint.py) and read back."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from towerlab import checkpoint
from towerlab.dist import all_gather, all_reduce_extremes, barrier, broadcast_object, print0, restart_count
from towerlab.errors import ConfigError


def state(t) -> tuple[dict, dict]:
    """(model weights, training state) of Trainer t, both full (unsharded; under checkpoint=sharded the weights
    and the optimizer are left to save's shards: None here); a collective: every rank takes part."""
    sharded = t.cfg.checkpoint.startswith("sharded")
    weights, optimizer = (None, None) if sharded else t.strategy.full_state(t.raw, t.opt)
    rng = {"cpu": torch.stack(all_gather(torch.get_rng_state(), t.dist))}  # every rank's stream, in rank order
    if t.dist.device.type == "cuda":
        rng["cuda"] = torch.stack(all_gather(torch.cuda.get_rng_state(t.dist.device), t.dist))
    epoch, position = divmod(t.step, t.steps_per_epoch)
    return weights, {
        "step": t.step,
        "data": {"epoch": epoch, "position": position},
        "world_size": t.dist.world_size,
        "optimizer": optimizer if optimizer is not None else {},
        "scheduler": t.sched.state_dict(),
        "scaler": t.precision.state_dict(),
        "best": t.evaluator.best,
        "rng": rng,
        "ema_n": t.ema.n_averaged.clone() if t.ema is not None else torch.zeros(()),
        "stopping": t.stopping.state(),
    }


def save(t, improved: bool, final: bool = False) -> None:
    """A checkpoint of this step (a collective). final: the last of the run or of this sitting (a signal): under
    checkpoint=sharded-async it is waited for too."""
    settle(t)  # the one still being written counts first: checkpoints are made whole in the order they were taken
    t.checkpointed = t.step
    model, training = state(t)  # a collective: every rank takes part
    pointers = ["last", "best"] if improved else ["last"]
    if model is None:  # checkpoint=sharded: every rank writes its own shards, at once
        shards = t.strategy.sharded_state(t.raw, t.opt)
        ckpt = t.run.path / "checkpoints" if t.run else None
        ckpt = broadcast_object(str(ckpt) if ckpt else None, t.dist)
        background = t.cfg.checkpoint == "sharded-async"
        pending = checkpoint.begin_sharded(Path(ckpt), t.step, shards, t.dist, background, _writers(t, background))
        # training goes on while the shards are written: what rank 0 adds to them is frozen as it is now
        t.pending_checkpoint = (pending, copy.deepcopy(training), pointers)
        if not background or final or t.step >= t.total_steps:
            settle(t)
        return
    if t.dist.is_main:
        weights = {"model": model}
        if t.ema is not None:
            weights["ema"] = t.ema.module.state_dict()
        checkpoint.save(t.run.path / "checkpoints", t.step, weights, training, pointers, t.cfg.keep_checkpoints)
    barrier(t.dist)


def settle(t) -> None:
    """The checkpoint being written in the background made whole (waited for, hashed, renamed into place); nothing
    when none is. A collective. A run that dies first leaves it a .tmp- folder, and resumes from the one before."""
    pending = t.pending_checkpoint
    if pending is None:
        return
    t.pending_checkpoint = None
    shards, training, pointers = pending
    checkpoint.finish_sharded(shards, training, pointers, t.cfg.keep_checkpoints, t.dist)


def _writers(t, background: bool):
    """The process group the background writes' collectives run on (made once, by every rank at its first
    checkpoint); None when the writes are not in the background or there is one process."""
    if not background or not torch.distributed.is_initialized():
        return None
    if t.checkpoint_group is None:
        t.checkpoint_group = torch.distributed.new_group(backend="gloo")
    return t.checkpoint_group


def load(t, folder: Path) -> None:
    """Trainer t as the checkpoint in `folder` left it."""
    saved = checkpoint.load_state(folder)
    world = saved["world_size"]  # a different count was refused before, unless the caller allowed it
    if world != t.dist.world_size:
        print0(
            f"resume: continuing a {world}-process run on {t.dist.world_size}; the random streams start afresh, so "
            f"the result will differ from an uninterrupted run",
            dist=t.dist,
        )
    if checkpoint.is_sharded(folder):
        t.strategy.load_sharded_state(t.raw, t.opt, folder)
    else:
        t.strategy.load_full_state(t.raw, t.opt, checkpoint.load_weights(folder, "model"), saved["optimizer"], folder)
    if t.ema is not None:
        t.ema.module.load_state_dict(checkpoint.load_weights(folder, "ema"))
        t.ema.n_averaged.copy_(saved["ema_n"])
    t.sched.load_state_dict(saved["scheduler"])
    t.precision.load_state_dict(saved["scaler"])
    t.step, t.evaluator.best = saved["step"], saved["best"]
    t.checkpointed = t.step
    t.stopping.load(saved.get("stopping"))
    if t.step > t.total_steps:
        raise ConfigError(
            f"the run has taken {t.step} steps already, more than the {t.total_steps} asked for; raise --max-steps "
            f"or --epochs",
            all_ranks=True,
        )
    restart = f" (torchrun restart {restart_count()})" if restart_count() else ""
    print0(f"resume{restart}: from {folder.name} (step {t.step} of {t.total_steps})", dist=t.dist)
    if world == t.dist.world_size:
        # a row of the stacked states is a view with a storage offset, which set_rng_state cannot take (SIGSEGV
        # on rank 1): hand it a tensor of its own
        torch.set_rng_state(saved["rng"]["cpu"][t.dist.rank].clone())
        if "cuda" in saved["rng"] and t.dist.device.type == "cuda":
            torch.cuda.set_rng_state(saved["rng"]["cuda"][t.dist.rank].clone(), t.dist.device)


def replica_spread(t) -> float | None:
    """Largest difference of any weight between processes: 0.0 when data parallelism works (None: sharded, or one
    process, where there is nothing to compare)."""
    if t.strategy.sharded or not t.dist.distributed:
        return None
    spread = torch.zeros((), device=t.dist.device)
    for p in t.raw.state_dict().values():
        if not p.numel():  # an empty buffer (chemvae without properties): nothing to compare
            continue
        hi, lo = all_reduce_extremes(p.detach().float(), t.dist)
        spread = torch.maximum(spread, (hi - lo).abs().max())
    return spread.item()
