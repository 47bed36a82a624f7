"""How the processes of a run share a model: `ddp` (a full replica each, gradients averaged) or `fsdp`
(PyTorch FSDP2 `fully_shard`: parameters, gradients and optimizer state sharded across the processes, each layer
gathered only while it computes), for a model whose training state does not fit one device.

Checkpoints hold full (unsharded) state dicts either way, so a run saved under one strategy loads under the other,
and `predict`, `eval` and `serve` read it like any run.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from towerlab.dist import Dist


def wrap(raw: nn.Module, strategy: str, dist: Dist) -> tuple[nn.Module, DDP | None]:
    """(the module to call, the DDP wrapper if any). FSDP shards each parameter-holding child, then the root."""
    if not dist.distributed:
        return raw, None
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for child in raw.children():
            if any(p.requires_grad for p in child.parameters()):
                fully_shard(child)
        fully_shard(raw)
        return raw, None
    ddp = DDP(raw, device_ids=[dist.device] if dist.device.type == "cuda" else None)
    return ddp, ddp


def unwrap(model: nn.Module, cls: type) -> nn.Module:
    """The `cls` module inside DDP (.module), torch.compile (._orig_mod) and AveragedModel (.module) wrappers."""
    while not isinstance(model, cls):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def no_sync(model: nn.Module, ddp: DDP | None, strategy: str, last: bool):
    """Skip the gradient reduction on all but the last micro-batch of an accumulated step."""
    if last:
        if strategy == "fsdp" and hasattr(model, "set_requires_gradient_sync"):
            model.set_requires_gradient_sync(True)
        return nullcontext()
    if ddp is not None:
        return ddp.no_sync()
    if strategy == "fsdp" and hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
    return nullcontext()


def sharded(model: nn.Module) -> bool:
    return any(type(p).__name__ == "DTensor" for p in model.parameters())


def full_state(raw: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full model and optimizer state dicts on the host (a collective under FSDP: every process calls it)."""
    if not sharded(raw):
        return raw.state_dict(), opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(raw, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(raw: nn.Module, opt: torch.optim.Optimizer, model_sd: dict, opt_sd: dict, source: Path) -> None:
    if not sharded(raw):
        from towerlab.checkpoint import load_into

        load_into(raw, model_sd, source)
        opt.load_state_dict(opt_sd)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(raw, opt, model_state_dict=model_sd, optim_state_dict=opt_sd,
                   options=StateDictOptions(full_state_dict=True))
