"""A search in batches against the same budget on a shared study (`--trials`): how busy the slots stay.

    python bench/search_workers.py --trials 12 --workers 1 2 4

Both searches draw trials at random from one space whose trials differ in length (max_steps from a list), on the
same slots: the batch search (`--population W --generations T/W`) waits for the slowest trial of each batch, the
shared study (`--trials T`) hands a free slot its next trial at once. Slot utilisation = the trials' own seconds
summed / (wall seconds x slots): 1.0 means no slot ever waited. Prints a table, writes bench/out/search_workers.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SPACE = {"units": {"choices": [32, 64]}, "lr": {"logfloat": [1e-3, 0.1]}}
LENGTHS = [30, 300, 1500]  # max_steps choices: uneven trials (--long: 100, 1,000, 5,000)


def run(mode: str, trials: int, workers: int, seed: int, tmp: Path, lengths: list[int]) -> dict:
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump({"max_steps": {"choices": lengths}, **SPACE}))
    out = tmp / mode
    args = ["search", "mlp", "--space", str(space), "--algo", "random", "--workers", str(workers), "--out", str(out)]
    args += ["--seed", str(seed), "--no-report", "--set", "dataset=digits", "--set", "eval_every_epochs=0"]
    if mode == "batches":  # batches as wide as the slots (one slot: a batch of 2, so both searches train 12)
        width = max(2, workers)
        args += ["--population", str(width), "--generations", str(trials // width)]
    else:
        args += ["--trials", str(trials)]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "towerlab", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{mode}: {proc.stderr[-2000:]}")
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    busy = sum(float(r["seconds"]) for r in rows)
    return {"mode": mode, "trials": len(rows), "wall_s": wall, "trial_s": busy, "utilisation": busy / (wall * workers)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="slot counts to compare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--long", action="store_true", help="trials ~3x longer, so a batch's wait weighs more")
    p.add_argument("--out", default="bench/out/search_workers.json")
    args = p.parse_args()
    rows = []
    for workers in args.workers:
        for mode in ("batches", "shared"):
            with tempfile.TemporaryDirectory() as tmp:
                lengths = [100, 1000, 5000] if args.long else LENGTHS
                rows.append({"slots": workers, **run(mode, args.trials, workers, args.seed, Path(tmp), lengths)})
    print("| slots | search | trials | wall s | trials/hour | trial s (sum) | slot utilisation |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rate = 3600 * r["trials"] / r["wall_s"]
        print(f"| {r['slots']} | {r['mode']} | {r['trials']} | {r['wall_s']:.1f} | {rate:.0f} | {r['trial_s']:.1f} | "
              f"{r['utilisation']:.2f} |")  # fmt: skip
    pairs = {w: [r["utilisation"] for r in rows if r["slots"] == w] for w in args.workers}
    ratio = {w: u[1] / u[0] for w, u in pairs.items()}
    print("shared study / batches, utilisation: " + ", ".join(f"{w} slots {x:.2f}x" for w, x in ratio.items()))
    machine = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "utilisation_ratio": ratio, "machine": machine}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
