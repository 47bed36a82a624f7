"""A search in batches against the same budget on a shared study (`--trials`): how busy the slots stay.

    python bench/search_workers.py --trials 12 --workers 1 2 4 [--before REV] [--long]

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


def run(mode: str, trials: int, workers: int, seed: int, tmp: Path, lengths: list[int], src: Path | None) -> dict:
    """One search; src: the towerlab sources to run (another commit's, --before), else the installed one."""
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
    env = {**os.environ, **({"PYTHONPATH": str(src)} if src else {})}  # the trials inherit it
    proc = subprocess.run([sys.executable, "-m", "towerlab", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{mode}: {proc.stderr[-2000:]}")
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    busy = sum(float(r["seconds"]) for r in rows)
    spans = [_span(out / "trials" / r["trial"]) for r in rows]
    return {
        "mode": mode,
        "trials": len(rows),
        "wall_s": wall,
        "trial_s": busy,
        "utilisation": busy / (wall * workers),
        "steady": steady(spans, workers),
        "gap_s": gaps(spans) if workers == 1 else None,
    }


def _span(folder: Path) -> tuple[float, float]:
    """When a trial started and ended: its trial.json written by the driver as it spawns the trial, its
    result.json written by the trial as it ends."""
    return (folder / "trial.json").stat().st_mtime, (folder / "result.json").stat().st_mtime


def steady(spans: list[tuple[float, float]], slots: int) -> float:
    """Slot utilisation while trials waited for a slot (from the first trial's start to the last one's): the
    executor's own efficiency. The driver's start and the tail (the last trials running while slots stay empty for
    want of work) are outside it; a batch barrier and the driver's time between trials are inside."""
    lo, hi = min(s for s, _ in spans), max(s for s, _ in spans)
    if hi <= lo:
        return 1.0
    busy = sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in spans)
    return busy / (slots * (hi - lo))


def gaps(spans: list[tuple[float, float]]) -> float:
    """One slot: the mean time from a trial's end to the next one's start (the driver's time between trials,
    with the trial process's own exit)."""
    spans = sorted(spans)
    between = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    return sum(between) / max(len(between), 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="slot counts to compare")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--long", action="store_true", help="trials ~3x longer, so a batch's wait weighs more")
    p.add_argument("--out", default="bench/out/search_workers.json")
    p.add_argument("--before", help="also run every search with this commit's towerlab (a worktree beside --out)")
    args = p.parse_args()
    versions = [("this checkout", None)]
    if args.before:
        tree = Path(args.out).resolve().parent / "search_workers-before"
        if not tree.is_dir():
            here = Path(__file__).resolve().parent.parent
            subprocess.run(["git", "-C", str(here), "worktree", "add", "--detach", str(tree), args.before], check=True)
        versions.insert(0, (f"before ({args.before})", tree / "src"))
    rows = []
    for workers in args.workers:
        for mode in ("batches", "shared"):
            for version, src in versions:
                with tempfile.TemporaryDirectory() as tmp:
                    lengths = [100, 1000, 5000] if args.long else LENGTHS
                    got = run(mode, args.trials, workers, args.seed, Path(tmp), lengths, src)
                    rows.append({"slots": workers, "version": version, **got})
    head = "slots | search | towerlab | trials | wall s | trials/hour | trial s (sum) | slot utilisation"
    print(f"| {head} | while trials waited | gap s |")
    print("|---" * 10 + "|")
    for r in rows:
        rate = 3600 * r["trials"] / r["wall_s"]
        gap = "" if r["gap_s"] is None else f"{r['gap_s']:.2f}"
        cells = [r["slots"], r["mode"], r["version"], r["trials"], f"{r['wall_s']:.1f}", f"{rate:.0f}"]
        cells += [f"{r['trial_s']:.1f}", f"{r['utilisation']:.2f}", f"{r['steady']:.2f}", gap]
        print("| " + " | ".join(map(str, cells)) + " |")
    mine = [r for r in rows if r["version"] == "this checkout"]
    pairs = {w: [r["steady"] for r in mine if r["slots"] == w] for w in args.workers}
    ratio = {w: u[1] / u[0] for w, u in pairs.items()}
    print("shared study / batches, while trials waited: " + ", ".join(f"{w} slots {x:.2f}x" for w, x in ratio.items()))
    machine = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    record = {"rows": rows, "steady_ratio": ratio, "before": args.before, "machine": machine}
    Path(args.out).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
