"""What several commands share: the one-line parser, argument types, --gpus, devices and executors, --set, the
checkpoint choice, --no-report and the report written at the end of a command."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from towerlab import config
from towerlab.errors import ConfigError, TowerlabError


class Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line instead of a page of usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


# -- argument types: a bad value is one line naming it ---------------------------------------------------------------
def count(minimum: int):
    """An argparse type: an integer >= minimum, refused in one line otherwise."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{n} is too small; give {minimum} or more")
        return n

    return parse


def at_least(minimum: float, strict: bool = False):
    """An argparse type: a finite number >= minimum (> minimum when strict)."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(x) or x < minimum or (strict and x == minimum):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if strict else '>='} {minimum:g}")
        return x

    return parse


POSITIVE = count(1)


def share(text: str) -> float:
    """An argparse type: a fraction in [0, 1]."""
    x = at_least(0.0)(text)
    if x > 1:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return x


# -- GPUs, devices, executors ------------------------------------------------------------------------------------------
def parse_gpus(value: str) -> list[int]:
    """--gpus, the same in every command: a count N (the first N GPUs; 0: none, the CPU) or indices I,J,..."""
    text = value.strip().lower()
    try:
        if text == "none":
            return []
        gpus = list(range(int(text))) if "," not in text else [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        gpus = None
    if gpus is None or text.startswith("-") or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise TowerlabError(f"--gpus {value}: write a count (0 for the CPU, 4) or distinct GPU indices (0,1,3)")
    return gpus


def check_visible(value: str, gpus: list[int], pinned: bool = False) -> None:
    """GPUs asked for must be there: trials 'on 0' and 'on 1' that quietly train on the CPU are a wrong answer.
    pinned: CUDA_VISIBLE_DEVICES already holds exactly these GPUs (train), so torch renumbers them from 0."""
    if not gpus:
        return
    import torch

    seen = torch.cuda.device_count()
    if (len(gpus) if pinned else max(gpus) + 1) > seen:
        raise TowerlabError(
            f"--gpus {value} asks for GPU {', '.join(map(str, gpus))} but torch sees {seen} GPU(s) "
            f"here; pass --gpus 0 to use the CPU"
        )


def add_devices(p) -> None:
    """Where the trials of jobs, ensemble and search run."""
    p.add_argument(
        "--gpus",
        metavar="N|I,J,...",
        help="GPUs to run trials on: a count (the first N; 0 = none, CPU "
        "trials) or indices (0,2,3); with --executor ray, any count but 0 "
        "uses the cluster's GPUs",
    )
    p.add_argument("--per-gpu", type=POSITIVE, default=1, help="runs at once on each GPU")
    p.add_argument("--workers", type=POSITIVE, default=1, help="without --gpus: CPU processes at once")
    p.add_argument(
        "--trial-procs",
        type=POSITIVE,
        default=1,
        help="processes each trial trains on (DDP or --set strategy=...): that many GPUs of the list per trial, or "
        "that many CPU processes over gloo",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: processes on this machine; ray: Ray tasks on a cluster (trial folders on shared storage)",
    )
    p.add_argument(
        "--address",
        default="auto",
        help="with --executor ray: the cluster (auto = the one `ray start` runs here, HOST:PORT, or local)",
    )
    p.add_argument(
        "--cpus-per-trial", type=POSITIVE, default=1, help="with --executor ray: CPU cores each trial asks for"
    )


def executor(args):
    """The executor add_devices' flags describe."""
    from towerlab.executor import LocalExecutor, RayExecutor

    gpus = parse_gpus(args.gpus) if args.gpus else None
    if args.executor == "ray":
        if args.trial_procs > 1:
            raise ConfigError("--trial-procs runs a trial's processes on one machine: use the local executor")
        return RayExecutor(args.address, gpus=gpus != [], per_gpu=args.per_gpu, cpus_per_trial=args.cpus_per_trial)
    if gpus:
        check_visible(args.gpus, gpus)
    return LocalExecutor(gpus=gpus or None, per_gpu=args.per_gpu, workers=args.workers, procs=args.trial_procs)


# -- config overrides, checkpoints, reports ----------------------------------------------------------------------------
def add_set(p, what: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=f"override for {what}")


def overrides(items: list[str]) -> dict:
    """--set FIELD=VALUE, repeated -> {field: value}; values read as YAML scalars (3, 0.1, true, text)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TowerlabError(f"--set {item!r}: write FIELD=VALUE, e.g. --set epochs=20")
        out[key] = config.safe_yaml(value, f"--set {key}")
    return out


def add_checkpoint(p, default: str) -> None:
    p.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default=default,
        help=f"which checkpoint (default: {default}; best = the best validation score)",
    )


def add_no_report(p, what: str = "") -> None:
    p.add_argument(
        "--no-report", action="store_true", help=f"do not write report.html{what} at the end (also: TOWERLAB_REPORT=0)"
    )


def write_report(folder) -> None:
    """report.html at the end of a command, unless TOWERLAB_REPORT=0. The run is done and kept whatever happens:
    a report that cannot be written is one warning line, never a failed command."""
    if os.environ.get("TOWERLAB_REPORT", "1") == "0":
        return
    from towerlab.progress import say
    from towerlab.report import write

    say(f"writing {Path(folder) / 'report.html'} (TOWERLAB_REPORT=0 or --no-report skips it)")
    try:
        print(f"report:        {write(folder)}")
    except Exception as e:  # noqa: BLE001 -- the training result stands; say why the page is missing
        print(
            f"towerlab: warning: no report.html for {folder} ({type(e).__name__}: {e}); "
            f"`towerlab report {folder}` retries",
            file=sys.stderr,
        )
