"""The one training loop: fit(recipe, cfg, dist) -> metrics dict.

    towerlab train mnist --data DIR                 # CPU, or the one visible GPU
    towerlab train mnist --data DIR --gpus 4        # 4 GPUs: relaunches itself under torchrun
    torchrun --nproc-per-node 4 -m towerlab train mnist --data DIR   # the same, launched by hand

Under torchrun (RANK set) every process builds the same model from the same seed, wraps it in
DistributedDataParallel and trains on its own slice of each global batch; gradients are averaged
in backward, so the replicas stay identical. A search, a test and the CLI all call `fit` the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shutil
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from towerlab import checkpoint, perf, preempt, recipes, strategy
from towerlab.config import TrainConfig, merge
from towerlab.data.loader import limited
from towerlab.data.stream import worker_death
from towerlab.dist import (
    Dist,
    all_gather,
    all_gather_rows,
    all_reduce_extremes,
    all_reduce_sum,
    barrier,
    peer_failure,
    print0,
    restart_count,
    setup,
)
from towerlab.errors import ConfigError, DivergedError, Preempted, TowerlabError
from towerlab.optim import build_optimizer, ema_model, lr_factor, param_groups
from towerlab.precision import Precision
from towerlab.preempt import Preemption
from towerlab.recipes.contract import Step
from towerlab.runs import Run, RunRecord
from towerlab.runs.best import Metric
from towerlab.runs.opening import open_run, run_dir_of
from towerlab.watch import Watcher


def _default_decay(model: nn.Module) -> list[str]:
    """Without a recipe's word: decay matrices and kernels, never biases or norm scales."""
    return [n for n, p in model.named_parameters() if p.ndim > 1]


