"""How a run uses its processes and devices: one Strategy object per run, chosen once from the config.

  single     one process, one device
  ddp        a full replica per process, gradients averaged in backward (DistributedDataParallel)
  fsdp       parameters, gradients and optimizer state sharded across the processes (PyTorch FSDP2 `fully_shard`),
             each layer gathered only while it computes: for a model whose training state does not fit one device
  pipeline   one process, the model cut into consecutive stages on several devices, micro-batches flowing through

The engine calls only these methods; no other module asks which strategy a run has. Checkpoints hold full
(unsharded) state dicts under every strategy, so a run saved under one loads under another, and `predict`, `eval`
and `serve` read any run.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from towerlab.config import STRATEGY_NAMES
from towerlab.dist import Dist, print0
from towerlab.errors import ConfigError


class Strategy:
    """One process, one device: the base every other strategy refines."""

    name = "single"
    sharded = False  # the model's parameters are split across processes (no replica to compare)

    def __init__(self, cfg, dist: Dist):
        self.cfg, self.dist = cfg, dist

    @staticmethod
    def processes(gpus: int) -> int:
        """Processes to launch for `gpus` devices."""
        return max(gpus, 1)

    def check(self) -> None:
        """ConfigError for a config this strategy cannot train."""

    def place(self, raw: nn.Module) -> nn.Module:
        return raw.to(self.dist.device)

    def wrap(self, raw: nn.Module) -> nn.Module:
        """The module the training step calls."""
        return raw

    def no_sync(self, last: bool):
        """Context for one micro-batch of an accumulated step: gradients are reduced only on the last."""
        return nullcontext()

    def full_state(self, raw: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
        """Full model and optimizer state dicts on the host (a collective where sharded: every process calls it)."""
        return raw.state_dict(), opt.state_dict()

    def load_full_state(
        self, raw: nn.Module, opt: torch.optim.Optimizer, model_sd: dict, opt_sd: dict, source: Path
    ) -> None:
        from towerlab.checkpoint import load_into

        load_into(raw, model_sd, source)
        opt.load_state_dict(opt_sd)

    def sharded_state(self, raw: nn.Module, opt: torch.optim.Optimizer) -> dict:
        """This rank's part of the model and the optimizer state, as torch.distributed.checkpoint takes it (FSDP:
        its shards, nothing gathered; one process: the whole): what checkpoint=sharded writes."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, opt_sd = get_state_dict(raw, opt)
        return {"model": model_sd, "optim": opt_sd}

    def load_sharded_state(self, raw: nn.Module, opt: torch.optim.Optimizer, folder: Path) -> None:
        """The model and optimizer from a sharded checkpoint written at any world size (resharded into this one's
        layout). A collective."""
        from torch.distributed.checkpoint.state_dict import set_state_dict

        from towerlab import checkpoint

        shards = self.sharded_state(raw, opt)  # shaped for this world size; the reader reshards into it
        checkpoint.load_shards(folder, shards)
        set_state_dict(raw, opt, model_state_dict=shards["model"], optim_state_dict=shards["optim"])

    def eval_model(self, raw: nn.Module, ema, model: nn.Module) -> nn.Module:
        """The module evaluation calls: the moving average when the run keeps one."""
        return ema.module if ema is not None else raw


class DDPStrategy(Strategy):
    name = "ddp"

    def wrap(self, raw: nn.Module) -> nn.Module:
        self.ddp = DDP(raw, device_ids=[self.dist.device] if self.dist.device.type == "cuda" else None)
        return self.ddp

    def no_sync(self, last: bool):
        return nullcontext() if last else self.ddp.no_sync()

    def eval_model(self, raw: nn.Module, ema, model: nn.Module) -> nn.Module:
        """Rank 0's buffers first, as DDP does before every training forward: batch-norm statistics are updated by
        each process from its own slice, so after the last step they differ, and the processes would evaluate
        (and the replica check compare) slightly different models (measured: 3e-3 on chemvae's conv1d encoder)."""
        for b in raw.buffers():
            if b.numel():
                torch.distributed.broadcast(b, 0)
        return super().eval_model(raw, ema, model)


