"""What the training loop keeps beside the model: its clocks, when to stop early, and a loader with a bar."""

from __future__ import annotations

import time
from contextlib import contextmanager

from tqdm import tqdm

from towerlab.config import TrainConfig
from towerlab.dist import Dist
from towerlab.runs.best import Metric


class Window:
    """The current timing window of the throughput shown in the log: restarted at each log line and evaluation."""

    def __init__(self, step: int):
        self.restart(step)

    def restart(self, step: int) -> None:
        self.started, self.step = time.perf_counter(), step

    def rate(self, step: int, batch_size: int) -> float:
        """Items per second since the window began."""
        return (step - self.step) * batch_size / max(time.perf_counter() - self.started, 1e-9)


class Clock:
    """This process's training time: the wall clock since the loop began, less evaluation and the checkpoints that
    follow evaluations (time to accuracy counts them; throughput never does)."""

    def __init__(self):
        self.started, self.eval_seconds, self.ckpt_seconds = time.perf_counter(), 0.0, 0.0

    def start(self) -> None:
        self.started = time.perf_counter()

    def wall(self) -> float:
        return time.perf_counter() - self.started

    def training(self) -> float:
        return self.wall() - self.eval_seconds - self.ckpt_seconds

    @contextmanager
    def timing(self, counter: str):
        """Add the time the block takes to `counter` (eval_seconds or ckpt_seconds)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, counter, getattr(self, counter) + time.perf_counter() - t0)


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
