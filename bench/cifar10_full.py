"""The TensorFlow CIFAR-10 tutorial CNN on the complete CIFAR-10 (50,000 training / 10,000 test records).

    TOWERLAB_DATA=../shared/data python bench/cifar10_full.py schedule [--seeds 0]
    TOWERLAB_DATA=../shared/data python bench/cifar10_full.py towers [--seeds 0 1 2] [--steps 10000]
    TOWERLAB_DATA=../shared/data python bench/cifar10_full.py time [--targets 0.80 0.86] [--settings fast ...]

schedule: `towerlab train cifar10` with the tutorial's own schedule (the recipe's defaults: batch 128, lr 0.1 decayed
x0.1 every 350 epochs, weight decay 0.004 on local3/local4, a 0.9999 moving average of the weights, 256 epochs =
100K steps) and --fast (bf16 autocast and channels_last on this CPU; fp32 master weights). The moving-average
weights are evaluated on the 10,000 test records every --eval-every steps: that is the tutorial's curve (its
cifar10_eval.py scores the moving averages on the test records as training goes). No checkpoint is chosen by those
numbers: the result is the LAST checkpoint at 100K steps; its predictions (`index,predicted`, index = record
position in test_batch.bin) go to --samples.

towers: the tutorial's multi-GPU claim (a tower per GPU, gradients averaged, the same global batch): --steps steps
of the global batch 128 on one process for each seed, and on two gloo processes (--procs 2, 64 a process) for the
first seed; the table shows whether the two-process run lands inside the one-process spread.

time: seconds to each --target test accuracy of the moving-average weights, for settings of the unchanged
network (SETTINGS below), evaluated every --eval-every-time steps; `train_s` leaves out evaluations and the
checkpoints after them (as speed records do).

Each run lives in --out/<name>; a finished one is read back, a cut-off one continues (--auto-resume), so the same
command run again (another session, after a reboot) goes on where it stopped. Prints a table and writes
--out/<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist_full import cpu_name, write_predictions  # noqa: E402  (the shared bench helpers)

TUTORIAL_CURVE = {100_000: 0.86}  # the README's figure: "~86% accuracy after 100K steps (256 epochs of data)"
CHECKPOINTS = (10_000, 25_000, 50_000, 100_000)
# settings of the unchanged network for the time-to-accuracy table; each line says what it changes
SETTINGS = {
    "tutorial": [],  # the published schedule, fp32
    "fast": ["--fast"],  # + bf16 autocast, channels_last
    "fast-ema0.999": ["--fast", "--ema-decay", "0.999"],  # a shorter average: early accuracy is not held back
}


def train(out: Path, flags: list[str], data: Path) -> float:
    """Train (or finish training) one run; the seconds this call spent (0 when the run was already done)."""
    if (out / "final_metrics.json").is_file():
        return 0.0
    cmd = [
        sys.executable,
        "-m",
        "towerlab",
        "train",
        "cifar10",
        "--data",
        str(data),
        "--out",
        str(out),
        "--auto-resume",
        "--no-report",
        *flags,
    ]
    print("$ " + " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    with open(out / "bench_process_s.txt", "a") as f:  # one line a call: a resumed run has several
        f.write(f"{seconds:.3f}\n")
    return seconds


def curve(run: Path) -> dict[int, dict]:
    """Every evaluation of the run by step (the last one written for a step wins: a resumed run repeats none)."""
    rows = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "val/accuracy" in row:
            rows[row["step"]] = row
    return rows


def test_predictions(run: Path) -> tuple[list[int], list[int]]:
    """(predicted, true) class of every test record, from the run's last checkpoint (its moving-average weights)."""
    import torch

    from towerlab import infer
    from towerlab.data import cifar as cifar_data

    loaded = infer.load(run, "last")
    images, labels = cifar_data.load_split(Path(loaded.cfg.data), "test")
    predicted = []
    with torch.no_grad():
        for i in range(0, len(images), 1000):
            x = loaded.recipe.prepare(loaded.cfg, images[i : i + 1000])
            predicted += loaded.recipe.predict(loaded.model, x).argmax(1).tolist()
    return predicted, labels.tolist()


def schedule(args, data: Path) -> dict:
    report = {"runs": []}
    for seed in args.seeds:
        out = Path(args.out) / f"schedule-seed{seed}"
        train(
            out,
            [
                "--fast",
                "--seed",
                str(seed),
                "--max-steps",
                "100000",
                "--eval-every-steps",
                str(args.eval_every),
                "--keep-checkpoints",
                "2",
            ],
            data,
        )
        points = curve(out)
        predicted, true = test_predictions(out)
        acc = sum(p == t for p, t in zip(predicted, true)) / len(true)
        write_predictions(Path(args.samples) / f"predictions_seed{seed}.csv", predicted)
        final = json.loads((out / "final_metrics.json").read_text())
        process_s = sum(float(x) for x in (out / "bench_process_s.txt").read_text().split())
        run = {
            "seed": seed,
            "curve": {s: points[s]["val/accuracy"] for s in sorted(points)},
            "test_accuracy_last": acc,
            "steps": final["step"],
            "process_s": process_s,
        }
        report["runs"].append(run)
        print(f"seed {seed}: {final['step']} steps, {process_s / 3600:.2f} h of process time")
        print("| step | epochs | test accuracy (moving average) | tutorial |")
        print("|---|---|---|---|")
        for s in CHECKPOINTS:
            if s in points:
                tut = TUTORIAL_CURVE.get(s)
                print(
                    f"| {s:,} | {points[s]['epoch']:.1f} | {points[s]['val/accuracy']:.4f} | "
                    f"{f'~{tut:.2f}' if tut else '-'} |"
                )
        print(
            f"last checkpoint, recomputed from its predictions: {acc:.4f} ({len(true) - round(acc * len(true))} "
            f"errors of {len(true):,})"
        )
    return report