def _set_determinism(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not cfg.deterministic


class Trainer:
    """State of one run: model, optimizer, schedule, EMA, loaders, step. `fit` drives it."""

    def __init__(self, recipe, cfg: TrainConfig, dist: Dist, run: Run | None):
        self.recipe, self.cfg, self.dist, self.run = recipe, cfg, dist, run
        self.can = frozenset(recipes.capabilities(recipe))  # what the recipe provides, asked once
        _set_determinism(cfg, dist.device)
        # no page faults per step (perf.py): the same math, measured 1.2x on mnist; but where the shapes change
        # every step the kept memory fragments and grows (contract.RaggedBatches), so those recipes are left alone
        if dist.device.type == "cpu" and "ragged_batches" not in self.can:
            perf.keep_freed_memory()
        self.data = recipe.build_data(cfg, dist)
        self.train_loader, self.val_loader = self.data.train, self.data.val
        if cfg.val_fraction and not self.data.held_out:
            raise ConfigError(
                f"{recipe.NAME} has its own validation split and does not take --val-fraction; leave it at 0"
            )
        if cfg.eval_limit:
            self.val_loader = limited(self.val_loader, cfg.eval_limit)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"batch_size={cfg.batch_size} exceeds the {self.train_loader.num_items} training "
                f"items; lower --batch-size"
            )
        self.total_steps = cfg.max_steps or math.ceil(cfg.epochs * self.steps_per_epoch)
        self.eval_interval = self._eval_interval()
        self.strategy = strategy.choose(cfg, dist)
        self.raw, self.model = self._build_model()
        self.ema = ema_model(self.raw, cfg.ema_decay) if cfg.ema_decay else None
        if self.ema is not None:  # keep the update counter on the host: no device sync per step
            self.ema.n_averaged = self.ema.n_averaged.cpu()
        decay = set((recipe.decay_params if "param_groups" in self.can else _default_decay)(self.raw))
        groups = param_groups(self.raw, decay, cfg.weight_decay)
        self.opt = recipe.build_optimizer(cfg, groups) if "optimizer" in self.can else build_optimizer(groups, cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_factor(cfg, self.steps_per_epoch, self.total_steps))
        self.precision = Precision(cfg.precision, dist.device)
        self.step, self.best, self.last_eval = 0, {}, {}
        self.checkpointed = -1  # the step of the newest checkpoint this process wrote or resumed from
        self.stopping = Stopping(cfg, Metric.of(recipe))
        self.watch = (
            Watcher(self.raw, cfg.tb_histograms, run.tb if run else None, self.strategy.sharded)
            if cfg.tb_histograms
            else None
        )
        self.system = perf.SystemMetrics(dist.device) if cfg.system_metrics and dist.is_main else None
        self.eval_seconds = 0.0  # time spent evaluating: never counted as training throughput
        self.ckpt_seconds = 0.0  # time spent writing the checkpoints that follow evaluations
        self.started = time.perf_counter()  # this process's training loop began (train() sets it again)
        # the loss and the recipe's logs, summed on the device between two log lines (no host sync per step)
        self._log_sums: dict[str, torch.Tensor] = {"loss": torch.zeros((), device=dist.device)}
        self._loss_count = 0
        torch.manual_seed(cfg.seed * 1009 + dist.rank + 1)  # per-rank stream for dropout and augmentation

    def _build_model(self) -> tuple[nn.Module, nn.Module]:
        """(the model itself, the module the training step calls: wrapped by the strategy, maybe compiled)."""
        cfg, dist = self.cfg, self.dist
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        raw = self.recipe.build_model(cfg, self.data)
        if cfg.init_from:
            copied, fresh = checkpoint.init_from(raw, Path(cfg.init_from), cfg.init_checkpoint)
            named = f": {', '.join(fresh[:8])}{' ...' if len(fresh) > 8 else ''}" if fresh else ""
            print0(
                f"init from {cfg.init_from} ({cfg.init_checkpoint}): {len(copied)} tensors copied, "
                f"{len(fresh)} new{named}",
                dist=dist,
            )
        raw = self.strategy.place(raw)
        if cfg.channels_last:
            raw = raw.to(memory_format=torch.channels_last)
        if dist.distributed and cfg.sync_bn:
            raw = nn.SyncBatchNorm.convert_sync_batchnorm(raw)
        model = self.strategy.wrap(raw)
        if cfg.compile:
            model = torch.compile(model, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
        return raw, model

    def autocast(self):
        return self.precision.autocast()

    # -- one optimizer step ---------------------------------------------------------------------
    def train_step(self, batch: tuple[torch.Tensor, ...]) -> None:
        self.model.train()
        where = Step(self.step, self.total_steps, self.step / self.steps_per_epoch)
        watching = self.watch is not None and self.watch.due(self.step)  # off its steps: not even a hook
        if watching:
            self.watch.begin()
        if "train_step" in self.can:  # the recipe's own step (several optimizers, a closure, ...)
            with self.autocast():
                self._add_logs(self.recipe.train_step(self.model, batch, where, self.opt, self.precision), 1)
        else:
            self._step(batch, where)
        if watching:
            self.watch.end(self.step + 1)
        self.sched.step()
        if self.ema is not None:
            self.ema.update_parameters(self.raw)
        self._loss_count += 1

    def _add_logs(self, logs: dict[str, torch.Tensor], parts: int) -> None:
        for name, value in logs.items():
            self._log_sums[name] = self._log_sums.get(name, 0.0) + value.detach().float() / parts

    def _step(self, batch: tuple[torch.Tensor, ...], where: Step) -> None:
        """The usual step: accumulated micro-batches, a gradient scaler for fp16, clipping, one optimizer step."""
        self.opt.zero_grad(set_to_none=True)
        micro = list(zip(*(t.chunk(self.cfg.accum_steps) for t in batch)))
        for i, mb in enumerate(micro):
            last = i == len(micro) - 1
            with self.strategy.no_sync(last):
                with self.autocast():
                    loss, logs = self.recipe.loss(self.model, mb, where)
                self.precision.backward(loss / len(micro))
            self._add_logs({"loss": loss, **logs}, len(micro))
        self.precision.step(self.opt, self.raw.parameters(), self.cfg.clip_grad)

    # -- evaluation, logging, checkpoints -------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        model = self.strategy.eval_model(self.raw, self.ema, self.model)
        model.eval()
        t0 = time.perf_counter()
        loader = Progress(self.val_loader, "evaluate", self.dist)
        with self.autocast():
            if "predictions" in self.can:
                metrics, probs, labels = self.recipe.evaluate_predictions(model, loader, self.dist)
            else:
                metrics = self.recipe.evaluate(model, loader, self.dist)
        self.eval_seconds += time.perf_counter() - t0
        if self.cfg.eval_limit:  # say so wherever these numbers go: they are not the whole validation split
            metrics = {**metrics, "eval_items": int(self.val_loader.num_items)}
        main = Metric.of(self.recipe)
        value = metrics[main.name]
        better = main.better(value, self.best.get("value")) and math.isfinite(value)
        if better:
            self.best = {"metric": main.name, "value": value, "step": self.step}
            if self.data.test is not None:  # the held-out test split, scored only for the weights validation chose
                self.best["test"] = self._test(model, metrics)
            if "predictions" in self.can:
                self._keep_predictions(probs, labels)
        self.last_eval = metrics
        self.stopping.update(metrics)
        if self.dist.is_main:  # on the console too, as each evaluation happens (not only in the files)
            shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/" not in k and k != "eval_items")
            tqdm.write(f"step {self.step}: validation {shown}" + ("  (best so far)" if better else ""))
        if self.run:  # with the time it took to get here (time to accuracy), evaluation not counted in train_s
            wall = time.perf_counter() - self.started
            self.run.log(
                self.step,
                {
                    "epoch": self.step / self.steps_per_epoch,
                    "wall_s": round(wall, 3),
                    "train_s": round(wall - self.eval_seconds - self.ckpt_seconds, 3),
                    **{f"val/{k}": v for k, v in metrics.items()},
                },
            )
            if "examples" in self.can:  # a recipe that draws its outputs (segmentation overlays)
                self.run.tb.add_images("val/examples", self.recipe.examples(model, self.val_loader), self.step)
        return metrics

    def _keep_predictions(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Every process's predictions put back in item order on rank 0 and written beside the run's metrics (the
        report reads them instead of evaluating the split again). A collective: every rank takes part."""
        where = all_gather_rows(self.val_loader.local_items(), self.dist)
        probs, labels = all_gather_rows(probs, self.dist), all_gather_rows(labels, self.dist)
        if self.run:
            order = where.argsort()
            self.run.write_predictions(self.step, probs[order], labels[order])

    def _test(self, model: nn.Module, validation: dict[str, float]) -> dict[str, float]:
        t0 = time.perf_counter()
        loader = Progress(self.data.test, "test", self.dist)
        with self.autocast():
            if "operating_point" in self.can:  # judged at the threshold validation chose, as it would be deployed
                metrics = self.recipe.evaluate_at(model, loader, self.dist, validation)
            else:
                metrics = self.recipe.evaluate(model, loader, self.dist)
        self.eval_seconds += time.perf_counter() - t0
        return {k: v for k, v in metrics.items() if "/" not in k}

    @functools.cached_property
    def molecules(self) -> bool:
        """The recipe reads SMILES: its throughput counts molecules, not images."""
        return bool(self.can & {"generate", "autoencode", "sequence"})

    @property
    def rate_name(self) -> str:
        return "mol_s" if self.molecules else "img_s"

    @property
    def rate_key(self) -> str:
        """The throughput's name in metrics.jsonl and final_metrics.json."""
        return "molecules_per_s" if self.molecules else "images_per_s"

    def log_train(self, bar: tqdm, images_per_s: float) -> None:
        names = list(self._log_sums)  # the same on every rank: the recipe returns the same keys everywhere
        reader = getattr(self.train_loader, "reader", None)  # a stream: the items it replaced, every rank's
        skipped = torch.tensor([float(reader.skipped if reader else 0)], device=self.dist.device)
        sums = all_reduce_sum(torch.cat([torch.stack([self._log_sums[n] for n in names]), skipped]), self.dist)
        *sums, skipped = sums.tolist()  # the one host sync
        means = {n: v / (self._loss_count * self.dist.world_size) for n, v in zip(names, sums)}
        self._log_sums = {n: torch.zeros((), device=self.dist.device) for n in names}
        self._loss_count = 0
        loss, lr = means["loss"], self.sched.get_last_lr()[0]
        terms = {n: f"{v:.4g}" for n, v in means.items() if n != "loss"}  # the recipe's own terms (recon, kl, ...)
        bar.set_postfix(loss=f"{loss:.4f}", **terms, lr=f"{lr:.3g}", **{self.rate_name: f"{images_per_s:,.0f}"})
        if self.run:
            self.run.log(
                self.step,
                {
                    **{f"train/{n}": v for n, v in means.items()},
                    "train/lr": lr,
                    f"train/{self.rate_key}": images_per_s,
                    **({"data/skipped_files": int(skipped)} if skipped else {}),
                    **(self.system.read() if self.system else {}),
                },
            )
        if not math.isfinite(loss):
            raise DivergedError(
                f"training loss became {loss} at step {self.step}; lower --lr or set --clip-grad "
                f"(the last checkpoint is kept)"
            )

    def state(self) -> tuple[dict, dict]:
        """(model weights, training state), both full (unsharded); a collective: every rank takes part."""
        weights, optimizer = self.strategy.full_state(self.raw, self.opt)
        rng = {"cpu": torch.stack(all_gather(torch.get_rng_state(), self.dist))}  # every rank's stream, in rank order
        if self.dist.device.type == "cuda":
            rng["cuda"] = torch.stack(all_gather(torch.cuda.get_rng_state(self.dist.device), self.dist))
        epoch, position = divmod(self.step, self.steps_per_epoch)
        return weights, {
            "step": self.step,
            "data": {"epoch": epoch, "position": position},
            "world_size": self.dist.world_size,
            "optimizer": optimizer,
            "scheduler": self.sched.state_dict(),
            "scaler": self.precision.state_dict(),
            "best": self.best,
            "rng": rng,
            "ema_n": self.ema.n_averaged.clone() if self.ema is not None else torch.zeros(()),
            "stopping": self.stopping.state(),
        }

    def save(self, improved: bool) -> None:
        self.checkpointed = self.step
        model, state = self.state()  # a collective: every rank takes part
        if self.dist.is_main:
            weights = {"model": model}
            if self.ema is not None:
                weights["ema"] = self.ema.module.state_dict()
            pointers = ["last", "best"] if improved else ["last"]
            checkpoint.save(
                self.run.path / "checkpoints", self.step, weights, state, pointers, self.cfg.keep_checkpoints
            )
        barrier(self.dist)

    def load(self, folder: Path) -> None:
        state = checkpoint.load_state(folder)
        saved = state["world_size"]  # a different count was refused before, unless the caller allowed it
        if saved != self.dist.world_size:
            print0(
                f"resume: continuing a {saved}-process run on {self.dist.world_size}; the random streams start "
                f"afresh, so the result will differ from an uninterrupted run",
                dist=self.dist,
            )
        self.strategy.load_full_state(
            self.raw, self.opt, checkpoint.load_weights(folder, "model"), state["optimizer"], folder
        )
        if self.ema is not None:
            self.ema.module.load_state_dict(checkpoint.load_weights(folder, "ema"))
            self.ema.n_averaged.copy_(state["ema_n"])
        self.sched.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state["scaler"])
        self.step, self.best = state["step"], state["best"]
        self.checkpointed = self.step
        self.stopping.load(state.get("stopping"))
        if self.step > self.total_steps:
            raise ConfigError(
                f"the run has taken {self.step} steps already, more than the {self.total_steps} asked "
                f"for; raise --max-steps or --epochs",
                all_ranks=True,
            )
        restart = f" (torchrun restart {restart_count()})" if restart_count() else ""
        print0(f"resume{restart}: from {folder.name} (step {self.step} of {self.total_steps})", dist=self.dist)
        if saved == self.dist.world_size:
            # a row of the stacked states is a view with a storage offset, which set_rng_state cannot take (SIGSEGV
            # on rank 1): hand it a tensor of its own
            torch.set_rng_state(state["rng"]["cpu"][self.dist.rank].clone())
            if "cuda" in state["rng"] and self.dist.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"][self.dist.rank].clone(), self.dist.device)

    def replica_spread(self) -> float | None:
        """Largest difference of any weight between processes: 0.0 when data parallelism works (None: sharded, or one
        process, where there is nothing to compare)."""
        if self.strategy.sharded or not self.dist.distributed:
            return None
        spread = torch.zeros((), device=self.dist.device)
        for p in self.raw.state_dict().values():
            if not p.numel():  # an empty buffer (chemvae without properties): nothing to compare
                continue
            hi, lo = all_reduce_extremes(p.detach().float(), self.dist)
            spread = torch.maximum(spread, (hi - lo).abs().max())
        return spread.item()

    # -- the loop -------------------------------------------------------------------------------
    def _eval_interval(self) -> int:
        if self.cfg.eval_every_steps:
            return self.cfg.eval_every_steps
        return max(1, round(self.cfg.eval_every_epochs * self.steps_per_epoch)) if self.cfg.eval_every_epochs else 0

    def after_step(self, bar: tqdm, window: Window) -> None:
        cfg, step = self.cfg, self.step
        if step % cfg.log_every == 0 or step == self.total_steps:
            self.log_train(bar, window.rate(step, cfg.batch_size))
            window.restart(step)
        interval = self.eval_interval
        evaluated = step == self.total_steps or (interval and step % interval == 0)
        if evaluated:
            before = self.best.get("step")
            self.evaluate()
            t0 = time.perf_counter()
            self.save(improved=self.best.get("step") != before)
            self.ckpt_seconds += time.perf_counter() - t0
            window.restart(step)  # evaluation time is not training throughput
        elif cfg.ckpt_every_steps and step % cfg.ckpt_every_steps == 0:
            self.save(improved=False)

    def stop_if_preempted(self, preemption: Preemption, bar: tqdm) -> None:
        """A signal on any rank: every rank checkpoints this step and the run ends as preempted (--resume goes on)."""
        name = preemption.requested()
        if not name:
            return
        if self.checkpointed != self.step:
            self.save(improved=False)
        bar.close()
        raise Preempted(
            f"{name} at step {self.step} of {self.total_steps}: checkpoint saved; continue with "
            f"`towerlab train --resume {self.run.path if self.run else 'RUN_DIR'}`",
            all_ranks=True,
        )

    def log_inputs(self, batch: tuple[torch.Tensor, ...]) -> None:
        x = batch[0]
        if self.run and x.ndim == 4 and x.shape[1] in (1, 3):
            x = x[:32].detach().float()
            lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
            self.run.tb.add_images("inputs", ((x - lo) / (hi - lo).clamp_min(1e-8)).cpu(), self.step)

    def _loop(self, preemption: Preemption, bar: tqdm, window: Window) -> None:
        while self.step < self.total_steps and not self.stopping.reason:  # (a resumed run may have stopped)
            epoch, position = divmod(self.step, self.steps_per_epoch)
            self.train_loader.set_epoch(epoch, position)
            for batch in self.train_loader:
                if self.step == 0:
                    self.log_inputs(batch)
                self.train_step(batch)
                self.step += 1
                bar.update(1)
                self.after_step(bar, window)
                if self.step >= self.total_steps or self.stopping.reason:
                    return
                self.stop_if_preempted(preemption, bar)

    def train(self, preemption: Preemption) -> dict:
        print0(
            f"{self.recipe.NAME}: {self.total_steps} steps on {self.dist.device} x {self.dist.world_size} "
            f"process(es), {torch.get_num_threads()} CPU threads each",
            dist=self.dist,
        )
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not self.dist.is_main,
            unit="step",
            dynamic_ncols=True,
            desc=self.recipe.NAME,
        )
        start, start_step, window = time.perf_counter(), self.step, Window(self.step)
        self.started = start
        try:  # the bar closed before any error line is printed (the error must be the last line)
            if self.step < self.total_steps:
                self.stop_if_preempted(preemption, bar)  # signalled while the data was read: a step-0 checkpoint
            self._loop(preemption, bar, window)
        except RuntimeError as e:  # a data worker that died is one line naming its file, not a traceback
            died = worker_death(e)
            if died is None:
                raise
            raise died from None
        finally:
            bar.close()
        signalled = preemption.requested()  # during the last step: the run is complete, what follows is skipped
        if self.stopping.reason:
            print0(f"stopped at step {self.step}: {self.stopping.reason}", dist=self.dist)
        if not self.last_eval:  # resumed at the very end: nothing was evaluated in this process
            self.evaluate()
        wall = time.perf_counter() - start
        training = max(wall - self.eval_seconds, 1e-9)  # throughput counts training only, never evaluation
        return {
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            **self.last_eval,
            "best": self.best,
            self.rate_key: (self.step - start_step) * self.cfg.batch_size / training,
            "wall_s": wall,
            "eval_s": self.eval_seconds,
            "world_size": self.dist.world_size,
            **({"stopped": self.stopping.reason} if self.stopping.reason else {}),
            **({"signal": signalled} if signalled else {}),
            "replica_max_abs_diff": self.replica_spread(),
        }


