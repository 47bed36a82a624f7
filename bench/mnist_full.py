"""The MNIST ConvNet on the complete MNIST (60,000 training / 10,000 test images), as a new user runs it.

    TOWERLAB_DATA=../shared/data python bench/mnist_full.py accuracy [--seeds 0 1 2] [--procs 2]
    TOWERLAB_DATA=../shared/data python bench/mnist_full.py time [--seeds 0 1 2] [--target 0.99] [--explore]

accuracy: `towerlab train mnist --fast` with the recipe's defaults, once per seed (and once on two gloo processes with
--procs 2), then the test accuracy of each run's LAST checkpoint. MNIST has no validation split of its own: the recipe
evaluates on the test images to draw its curve, so no checkpoint is chosen by those numbers here; the schedule is fixed
and the last weights are the result. Writes each run's predictions on the 10,000 test images (`index,predicted`,
index = position in t10k-images-idx3-ubyte) to --samples.

time: seconds from the start of training to --target test accuracy, for `train mnist` as it is, with --fast, and for
the fastest settings found (FASTEST below), side by side in one process, each --seeds times. Evaluation every
--eval-every steps; `train_s` leaves out the evaluations and the checkpoints that follow them (as speed records do),
`wall_s` is everything from the start of the training loop, `process_s` the whole command (start-up, data loading).

Each run lives in --out/<name>; a finished one is read back, a cut-off one continues (--auto-resume), so a re-run
goes on where it stopped. Prints a table and writes --out/<mode>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# candidates for the fastest settings (`time --explore` runs each once): no shifts (they slow the first epochs),
# Adam with a one-cycle schedule sized to end near the target, a narrower fc layer, larger batches
CANDIDATES = {
    "adam-b256-h512-2ep": [
        "--fast",
        "--shift",
        "0",
        "--optimizer",
        "adam",
        "--lr",
        "3e-3",
        "--schedule",
        "onecycle",
        "--batch-size",
        "256",
        "--epochs",
        "2",
        "--hidden",
        "512",
    ],
    "adam-b512-h256-2ep": [
        "--fast",
        "--shift",
        "0",
        "--optimizer",
        "adam",
        "--lr",
        "4e-3",
        "--schedule",
        "onecycle",
        "--batch-size",
        "512",
        "--epochs",
        "2",
        "--hidden",
        "256",
    ],
    "adam-b128-h512-1.5ep": [
        "--fast",
        "--shift",
        "0",
        "--optimizer",
        "adam",
        "--lr",
        "2e-3",
        "--schedule",
        "onecycle",
        "--batch-size",
        "128",
        "--epochs",
        "1.5",
        "--hidden",
        "512",
    ],
}
FASTEST = "adam-b256-h512-2ep"  # the candidate that reached the target first (docs/results.md)
SETTINGS = {"defaults": [], "fast": ["--fast"], "fastest": CANDIDATES[FASTEST]}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train(out: Path, flags: list[str], data: Path) -> float:
    """Train (or finish training) one run; the seconds the command took (0 when it was already done)."""
    if (out / "final_metrics.json").is_file():
        return 0.0
    cmd = [
        sys.executable,
        "-m",
        "towerlab",
        "train",
        "mnist",
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
    (out / "bench_process_s.txt").write_text(f"{seconds:.3f}\n")
    return seconds


def test_predictions(run: Path) -> tuple[list[int], list[int]]:
    """(predicted, true) class of every test image, from the run's last checkpoint."""
    import torch

    from towerlab import infer
    from towerlab.data import mnist as mnist_data

    loaded = infer.load(run, "last")
    images, labels = mnist_data.load_split(Path(loaded.cfg.data), "test")
    predicted = []
    with torch.no_grad():
        for i in range(0, len(images), 1000):
            x = loaded.recipe.prepare(loaded.cfg, images[i : i + 1000])
            predicted += loaded.recipe.predict(loaded.model, x).argmax(1).tolist()
    return predicted, labels.tolist()


def write_predictions(path: Path, predicted: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "predicted"])
        w.writerows(enumerate(predicted))