def towers(args, data: Path) -> dict:
    common = [
        "--fast",
        "--max-steps",
        str(args.steps),
        "--eval-every-steps",
        str(args.steps),
        "--keep-checkpoints",
        "1",
    ]
    runs = [(f"towers-seed{s}-procs1", [*common, "--seed", str(s)]) for s in args.seeds]
    runs.append((f"towers-seed{args.seeds[0]}-procs2", [*common, "--seed", str(args.seeds[0]), "--procs", "2"]))
    rows = []
    for name, flags in runs:
        out = Path(args.out) / name
        train(out, flags, data)
        final = json.loads((out / "final_metrics.json").read_text())
        rows.append(
            {
                "run": name,
                "world_size": final["world_size"],
                "accuracy": final["accuracy"],
                "images_per_s": final.get("images_per_s"),
                "wall_s": final["wall_s"],
            }
        )
    one = [r["accuracy"] for r in rows if r["world_size"] == 1]
    two = [r["accuracy"] for r in rows if r["world_size"] == 2]
    print(f"| run | processes | test accuracy at {args.steps:,} steps | images/s | wall s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['world_size']} | {r['accuracy']:.4f} | {r['images_per_s'] or 0:.0f} | "
            f"{r['wall_s']:.0f} |"
        )
    inside = bool(two) and min(one) <= two[0] <= max(one)
    print(
        f"one process over {len(one)} seeds: {min(one):.4f} .. {max(one):.4f} (mean {statistics.mean(one):.4f}); "
        f"two processes: {two[0] if two else float('nan'):.4f}: {'inside' if inside else 'outside'} the spread"
    )
    return {"rows": rows, "one_process": one, "two_processes": two, "inside_spread": inside}


def first_reaching(run: Path, target: float) -> dict | None:
    for step, row in sorted(curve(run).items()):
        if row["val/accuracy"] >= target:
            return {
                "step": step,
                "epoch": row["epoch"],
                "train_s": row["train_s"],
                "wall_s": row["wall_s"],
                "accuracy": row["val/accuracy"],
            }
    return None


def time_to_accuracy(args, data: Path) -> dict:
    rows = []
    for name in args.settings:
        out = Path(args.out) / f"time-{name}"
        train(
            out,
            [
                *SETTINGS[name],
                "--stop-at",
                str(max(args.targets)),
                "--max-steps",
                str(args.max_steps),
                "--eval-every-steps",
                str(args.eval_every_time),
                "--keep-checkpoints",
                "1",
            ],
            data,
        )
        for target in args.targets:
            hit = first_reaching(out, target)
            rows.append(
                {
                    "setting": name,
                    "flags": " ".join(SETTINGS[name]),
                    "target": target,
                    "reached": hit is not None,
                    **(hit or {}),
                }
            )
    print("| settings | flags | target | step | epochs | train_s | wall_s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["reached"]:
            print(
                f"| {r['setting']} | {r['flags'] or '-'} | {r['target']} | {r['step']:,} | {r['epoch']:.1f} | "
                f"{r['train_s']:.0f} | {r['wall_s']:.0f} |"
            )
        else:
            print(f"| {r['setting']} | {r['flags'] or '-'} | {r['target']} | not reached | - | - | - |")
    return {"rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("schedule", "towers", "time"))
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="schedule: 0; towers: 0 1 2")
    p.add_argument("--eval-every", type=int, default=5000, help="schedule: evaluate every this many steps")
    p.add_argument("--steps", type=int, default=10_000, help="towers: steps of each run")
    p.add_argument("--targets", type=float, nargs="+", default=[0.80, 0.86])
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    p.add_argument("--max-steps", type=int, default=100_000, help="time: give up at this step")
    p.add_argument("--eval-every-time", type=int, default=1000, help="time: evaluate every this many steps")
    p.add_argument("--out", default="bench/out/cifar10_full")
    p.add_argument("--samples", default="docs/samples/cifar10_full")
    args = p.parse_args()
    if args.seeds is None:
        args.seeds = [0] if args.mode == "schedule" else [0, 1, 2]
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit("set TOWERLAB_DATA to the shared data folder (../shared/data)")
    data = Path(os.environ["TOWERLAB_DATA"]).resolve() / "cifar10_full"
    report = {
        "command": " ".join(["python", *sys.argv]),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": "torch default",
    }
    mode = {"schedule": schedule, "towers": towers, "time": time_to_accuracy}[args.mode]
    report.update(mode(args, data))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.mode}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
