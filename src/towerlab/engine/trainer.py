"""The Trainer: one run's model, optimizer, schedule, EMA, loaders and step, and the loop that drives them. What it
delegates: evaluation (evaluation.py), the training log (train_log.py), the checkpoint (state.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from towerlab import checkpoint, perf, strategy
from towerlab.config import TrainConfig
from towerlab.data.loader import limited
from towerlab.data.stream import worker_death
from towerlab.dist import Dist, print0
from towerlab.engine import state
from towerlab.engine.evaluation import Evaluator
from towerlab.engine.loop import Clock, Stopping, Window
from towerlab.engine.train_log import TrainLog
from towerlab.errors import ConfigError, Preempted
from towerlab.optim import build_optimizer, ema_model, lr_factor, param_groups
from towerlab.precision import Precision
from towerlab.preempt import Preemption
from towerlab.recipes.contract import Step
from towerlab.runs import Run
from towerlab.runs.best import Metric
from towerlab.watch import Watcher


def _set_determinism(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not cfg.deterministic


def build_model(recipe, cfg: TrainConfig, data, strat, dist: Dist) -> tuple[nn.Module, nn.Module]:
    """(the model itself, the module the training step calls: wrapped by the strategy, maybe compiled)."""
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    raw = recipe.build_model(cfg, data)
    if cfg.init_from:
        copied, fresh = checkpoint.init_from(raw, Path(cfg.init_from), cfg.init_checkpoint)
        named = f": {', '.join(fresh[:8])}{' ...' if len(fresh) > 8 else ''}" if fresh else ""
        where = f"{cfg.init_from} ({cfg.init_checkpoint})"
        print0(f"init from {where}: {len(copied)} tensors copied, {len(fresh)} new{named}", dist=dist)
    raw = strat.place(raw)
    if cfg.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    if dist.distributed and cfg.sync_bn:
        raw = nn.SyncBatchNorm.convert_sync_batchnorm(raw)
    model = strat.wrap(raw)
    if cfg.compile:
        model = torch.compile(model, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
    return raw, model


def optimizer_of(recipe, can: frozenset, raw: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer or the configured one, over weight-decay groups (by default: decay matrices and
    kernels, never biases or norm scales)."""
    if "param_groups" in can:
        decay = set(recipe.decay_params(raw))
    else:
        decay = {n for n, p in raw.named_parameters() if p.ndim > 1}
    groups = param_groups(raw, decay, cfg.weight_decay)
    return recipe.build_optimizer(cfg, groups) if "optimizer" in can else build_optimizer(groups, cfg)