class FSDPStrategy(Strategy):
    name = "fsdp"
    sharded = True

    def check(self) -> None:
        if self.cfg.ema_decay:
            raise ConfigError(
                "ema_decay with strategy=fsdp is not supported: the average would be a full copy on "
                "one device; set --ema-decay 0 or use --strategy ddp"
            )

    def wrap(self, raw: nn.Module) -> nn.Module:
        """Shard each parameter-holding child, then the root."""
        from torch.distributed.fsdp import fully_shard

        for child in raw.children():
            if any(p.requires_grad for p in child.parameters()):
                fully_shard(child)
        fully_shard(raw)
        self.raw = raw
        return raw

    def no_sync(self, last: bool):
        self.raw.set_requires_gradient_sync(last)
        return nullcontext()

    def full_state(self, raw: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(raw, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_full_state(
        self, raw: nn.Module, opt: torch.optim.Optimizer, model_sd: dict, opt_sd: dict, source: Path
    ) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(
            raw, opt, model_state_dict=model_sd, optim_state_dict=opt_sd, options=StateDictOptions(full_state_dict=True)
        )


class PipelineStrategy(Strategy):
    """The model cut into stages on several devices of this one process (see towerlab.pipeline)."""

    name = "pipeline"

    @staticmethod
    def processes(gpus: int) -> int:
        return 1

    def check(self) -> None:
        if self.dist.distributed:
            raise ConfigError(
                "strategy=pipeline runs in one process over several devices; launch one process "
                "(no --procs / torchrun) and name the devices with --pipeline-devices"
            )
        if self.cfg.compile or self.cfg.pipeline_chunks <= 0:
            raise ConfigError("strategy=pipeline needs pipeline_chunks > 0 and compile off")

    def place(self, raw: nn.Module) -> nn.Module:
        return raw  # each stage goes to its own device in wrap

    def wrap(self, raw: nn.Module) -> nn.Module:
        from towerlab.pipeline import Pipeline, devices_from

        pipe = Pipeline(raw, devices_from(self.cfg.pipeline_devices), self.cfg.pipeline_chunks)
        # said after the model is known to split: a model that cannot be pipelined at all is the first thing to say
        # (cifar10's default moving average used to be refused first, then its network)
        if self.cfg.ema_decay:
            raise ConfigError(
                f"ema_decay={self.cfg.ema_decay} with strategy=pipeline is not supported: the average "
                f"would be a full copy on one device; set --ema-decay 0 or use --strategy ddp"
            )
        print0(f"pipeline: {pipe.describe()}", dist=self.dist)
        return pipe

    def eval_model(self, raw: nn.Module, ema, model: nn.Module) -> nn.Module:
        return model  # the stages live on different devices: only the pipeline can call them


STRATEGIES = {"ddp": DDPStrategy, "fsdp": FSDPStrategy, "pipeline": PipelineStrategy}
if tuple(STRATEGIES) != STRATEGY_NAMES:  # the --strategy choices (config.py) must name exactly these
    raise ImportError(f"config.STRATEGY_NAMES {STRATEGY_NAMES} and strategy.STRATEGIES {tuple(STRATEGIES)} disagree")


def choose(cfg, dist: Dist) -> Strategy:
    """The strategy of a run: cfg.strategy, or one plain process when a data-parallel run has only one."""
    cls = STRATEGIES[cfg.strategy]
    if cls is not PipelineStrategy and not dist.distributed:
        cls = Strategy
    strategy = cls(cfg, dist)
    strategy.check()
    return strategy


def processes(strategy_name: str | None, gpus: int) -> int:
    """How many processes `gpus` devices mean under a strategy (a pipeline is one process over them all)."""
    return STRATEGIES.get(strategy_name or "ddp", Strategy).processes(gpus)


def unwrap(model: nn.Module, cls: type) -> nn.Module:
    """The `cls` module inside DDP (.module), torch.compile (._orig_mod) and AveragedModel (.module) wrappers."""
    while not isinstance(model, cls):
        model = getattr(model, "module", None) or model._orig_mod
    return model
