"""Run many trainings side by side: each its own process, pinned to one device before torch starts.

A trial is `towerlab train RECIPE --config OUT/trial.yaml --out OUT` in a fresh process (so CUDA_VISIBLE_DEVICES
pins it before CUDA initialises, and a crash or an out-of-memory error ends that trial only). As many run at once
as there are slots: K per listed GPU, or N CPU workers. A trial whose folder already holds final_metrics.json is
not run again; one with checkpoints but no final metrics is resumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from towerlab.config import save_yaml


@dataclass
class Trial:
    name: str
    recipe: str
    overrides: dict
    out: Path


@dataclass
class Result:
    name: str
    status: str  # ok, failed, or done (finished by an earlier run)
    device: str
    seconds: float
    metrics: dict = field(default_factory=dict)
    error: str = ""

    def fitness(self, metric: str) -> float | None:
        """The run's best value of its main metric (None when the trial failed)."""
        best = self.metrics.get("best") or {}
        return best.get("value", self.metrics.get(metric)) if self.status in ("ok", "done") else None


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    errors = [ln for ln in text if "error" in ln.lower()]
    return " | ".join((errors or text)[-lines:])[:500]


class LocalExecutor:
    def __init__(self, gpus: list[int] | None = None, per_gpu: int = 1, workers: int = 1):
        self.slots: list[str] = [str(g) for g in gpus for _ in range(per_gpu)] if gpus else ["cpu"] * workers

    def _command(self, trial: Trial, device: str) -> list[str]:
        base = [sys.executable, "-m", "towerlab", "train"]
        gpus = ["--gpus", "0" if device == "cpu" else "1"]
        if (trial.out / "checkpoints").is_dir():  # interrupted before: continue it
            return [*base, "--resume", str(trial.out), *gpus]
        trial.out.mkdir(parents=True, exist_ok=True)
        save_yaml(trial.overrides, trial.out / "trial.yaml")
        return [*base, trial.recipe, "--config", str(trial.out / "trial.yaml"), "--out", str(trial.out), *gpus]

    def _start(self, trial: Trial, device: str) -> subprocess.Popen:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "" if device == "cpu" else device, "PYTHONUNBUFFERED": "1"}
        cmd = self._command(trial, device)
        log = open(trial.out / "log.txt", "a")
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def run(self, trials: list[Trial], on_result=None) -> list[Result]:
        """Run every trial; results in the order of `trials`."""
        results: dict[str, Result] = {}
        queue = []
        for t in trials:
            final = t.out / "final_metrics.json"
            if final.is_file():
                results[t.name] = Result(t.name, "done", "-", 0.0, json.loads(final.read_text()))
            else:
                queue.append(t)
        running: dict[int, tuple[subprocess.Popen, Trial, float]] = {}
        while queue or running:
            for slot in range(len(self.slots)):
                if slot not in running and queue:
                    t = queue.pop(0)
                    running[slot] = (self._start(t, self.slots[slot]), t, time.perf_counter())
            for slot, (proc, t, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[slot]
                final = t.out / "final_metrics.json"
                ok = proc.returncode == 0 and final.is_file()
                r = Result(t.name, "ok" if ok else "failed", self.slots[slot], time.perf_counter() - t0,
                           json.loads(final.read_text()) if ok else {},
                           "" if ok else f"exit {proc.returncode}: {_tail(t.out / 'log.txt')}")
                results[t.name] = r
                if on_result:
                    on_result(r)
            time.sleep(0.2)
        return [results[t.name] for t in trials]