class Trainer:
    """State of one run: model, optimizer, schedule, EMA, loaders, step. `engine.fit` drives it."""

    def __init__(self, recipe, cfg: TrainConfig, dist: Dist, run: Run | None, can: frozenset):
        self.recipe, self.cfg, self.dist, self.run, self.can = recipe, cfg, dist, run, can
        _set_determinism(cfg, dist.device)
        # no page faults per step (perf.py): the same math, measured 1.2x on mnist; but where the shapes change
        # every step the kept memory fragments and grows (contract.RaggedBatches), so those recipes are left alone
        if dist.device.type == "cpu" and "ragged_batches" not in can:
            perf.keep_freed_memory()
        self.data = recipe.build_data(cfg, dist)
        self.train_loader = self.data.train
        if cfg.val_fraction and not self.data.held_out:
            raise ConfigError(f"{recipe.NAME} has its own validation split and does not take --val-fraction; leave 0")
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batch_size={cfg.batch_size} exceeds the {self.train_loader.num_items} training items; lower "
                f"--batch-size"
            )
        self.total_steps = cfg.max_steps or math.ceil(cfg.epochs * self.steps_per_epoch)
        self.strategy = strategy.choose(cfg, dist)
        self.raw, self.model = build_model(recipe, cfg, self.data, self.strategy, dist)
        self.ema = ema_model(self.raw, cfg.ema_decay) if cfg.ema_decay else None
        if self.ema is not None:  # keep the update counter on the host: no device sync per step
            self.ema.n_averaged = self.ema.n_averaged.cpu()
        self.opt = optimizer_of(recipe, can, self.raw, cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_factor(cfg, self.steps_per_epoch, self.total_steps))
        self.precision = Precision(cfg.precision, dist.device)
        self.step, self.checkpointed = 0, -1  # checkpointed: the newest checkpoint's step this process wrote or read
        self.pending_checkpoint = None  # checkpoint=sharded-async: the one being written (engine/state.py)
        self.checkpoint_group = None  # ... and the process group its writes talk on
        self.stopping, self.clock = Stopping(cfg, Metric.of(recipe)), Clock()
        val = limited(self.data.val, cfg.eval_limit) if cfg.eval_limit else self.data.val
        self.evaluator = Evaluator(recipe, can, self.data, val, bool(cfg.eval_limit), dist, run, self.clock)
        self.watch = (
            Watcher(self.raw, cfg.tb_histograms, run and run.tb, self.strategy.sharded) if cfg.tb_histograms else None
        )
        system = perf.SystemMetrics(dist.device) if cfg.system_metrics and dist.is_main else None
        self.log = TrainLog(dist, run, molecules=bool(can & {"generate", "autoencode", "sequence"}), system=system)
        torch.manual_seed(cfg.seed * 1009 + dist.rank + 1)  # per-rank stream for dropout and augmentation

    # -- one optimizer step ---------------------------------------------------------------------
    def train_step(self, batch: tuple[torch.Tensor, ...]) -> None:
        self.model.train()
        where = Step(self.step, self.total_steps, self.step / self.steps_per_epoch)
        watching = self.watch is not None and self.watch.due(self.step)  # off its steps: not even a hook
        if watching:
            self.watch.begin()
        if "train_step" in self.can:  # the recipe's own step (several optimizers, a closure, ...)
            with self.precision.autocast():
                self.log.add(self.recipe.train_step(self.model, batch, where, self.opt, self.precision))
        else:
            self._step(batch, where)
        if watching:
            self.watch.end(self.step + 1)
        self.sched.step()
        if self.ema is not None:
            self.ema.update_parameters(self.raw)
        self.log.steps += 1

    def _step(self, batch: tuple[torch.Tensor, ...], where: Step) -> None:
        """The usual step: accumulated micro-batches, a gradient scaler for fp16, clipping, one optimizer step."""
        self.opt.zero_grad(set_to_none=True)
        micro = list(zip(*(t.chunk(self.cfg.accum_steps) for t in batch)))
        for i, mb in enumerate(micro):
            with self.strategy.no_sync(i == len(micro) - 1):
                with self.precision.autocast():
                    loss, logs = self.recipe.loss(self.model, mb, where)
                self.precision.backward(loss / len(micro))
            self.log.add({"loss": loss, **logs}, len(micro))
        self.precision.step(self.opt, self.raw.parameters(), self.cfg.clip_grad)

    # -- what follows a step --------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        model = self.strategy.eval_model(self.raw, self.ema, self.model)
        epoch = self.step / self.steps_per_epoch
        metrics = self.evaluator.evaluate(model, self.step, epoch, self.precision)
        self.stopping.update(metrics)
        return metrics

    def after_step(self, bar: tqdm, window: Window) -> None:
        cfg, step = self.cfg, self.step
        if step % cfg.log_every == 0 or step == self.total_steps:
            reader = getattr(self.train_loader, "reader", None)  # a stream: the files it replaced so far
            rate = window.rate(step, cfg.batch_size)
            self.log.write(step, bar, self.sched.get_last_lr()[0], rate, reader.skipped if reader else 0)
            window.restart(step)
        if step == self.total_steps or (self.eval_interval and step % self.eval_interval == 0):
            before = self.evaluator.best.get("step")
            self.evaluate()
            with self.clock.timing("ckpt_seconds"):
                state.save(self, improved=self.evaluator.best.get("step") != before)
            window.restart(step)  # evaluation time is not training throughput
        elif cfg.ckpt_every_steps and step % cfg.ckpt_every_steps == 0:
            state.save(self, improved=False)

    @property
    def eval_interval(self) -> int:
        if self.cfg.eval_every_steps:
            return self.cfg.eval_every_steps
        every = self.cfg.eval_every_epochs
        return max(1, round(every * self.steps_per_epoch)) if every else 0

    def stop_if_preempted(self, preemption: Preemption, bar: tqdm) -> None:
        """A signal on any rank: every rank checkpoints this step and the run ends as preempted (--resume goes on)."""
        name = preemption.requested()
        if not name:
            return
        if self.checkpointed != self.step:
            state.save(self, improved=False, final=True)
        state.settle(self)  # (one taken at this very step may still be being written)
        bar.close()
        run = self.run.path if self.run else "RUN_DIR"
        raise Preempted(
            f"{name} at step {self.step} of {self.total_steps}: checkpoint saved; continue with "
            f"`towerlab train --resume {run}`",
            all_ranks=True,
        )

    # -- the loop -------------------------------------------------------------------------------
    def _loop(self, preemption: Preemption, bar: tqdm, window: Window) -> None:
        while self.step < self.total_steps and not self.stopping.reason:  # (a resumed run may have stopped)
            self.train_loader.set_epoch(*divmod(self.step, self.steps_per_epoch))
            for batch in self.train_loader:
                if self.step == 0:
                    self.log.inputs(batch, self.step)
                self.train_step(batch)
                self.step += 1
                bar.update(1)
                self.after_step(bar, window)
                if self.step >= self.total_steps or self.stopping.reason:
                    return
                self.stop_if_preempted(preemption, bar)

    def train(self, preemption: Preemption) -> dict:
        where = f"{self.dist.device} x {self.dist.world_size} process(es), {torch.get_num_threads()} CPU threads each"
        print0(f"{self.recipe.NAME}: {self.total_steps} steps on {where}", dist=self.dist)
        name, main = self.recipe.NAME, self.dist.is_main
        bar = tqdm(
            total=self.total_steps, initial=self.step, disable=not main, unit="step", dynamic_ncols=True, desc=name
        )
        start_step, window = self.step, Window(self.step)
        self.clock.start()
        try:  # the bar closed before any error line is printed (the error must be the last line)
            if self.step < self.total_steps:
                self.stop_if_preempted(preemption, bar)  # signalled while the data was read: a step-0 checkpoint
            self._loop(preemption, bar, window)
            state.settle(self)  # an early stop's last checkpoint may still be being written
        except (RuntimeError, OSError, EOFError) as e:  # a dead data worker: one line naming its file, no traceback
            died = worker_death(e)
            if died is None:
                raise
            raise died from None
        finally:
            bar.close()
        signalled = preemption.requested()  # during the last step: the run is complete, what follows is skipped
        if self.stopping.reason:
            print0(f"stopped at step {self.step}: {self.stopping.reason}", dist=self.dist)
        if not self.evaluator.last:  # resumed at the very end: nothing was evaluated in this process
            self.evaluate()
        return self._final(start_step, signalled)

    def _final(self, start_step: int, signalled: str | None) -> dict:
        """The run's final metrics; `signalled`: a signal during the last step (the run is complete regardless)."""
        wall = self.clock.wall()
        training = max(wall - self.clock.eval_seconds, 1e-9)  # throughput counts training only, never evaluation
        return {
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            **self.evaluator.last,
            "best": self.evaluator.best,
            self.log.rate_key: (self.step - start_step) * self.cfg.batch_size / training,
            "wall_s": wall,
            "eval_s": self.clock.eval_seconds,
            "world_size": self.dist.world_size,
            **({"stopped": self.stopping.reason} if self.stopping.reason else {}),
            **({"signal": signalled} if signalled else {}),
            "replica_max_abs_diff": state.replica_spread(self),
        }
