"""Kill points: how many SIGKILLed multi-process runs continue to exactly the weights of an uninterrupted one.

    TOWERLAB_DATA=../shared/data python bench/kill_resume.py --points 20 --procs 2
    python bench/kill_resume.py --points 10 --procs 3 --recipe digits --steps 300

One uninterrupted run of N gloo processes on the CPU; then, for each kill point, the same run with a random rank
SIGKILLed after a random checkpoint, continued with `towerlab train --resume RUN` (no --procs: the run's own world
size), every third time after damaging its newest checkpoint (the resume falls back to the one before). A point
is exact when the model and moving-average weights equal the uninterrupted run's bit for bit. The reference is
the run itself, so the ratio exact/total is the figure. Writes bench/out/kill_resume.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(REPO_TESTS))  # the tests' helper that finds a rank's process
from towerlab import checkpoint  # noqa: E402

from helpers import rank_pid  # noqa: E402


def train_cmd(recipe: str, out: Path, steps: int, procs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "towerlab",
        "train",
        recipe,
        "--gpus",
        "0",
        "--procs",
        str(procs),
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--ckpt-every-steps",
        "3",
        "--eval-every-steps",
        str(steps // 2),
        "--ema-decay",
        "0.99",
        "--schedule",
        "cosine",
        "--deterministic",
        "--log-every",
        "7",
    ]


def last_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "last.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def same(a: Path, b: Path) -> bool:
    for name in ("model", "ema"):
        x = load_file(checkpoint.find(a, quiet=True) / f"{name}.safetensors")
        y = load_file(checkpoint.find(b, quiet=True) / f"{name}.safetensors")
        if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
            return False
    return True


def kill_point(args, tmp: Path, i: int, rng: random.Random, straight: Path) -> dict:
    run, at, rank, damage = tmp / f"k{i}", rng.randint(6, args.steps - 30), rng.randrange(args.procs), i % 3 == 2
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        train_cmd(args.recipe, run, args.steps, args.procs),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while last_step(run) < at and proc.poll() is None:
        time.sleep(0.01)
    pid = rank_pid(run, rank)
    if proc.poll() is not None or pid is None:
        return {"point": i, "kill_after": at, "rank": rank, "exact": None, "note": "finished before the kill"}
    os.kill(pid, signal.SIGKILL)
    err = proc.communicate()[1]
    killed_at = last_step(run)
    if damage:  # the newest checkpoint damaged as well: resume must fall back to the one before
        state = checkpoint.find(run, quiet=True) / "state.pt"
        state.write_bytes(state.read_bytes()[: len(state.read_bytes()) // 2])
    resumed = subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"], capture_output=True, text=True
    )
    ok = resumed.returncode == 0 and same(straight, run)
    return {
        "point": i,
        "kill_after": at,
        "rank": rank,
        "checkpoint": killed_at,
        "damaged_newest": damage,
        "one_line": f"process rank {rank} was killed by SIGKILL" in err,
        "exact": ok,
        "seconds": round(time.perf_counter() - t0, 1),
        "note": "" if resumed.returncode == 0 else resumed.stderr.strip().splitlines()[-1][:160],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=20)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--recipe", default="digits")
    p.add_argument("--steps", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/out/kill_resume.json")
    args = p.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        straight = Path(tmp) / "straight"
        subprocess.run(train_cmd(args.recipe, straight, args.steps, args.procs), check=True, capture_output=True)
        rows = []
        print(
            f"{'point':>5} {'kill after':>10} {'rank':>4} {'ckpt':>5} {'damaged':>7} {'one line':>8} "
            f"{'exact':>5} {'s':>6}"
        )
        for i in range(args.points):
            r = kill_point(args, Path(tmp), i, rng, straight)
            rows.append(r)
            print(
                f"{r['point']:>5} {r['kill_after']:>10} {r['rank']:>4} {r.get('checkpoint', '-'):>5} "
                f"{str(r.get('damaged_newest', '-')):>7} {str(r.get('one_line', '-')):>8} {str(r['exact']):>5} "
                f"{r.get('seconds', 0):>6} {r['note']}",
                flush=True,
            )
    tried = [r for r in rows if r["exact"] is not None]
    exact = sum(r["exact"] for r in tried)
    print(f"exact: {exact} / {len(tried)}  ({args.procs} processes, {args.recipe}, {args.steps} steps)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "exact": exact,
                "total": len(tried),
                "procs": args.procs,
                "recipe": args.recipe,
                "steps": args.steps,
                "torch": torch.__version__,
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "points": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