def accuracy(args, data: Path) -> dict:
    runs = [(f"seed{s}", ["--fast", "--seed", str(s)]) for s in args.seeds]
    if args.procs > 1:
        runs.append(
            (
                f"seed{args.seeds[0]}-procs{args.procs}",
                ["--fast", "--seed", str(args.seeds[0]), "--procs", str(args.procs)],
            )
        )
    rows = []
    for name, flags in runs:
        out = Path(args.out) / name
        train(out, flags, data)
        predicted, true = test_predictions(out)
        acc = sum(p == t for p, t in zip(predicted, true)) / len(true)
        final = json.loads((out / "final_metrics.json").read_text())
        # the default seed's as predictions.csv (the name), the others beside it
        file = "predictions.csv" if name == f"seed{args.seeds[0]}" else f"predictions_{name}.csv"
        write_predictions(Path(args.samples) / file, predicted)
        rows.append(
            {
                "run": name,
                "test_accuracy_last": acc,
                "errors": len(true) - round(acc * len(true)),
                "epochs": final["epoch"],
                "world_size": final["world_size"],
                "wall_s": final["wall_s"],
                "curve_best_epoch_accuracy": final["best"]["value"],
            }
        )
    one = [r["test_accuracy_last"] for r in rows if r["world_size"] == 1]
    print("| run | processes | epochs | test accuracy (last checkpoint) | errors of 10,000 | wall s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['world_size']} | {r['epochs']:g} | {r['test_accuracy_last']:.4f} | {r['errors']} "
            f"| {r['wall_s']:.0f} |"
        )
    sd = statistics.stdev(one) if len(one) > 1 else 0.0
    print(f"one process, mean of {len(one)} seeds: {statistics.mean(one):.4f} +- {sd:.4f} (sd)")
    return {"rows": rows, "mean": statistics.mean(one), "sd": sd}


def first_reaching(run: Path, target: float) -> dict | None:
    """The first evaluation at or above target: its step and times."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("val/accuracy", 0) >= target:
            return {
                "step": row["step"],
                "epoch": row["epoch"],
                "train_s": row["train_s"],
                "wall_s": row["wall_s"],
                "accuracy": row["val/accuracy"],
            }
    return None


def time_to_accuracy(args, data: Path) -> dict:
    rows = []
    settings = CANDIDATES if args.explore else SETTINGS
    for setting, flags in settings.items():
        for s in args.seeds[:1] if args.explore else args.seeds:
            out = Path(args.out) / f"time-{setting}-seed{s}"
            if args.explore:
                out = Path(args.out) / f"explore-{setting}"
            train(
                out,
                [
                    *flags,
                    "--seed",
                    str(s),
                    "--stop-at",
                    str(args.target),
                    "--eval-every-steps",
                    str(args.eval_every),
                    "--keep-checkpoints",
                    "1",
                ],
                data,
            )
            hit = first_reaching(out, args.target)
            process = (
                float((out / "bench_process_s.txt").read_text()) if (out / "bench_process_s.txt").is_file() else None
            )
            rows.append(
                {"setting": setting, "seed": s, "reached": hit is not None, **(hit or {}), "process_s": process}
            )
    print(f"| settings | reached {args.target} | train_s (mean +- sd) | wall_s | process_s | epochs |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for setting in settings:
        hits = [r for r in rows if r["setting"] == setting and r["reached"]]
        n = len([r for r in rows if r["setting"] == setting])
        if not hits:
            print(f"| {setting} | 0/{n} | - | - | - | - |")
            continue
        mean = {k: statistics.mean(r[k] for r in hits) for k in ("train_s", "wall_s", "process_s", "epoch")}
        sd = statistics.stdev(r["train_s"] for r in hits) if len(hits) > 1 else 0.0
        summary[setting] = {**mean, "train_s_sd": sd, "reached": f"{len(hits)}/{n}"}
        print(
            f"| {setting} | {len(hits)}/{n} | {mean['train_s']:.1f} +- {sd:.1f} | {mean['wall_s']:.1f} | "
            f"{mean['process_s']:.1f} | {mean['epoch']:.2f} |"
        )
    return {"rows": rows, "summary": summary, "settings": settings, "target": args.target}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("accuracy", "time"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--procs", type=int, default=2, help="accuracy: also train seed 0 on this many gloo processes")
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--explore", action="store_true", help="time: run each of CANDIDATES once (seed 0) instead")
    p.add_argument("--eval-every", type=int, default=100, help="time: evaluate every this many steps")
    p.add_argument("--out", default="bench/out/mnist_full")
    p.add_argument("--samples", default="docs/samples/mnist_full")
    args = p.parse_args()
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit("set TOWERLAB_DATA to the shared data folder (../shared/data)")
    data = Path(os.environ["TOWERLAB_DATA"]).resolve() / "mnist_full"
    report = {
        "command": " ".join(["python", *sys.argv]),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": "torch default",
    }
    report.update(accuracy(args, data) if args.mode == "accuracy" else time_to_accuracy(args, data))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.mode}{'-explore' if args.explore else ''}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
