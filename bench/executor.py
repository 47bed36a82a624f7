"""Parallel efficiency of the trial executor: N identical short trainings on N slots versus one slot.

    python bench/executor.py --workers 2                  # CPU processes (each torch process uses its own threads)
    python bench/executor.py --gpus 0,1,2,3 --recipe cifar10 --steps 300
    python bench/executor.py --gpus 0 --per-gpu 4 --recipe mnist    # 4 trials sharing one GPU

efficiency = t(N trials on 1 slot) / (N x t(the same N trials on N slots)):
1.0 means N slots finish the N trials N times faster than one slot. Two baselines: the one slot's trials with the
same CPU threads as each of the N (the executor's own overhead: do trials slow each other down?), and with all
the cores (what N slots gain over one trial at a time using the whole machine; below 1 where torch's threads
scale well).
Writes bench/out/executor.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from towerlab.executor import LocalExecutor, Trial


def wall(executor: LocalExecutor, recipe: str, n: int, overrides: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        trials = [Trial(f"t{i}", recipe, {**overrides, "seed": i}, Path(tmp) / f"t{i}") for i in range(n)]
        t0 = time.perf_counter()
        results = executor.run(trials)
        elapsed = time.perf_counter() - t0
    failed = [r for r in results if r.status != "ok"]
    if failed:
        sys.exit(f"trial {failed[0].name} failed: {failed[0].error}")
    return elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="digits")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--workers", type=int, default=2, help="CPU slots (without --gpus)")
    p.add_argument("--gpus", help="comma-separated GPU indices: --per-gpu slots each")
    p.add_argument("--per-gpu", type=int, default=1, help="trials at once on each GPU")
    p.add_argument("--out", default="bench/out/executor.json")
    args = p.parse_args()
    gpus = [int(g) for g in args.gpus.split(",")] if args.gpus else None
    n = len(gpus) * args.per_gpu if gpus else args.workers
    overrides = {"max_steps": args.steps, "eval_every_epochs": 0.0, "log_every": max(1, args.steps // 4)}
    many = LocalExecutor(gpus=gpus, per_gpu=args.per_gpu, workers=n)
    same = LocalExecutor(gpus=gpus[:1] if gpus else None, workers=1, threads=many.threads)
    whole = LocalExecutor(gpus=gpus[:1] if gpus else None, workers=1)
    t_many = wall(many, args.recipe, n, overrides)
    t_one = wall(same, args.recipe, n, overrides)
    t_whole = wall(whole, args.recipe, n, overrides)
    eff, eff_whole = t_one / (n * t_many), t_whole / (n * t_many)
    device = torch.cuda.get_device_name() if gpus else f"{platform.machine()} CPU"
    report = {
        "command": " ".join(["python", *sys.argv]),
        "device": device,
        "recipe": args.recipe,
        "trials": n,
        "steps": args.steps,
        "threads_per_trial": many.threads,
        "seconds_one_slot": t_one,
        "seconds_one_slot_all_cores": t_whole,
        "seconds_n_slots": t_many,
        "efficiency": eff,
        "efficiency_vs_all_cores": eff_whole,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{device}: {n} x {args.recipe} ({args.steps} steps)")
    print(f"| slots | threads per trial | wall s | {n} slots: speed-up | efficiency |\n|---|---|---|---|---|")
    print(f"| 1 | {many.threads} | {t_one:.1f} | {t_one / t_many:.2f} | {eff:.2f} |")
    print(f"| 1 | all ({whole.threads}) | {t_whole:.1f} | {t_whole / t_many:.2f} | {eff_whole:.2f} |")
    print(f"| {n} | {many.threads} | {t_many:.1f} | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
