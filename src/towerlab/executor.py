"""Run many trainings side by side: each its own process, pinned to one device before torch starts.

A trial is `python -m towerlab.trial OUT/trial.json` (towerlab.trial) in a fresh process (so CUDA_VISIBLE_DEVICES
pins it before CUDA initialises, and a crash or an out-of-memory error ends that trial only). A trial whose run
directory is done is not run again; one with checkpoints is resumed by the trial itself. A trial ends when the
process that started it dies (Linux's parent-death signal), so a killed search leaves no orphans behind; a folder
that a live process still trains (its lock) is waited for, never trained twice.

LocalExecutor: as many at once as there are slots on this machine, K per listed GPU or N CPU workers.
RayExecutor: each trial a Ray task asking for 1/K of a GPU (or some CPUs) of an existing Ray cluster; the
trial folders must be on a file system every node sees (the usual shared home or NFS of a cluster).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from towerlab.errors import ConfigError
from towerlab.lifetime import die_with_parent
from towerlab.runs import Result, Trial, holder
from towerlab.runs.best import Best
from towerlab.runs.run import METRICS

__all__ = ["Executor", "LocalExecutor", "Result", "Trial"]  # Trial and Result: the records' (runs/trial.py)


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    errors = [ln for ln in text if "error" in ln.lower()]
    return " | ".join((errors or text)[-lines:])[:500]


# -P: the child's import path starts with the installed packages, not the folder it was started from, where a
# yaml.py or torch.py of the user's would be imported in place of the real one
SAFE_PATH = ("-P",)


def command(trial: Trial, gpu: bool, python: str = sys.executable, procs: int = 1) -> list[str]:
    """The trial's command line (it continues its own checkpoints, if any); writes its trial.json. procs > 1: the
    trial trains on that many processes (the slot's GPUs, or CPU processes over gloo), launched by the trial."""
    return [python, *SAFE_PATH, "-m", "towerlab.trial", str(trial.write_spec(gpu, procs))]


def _die_with_parent(parent: int):
    """preexec_fn: the child gets SIGTERM when its parent dies, however it dies (a SIGKILLed search included)."""
    return lambda: die_with_parent(parent)


def spawn(cmd: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent(os.getpid())
        )


def wait_any(procs: list[subprocess.Popen], timeout: float) -> None:
    """Sleeps until one of the processes ends or `timeout` passes: a free slot takes its next trial the moment the
    last one exits, not at the next poll (Linux's pidfds; elsewhere a plain sleep)."""
    if not procs or not hasattr(os, "pidfd_open"):
        time.sleep(timeout)
        return
    fds = []
    try:
        for proc in procs:
            fds.append(os.pidfd_open(proc.pid))
        select.select(fds, [], [], timeout)
    except OSError:  # one ended and was reaped between two looks (or pidfds refused): the caller looks again now
        pass
    finally:
        for fd in fds:
            os.close(fd)


class TrialProgress:
    """A bar over the trials and a line as each starts and ends (name, device, main metric, time)."""

    def __init__(self, total: int, done: int):
        self.bar = tqdm(total=total, initial=done, unit="trial", desc="trials", dynamic_ncols=True)

    def started(self, trial: Trial, device: str) -> None:
        tqdm.write(f"{time.strftime('%H:%M:%S')} start  {trial.name} on {device}")

    def ended(self, r: Result) -> None:
        best = Best.of(r.metrics)
        score = f"{best.metric}={best.value:.4g}" if best else r.error[:120]
        tqdm.write(f"{time.strftime('%H:%M:%S')} {r.status:6s} {r.name} on {r.device} in {r.seconds:.1f}s: {score}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def trial_env(cuda_visible: str, threads: int) -> dict[str, str]:
    """The trial's environment: its devices, and its share of the CPU cores (torch otherwise takes every core in
    every process, and N processes on N slots oversubscribe the machine). A thread count set by the user wins."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": cuda_visible, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", str(max(1, threads)))
    return env


def split_finished(trials: list[Trial]) -> tuple[dict[str, Result], list[Trial]]:
    """Trials finished by an earlier run (as results; a pruned one is never resumed) and the ones still to run."""
    done, queue = {}, []
    for t in trials:
        pruned = t.pruned()
        if pruned is not None:
            done[t.name] = _pruned_result(t, pruned, "-", 0.0)
            continue
        record = t.record()
        if record is not None and record.status == "done" and record.final:
            done[t.name] = Result(t.name, "done", 0.0, record.final, device="-")
        else:
            queue.append(t)
    return done, queue


def collect(trial: Trial, returncode: int, device: str, seconds: float) -> Result:
    """The trial's TrialResult; a trial that died before writing one (a signal, out of memory) failed."""
    result = trial.result()
    if returncode == 0 and result is not None and result.status == "ok":
        return Result(trial.name, "ok", seconds, result.metrics, device=device)
    why = result.error if result is not None and result.error else _tail(trial.log)
    return Result(trial.name, "failed", seconds, {}, f"exit {returncode}: {why}", device)


def _pruned_result(trial: Trial, record: dict, device: str, seconds: float) -> Result:
    best = {"metric": record["metric"], "value": record["value"], "evaluation": record["evaluation"]}
    return Result(trial.name, "pruned", seconds, {"best": best}, f"pruned at evaluation {record['evaluation']}", device)


def judge(trial: Trial, pruner, device: str, seconds: float) -> Result | None:
    """The pruned Result of a trial whose curve so far the pruner stops (pruned.json written), else None."""
    values = trial.curve(pruner.metric)
    k = pruner.decide(values)
    if k is None:
        return None
    return _pruned_result(trial, trial.write_pruned(pruner.metric, k, values[k - 1]), device, seconds)


def _grew(path: Path, sizes: dict[Path, int]) -> bool:
    size = path.stat().st_size if path.is_file() else 0
    grew, sizes[path] = size != sizes.get(path, 0), size
    return grew


class Executor(Protocol):
    """Where trials run: every trial once (finished ones are not rerun); results in the order of `trials`. With a
    pruner (search/prune.py) a trial is stopped at the first evaluation the pruner rejects."""

    def run(
        self, trials: list[Trial], on_result: Callable[[Result], None] | None = None, pruner=None
    ) -> list[Result]: ...


class LocalExecutor:
    """procs > 1: each trial trains on `procs` processes, a slot being that many GPUs of the list (0,1 | 2,3 | ...)
    or, on the CPU, that many gloo processes (each with its share of the cores)."""

    def __init__(
        self,
        gpus: list[int] | None = None,
        per_gpu: int = 1,
        workers: int = 1,
        threads: int | None = None,
        procs: int = 1,
    ):
        if gpus and len(gpus) % procs:
            raise ConfigError(f"--trial-procs {procs} splits the {len(gpus)} GPUs listed unevenly; list a multiple")
        groups = [",".join(map(str, gpus[i : i + procs])) for i in range(0, len(gpus), procs)] if gpus else []
        self.slots: list[str] = [g for g in groups for _ in range(per_gpu)] if gpus else ["cpu"] * workers
        self.procs = procs
        # CPU threads per process of a trial
        self.threads = threads or max(1, (os.cpu_count() or 1) // (len(self.slots) * (1 if gpus else procs)))

    def each_slot(self) -> list[LocalExecutor]:
        """An executor per slot, each running one trial at a time there (the workers of a shared study)."""
        return [LocalExecutor.on(slot, self.threads, self.procs) for slot in self.slots]

    @classmethod
    def on(cls, slot: str, threads: int, procs: int = 1) -> LocalExecutor:
        one = cls(threads=threads, procs=procs)
        one.slots = [slot]
        return one

    def _start(self, trial: Trial, device: str) -> subprocess.Popen:
        cmd = command(trial, gpu=device != "cpu", procs=self.procs)
        return spawn(cmd, trial_env("" if device == "cpu" else device, self.threads), trial.log)

    def run(self, trials: list[Trial], on_result=None, pruner=None) -> list[Result]:
        """Run every trial; results in the order of `trials`. Interrupted (Ctrl-C, SIGTERM), it stops its trials
        and records nothing: their checkpoints are where a re-run continues."""
        results, queue = split_finished(trials)
        if pruner:  # finished while no search watched it (killed in between): judged as it would have been
            for t in trials:
                if t.name in results and results[t.name].status == "done":
                    results[t.name] = judge(t, pruner, "-", 0.0) or results[t.name]
        running: dict[int, tuple[subprocess.Popen, Trial, float]] = {}
        sizes: dict[Path, int] = {}  # metrics.jsonl sizes at the last look: a running trial is judged when it grows
        progress = TrialProgress(len(trials), len(results))
        try:
            while queue or running:
                self._fill(queue, running, progress)
                for slot, (proc, t, t0) in list(running.items()):
                    alive = proc.poll() is None
                    # a finished trial is judged on its whole curve too: whether the pruner caught it while running
                    # must not decide its result (that would depend on timing, and a resumed search would differ)
                    grown = pruner is not None and (not alive or _grew(t.out / METRICS, sizes))
                    r = judge(t, pruner, self.slots[slot], time.perf_counter() - t0) if grown else None
                    if r is None and alive:
                        continue
                    if r is not None and alive:
                        proc.terminate()
                        proc.wait()
                    del running[slot]
                    results[t.name] = r = r or collect(t, proc.returncode, self.slots[slot], time.perf_counter() - t0)
                    progress.ended(r)
                    if on_result:
                        on_result(r)
                if queue or running:  # (the last trial collected: return at once, no poll to sleep out)
                    wait_any([proc for proc, _, _ in running.values()], 0.2)
        finally:
            progress.close()
            for proc, _, _ in running.values():
                proc.terminate()
            for proc, _, _ in running.values():
                proc.wait()
        return [results[t.name] for t in trials]

    def _fill(self, queue: list[Trial], running: dict, progress: TrialProgress) -> None:
        """Start queued trials on free slots; a trial whose folder a live process still trains waits its turn."""
        for slot in range(len(self.slots)):
            if slot in running:
                continue
            t = next((t for t in queue if not holder(t.out)), None)
            if t is None:
                return
            queue.remove(t)
            progress.started(t, self.slots[slot])
            running[slot] = (self._start(t, self.slots[slot]), t, time.perf_counter())


def _reachable(address: str) -> None:
    """Fail in one line on an address nobody listens at (ray.init would retry for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # auto / local: Ray answers those at once
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start one with "
            "`ray start --head`, or pass --address auto / local"
        ) from None


def _root_cause(e: BaseException) -> str:
    """The telling line of a Ray connection failure: Ray wraps the reason (an authentication token missing, a
    refused connection) in connection errors whose text embeds the inner traceback."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
    telling = [ln for ln in lines if "Error:" in ln and not ln.startswith("Traceback")]
    return (telling[-1] if telling else lines[0])[:240]


def _ray_trial(trial: Trial, gpu: bool, threads: int) -> tuple[int, str, float]:
    """Runs on a Ray worker: the trial as a child process, on the GPU Ray assigned to this task."""
    import ray

    visible = ",".join(str(g) for g in ray.get_gpu_ids()) if gpu else ""
    cmd = command(trial, gpu, python=sys.executable)  # this node's Python
    t0 = time.perf_counter()
    code = spawn(cmd, trial_env(visible, threads), trial.log).wait()
    return code, f"{socket.gethostname()}:{visible or 'cpu'}", time.perf_counter() - t0


class RayExecutor:
    """Trials as Ray tasks: `--executor ray --address auto` (a running cluster, `ray start --head` on this machine)
    or HOST:PORT; `--address local` starts a private single-machine instance. --per-gpu K asks 1/K GPU per trial;
    --gpus none (or 0 GPUs) runs CPU trials that ask for --cpus-per-trial cores each."""

    def __init__(self, address: str = "auto", gpus: bool = True, per_gpu: int = 1, cpus_per_trial: int = 1):
        try:
            import ray
        except ImportError as e:
            raise ConfigError("--executor ray needs Ray: pip install 'towerlab[ray]'") from e
        self.ray = ray
        if not ray.is_initialized():
            _reachable(address)
            try:
                ray.init(
                    address=address,
                    log_to_driver=False,  # "local": a new private instance
                    include_dashboard=False,
                    **({"num_cpus": os.cpu_count()} if address == "local" else {}),
                )
            except (ConnectionError, RuntimeError) as e:
                raise ConfigError(
                    f"cannot reach the Ray cluster at {address!r} ({_root_cause(e)}); start one "
                    "with `ray start --head` and pass --address auto, or pass --address local"
                ) from None
        self.gpu = gpus and ray.cluster_resources().get("GPU", 0) > 0
        self.cpus = cpus_per_trial
        self.task = ray.remote(_ray_trial).options(
            num_gpus=1 / per_gpu if self.gpu else 0, num_cpus=cpus_per_trial, max_retries=0
        )

    def run(self, trials: list[Trial], on_result=None, pruner=None) -> list[Result]:
        """Every trial as a Ray task. With a pruner, each running trial's metrics.jsonl (on the shared file system)
        is judged as it grows, as the local executor does, and a trial the pruner stops is cancelled (its task's
        process killed; the trial's own process checkpoints and ends with it, and is never resumed)."""
        results, queue = split_finished(trials)
        if pruner:  # finished while no search watched it: judged as it would have been
            for t in trials:
                if t.name in results and results[t.name].status == "done":
                    results[t.name] = judge(t, pruner, "-", 0.0) or results[t.name]
        progress = TrialProgress(len(trials), len(results))
        pending = {self.task.remote(t, self.gpu, self.cpus): t for t in queue}
        started, sizes = {t.name: time.perf_counter() for t in queue}, {}
        for t in queue:
            progress.started(t, "ray")
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=0.5 if pruner else None)
            if not ready:  # nothing ended: judge the trials that logged an evaluation since the last look
                for ref, t in list(pending.items()):
                    if not _grew(t.out / METRICS, sizes):
                        continue
                    r = judge(t, pruner, "ray", time.perf_counter() - started[t.name])  # writes pruned.json
                    if r is not None:
                        self.ray.cancel(ref, force=True)
                        del pending[ref]
                        self._ended(results, r, progress, on_result)
                continue
            t = pending.pop(ready[0])
            r = judge(t, pruner, "ray", time.perf_counter() - started[t.name]) if pruner else None
            self._ended(results, r or self._collect(ready[0], t), progress, on_result)
        progress.close()
        return [results[t.name] for t in trials]

    def _collect(self, ref, t: Trial) -> Result:
        try:
            code, device, seconds = self.ray.get(ref)
        except self.ray.exceptions.RayError as e:  # the worker died (node lost, killed): the trial failed
            code, device, seconds = -1, "ray", 0.0
            t.out.mkdir(parents=True, exist_ok=True)
            with open(t.log, "a") as log:
                log.write(f"ray error: {_root_cause(e)}\n")  # a Ray error's text may start blank
        return collect(t, code, device, seconds)

    @staticmethod
    def _ended(results: dict, r: Result, progress: TrialProgress, on_result) -> None:
        results[r.name] = r
        progress.ended(r)
        if on_result:
            on_result(r)
