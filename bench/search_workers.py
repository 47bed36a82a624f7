"""A search in batches against the same budget on a shared study (`--trials`): how busy the slots stay.

    python bench/search_workers.py --trials 8 --workers 2

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

SPACE = {"max_steps": {"choices": [30, 300, 1500]}, "units": {"choices": [32, 64]}, "lr": {"logfloat": [1e-3, 0.1]}}


def run(mode: str, trials: int, workers: int, seed: int, tmp: Path) -> dict:
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp / mode
    args = ["search", "mlp", "--space", str(space), "--algo", "random", "--workers", str(workers), "--out", str(out)]
    args += ["--seed", str(seed), "--no-report", "--set", "dataset=digits", "--set", "eval_every_epochs=0"]
    if mode == "batches":
        args += ["--population", str(workers), "--generations", str(trials // workers)]
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
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/out/search_workers.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(m, args.trials, args.workers, args.seed, Path(tmp)) for m in ("batches", "shared")]
    print(f"| search | trials | wall s | trial s (sum) | slot utilisation |  ({args.workers} slots)")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['trials']} | {r['wall_s']:.1f} | {r['trial_s']:.1f} | {r['utilisation']:.2f} |")
    ratio = rows[1]["utilisation"] / rows[0]["utilisation"]
    print(f"shared study / batches, utilisation: {ratio:.2f}x")
    machine = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "utilisation_ratio": ratio, "machine": machine}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