class Window:
    """The current timing window of the throughput shown in the log: restarted at each log line and evaluation."""

    def __init__(self, step: int):
        self.restart(step)

    def restart(self, step: int) -> None:
        self.started, self.step = time.perf_counter(), step

    def rate(self, step: int, batch_size: int) -> float:
        """Items per second since the window began."""
        return (step - self.step) * batch_size / max(time.perf_counter() - self.started, 1e-9)


class Stopping:
    """When to stop before the planned last step: a target reached (--stop-at) or no better validation loss for
    --patience evaluations. It reads only metrics already reduced across processes, so every rank stops at the
    same step. Its state is in the checkpoint: a resumed run counts on, and a run that stopped stays stopped."""

    def __init__(self, cfg: TrainConfig, main: Metric):
        self.cfg, self.main, self.reason = cfg, main, ""
        self.best, self.waited = None, 0

    def state(self) -> dict:
        return {"reason": self.reason, "best": self.best, "waited": self.waited}

    def load(self, state: dict | None) -> None:
        if state:
            self.reason, self.best, self.waited = state["reason"], state["best"], state["waited"]

    def update(self, metrics: dict[str, float]) -> None:
        main = self.main
        value = metrics.get(main.name)
        if self.cfg.stop_at and main.reached(value, self.cfg.stop_at):
            self.reason = f"{main.name}={value:.4g} reached --stop-at {self.cfg.stop_at:g}"
        if not self.cfg.patience:
            return
        watched, lower = ("loss", True) if "loss" in metrics else (main.name, not main.maximize)
        v = metrics[watched] if lower else -metrics[watched]
        if self.best is None or v < self.best:
            self.best, self.waited = v, 0
            return
        self.waited += 1
        if self.waited >= self.cfg.patience:
            self.reason = self.reason or f"no better validation {watched} in {self.waited} evaluations (--patience)"


# Fields a resumed run may change: none of them alters a step already taken. Anything else (the learning rate, the
# batch, the model) would make the continuation a different run: start one from these weights with --init-from.
RESUMABLE = (
    "epochs",
    "max_steps",
    "eval_every_epochs",
    "eval_every_steps",
    "eval_limit",
    "ckpt_every_steps",
    "preempt_signals",
    "requeue",
    "system_metrics",
    "mlflow",
    "mlflow_experiment",
    "mlflow_log_model",
    "keep_checkpoints",
    "log_every",
    "tb_histograms",
    "data",
    "stop_at",
    "patience",
)


class Progress:
    """A loader seen through a progress bar on rank 0; the recipe reads the loader's own attributes through it."""

    def __init__(self, loader, desc: str, dist: Dist):
        self.loader, self.desc, self.dist = loader, desc, dist

    def __getattr__(self, name):
        return getattr(self.__dict__["loader"], name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        quiet = not self.dist.is_main or len(self.loader) < 2
        yield from tqdm(
            self.loader,
            total=len(self.loader),
            desc=self.desc,
            unit="batch",
            leave=False,
            disable=quiet,
            dynamic_ncols=True,
        )


def fit(
    recipe,
    cfg: TrainConfig,
    dist: Dist | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    allow_world_size_change: bool = False,
) -> dict:
    """Train `recipe` with `cfg`; write the run directory `out`; return the final metrics.

    With resume=True, `out` is an existing run directory and training continues from its newest checkpoint that
    verifies, ending with the same weights as a run that was never interrupted (when it continues on as many
    processes as it was trained with; allow_world_size_change=True continues on another count, not exactly).
    """
    dist = dist or setup()
    cfg.validate()
    # config.yaml keeps the settings as given (`fast: true`), chosen again for the device on resume; env.json what ran
    fast, chosen = perf.apply_fast(cfg, dist.device)
    out = run_dir_of(recipe.NAME, out, dist)
    # from here on a signal is a request to stop at the next step boundary (the first one included: a run signalled
    # while it reads its data stops with a step-0 checkpoint that --resume continues), never a kill mid-write
    preemption = Preemption(cfg.preempt_signals, dist)
    run, folder, trainer = None, None, None
    made = not resume and not Path(out).exists()  # a refused start removes the folder it made (the board lists none)
    try:
        run, folder = open_run(recipe.NAME, cfg, dist, out, resume, allow_world_size_change, speed=fast)
        cfg = fast
        if chosen:
            print0(chosen, dist=dist)
        trainer = Trainer(recipe, cfg, dist, run)
        if run and recipes.has(recipe, "artifacts"):  # files a run needs besides weights (chemvae's vocabulary)
            recipe.save_artifacts(cfg, trainer.data, run.path)
        if folder:
            trainer.load(folder)
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


def fit_stages(recipe, cfg: TrainConfig, dist: Dist | None = None, out: str | Path | None = None) -> dict:
    """fit, once per stage of a recipe that trains in stages (segdec: seg, then dec): each stage is its own run
    directory out/<stage>, started from the best weights of the one before. Returns the last stage's metrics."""
    plan = recipe.stages(cfg) if recipes.has(recipe, "stages") else [("", cfg)]
    if len(plan) == 1:
        return fit(recipe, plan[0][1], dist, out)
    dist = dist or setup()
    base = run_dir_of(recipe.NAME, out, dist)
    previous, metrics = None, {}
    for name, stage_cfg in plan:
        if previous:
            stage_cfg = dataclasses.replace(stage_cfg, init_from=previous)
        print0(f"stage {name}: {base / name}", dist=dist)
        metrics = fit(recipe, stage_cfg, dist, base / name)
        previous = str(base / name)
    return metrics


def resume_config(run_dir: str | Path, overrides: dict | None = None):
    """(recipe, config) of a run directory with `overrides` applied; an override of a field that would change the
    steps already taken is refused in one line naming it."""
    record = RunRecord.load(run_dir)
    recipe, saved = record.build_config()
    cfg = merge(saved, overrides or {}, "resume overrides")
    for f in dataclasses.fields(cfg):
        old, new = getattr(saved, f.name), getattr(cfg, f.name)
        if old != new and f.name not in RESUMABLE:
            raise ConfigError(
                f"--resume cannot change {f.name} ({old!r} -> {new!r}): it would change the steps "
                f"already taken; only {', '.join(RESUMABLE)} may change. Start a new run from these "
                f"weights with --init-from {run_dir} instead"
            )
    cfg.validate()
    return recipe, cfg


def resume(
    run_dir: str | Path, dist: Dist | None = None, overrides: dict | None = None, allow_world_size_change: bool = False
) -> dict:
    """Continue the run in run_dir from its newest checkpoint (config read from its config.yaml, `overrides`
    applied to the fields listed in RESUMABLE; the new values are written back to config.yaml)."""
    recipe, cfg = resume_config(run_dir, overrides)
    record = RunRecord.load(run_dir)
    saved = record.build_config()[1]
    if record.status == "done" and (cfg.max_steps, cfg.epochs) == (saved.max_steps, saved.epochs):
        # nothing to train: no file is rewritten (final_metrics.json, metrics.jsonl keep what the run wrote)
        print0(
            f"{run_dir} finished at step {record.final.get('step')}; nothing to do (raise --max-steps or "
            f"--epochs to train it on)",
            dist=dist,
        )
        return {**record.final, "run_dir": str(run_dir), "unchanged": True}
    return fit(recipe, cfg, dist, out=run_dir, resume=True, allow_world_size_change=allow_world_size_change)
