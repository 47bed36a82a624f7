"""The classic results of the "evolve a neural network" write-up: the GA over the MLP space, 10 generations of 20,
on MNIST (> 98% reported there) and CIFAR-10 (56% after 10 generations of 20 reported there).

    TOWERLAB_DATA=../shared/data python bench/search_classic.py [--datasets mnist cifar10] [--epochs 5] [--workers 2]
    TOWERLAB_DATA=../shared/data python bench/search_classic.py --datasets mnist --full --epochs 30 --patience 3 \
        --val-fraction 0.1 [--algo tpe] --samples docs/samples/search
        # the write-up's setting: all of MNIST, early stopping on the validation loss (here a held-out 10% of the
        # training images, so the test split chooses nothing: the best trial's test accuracy is reported beside)

Runs `towerlab search mlp --space examples/mlp_space.yaml --population 20 --generations 10` once per dataset as a
user would (trials as processes on the local executor), then prints the best accuracy per generation, the wall time
and trials per hour. The data in ../shared/data are subsets (MNIST: the first 10,000 training images and the full
10,000-image test set; CIFAR-10: 1,000 training and 1,000 test records), so the accuracies are not the write-up's
full-data figures. Writes bench/out/search_classic.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["mnist", "cifar10"])
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--out", default="bench/out/search_classic")
    p.add_argument("--full", action="store_true", help="MNIST: the complete 60,000 images ($TOWERLAB_DATA/mnist_full)")
    p.add_argument(
        "--patience",
        type=int,
        default=0,
        help="stop a trial after this many epochs without a better validation loss (the write-up's early stopping)",
    )
    p.add_argument("--algo", default="ga", choices=("ga", "tpe", "random"))
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="fitness and early stopping on this held-out part of the training images; the best trial's "
        "test accuracy is then scored on the test split it never chose by (the write-up used test)",
    )
    p.add_argument("--samples", default="", help="copy trials.csv and generations.csv here (docs/samples/search)")
    args = p.parse_args()
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit("set TOWERLAB_DATA to the shared data folder (../shared/data)")
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "epochs": args.epochs,
        "runs": {},
    }
    for ds in args.datasets:
        name = f"{ds}{'-full' if args.full else ''}-{args.algo}"
        out = Path(args.out) / name
        extra = ["--set", f"patience={args.patience}"] if args.patience else []
        extra += ["--set", f"val_fraction={args.val_fraction}"] if args.val_fraction else []
        if args.full and ds == "mnist":
            extra += ["--set", f"data={Path(os.environ['TOWERLAB_DATA']).resolve() / 'mnist_full'}"]
        # a search cut off and run again continues: its wall time is the sum of the sittings, kept beside it
        sittings = out / "bench_wall.json"
        before = json.loads(sittings.read_text())["wall_s"] if sittings.is_file() else 0.0
        t0 = time.time()
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "towerlab",
                    "search",
                    "mlp",
                    "--space",
                    str(REPO / "examples/mlp_space.yaml"),
                    "--algo",
                    args.algo,
                    "--population",
                    str(args.population),
                    "--generations",
                    str(args.generations),
                    "--workers",
                    str(args.workers),
                    "--out",
                    str(out),
                    "--set",
                    f"dataset={ds}",
                    "--set",
                    f"epochs={args.epochs}",
                    "--set",
                    "eval_every_epochs=1",
                    *extra,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        finally:  # a sitting cut off counts too
            wall = before + time.time() - t0
            out.mkdir(parents=True, exist_ok=True)
            sittings.write_text(json.dumps({"wall_s": wall}))
        gens = json.loads((out / "generations.json").read_text())
        best = json.loads((out / "best.json").read_text())
        with open(out / "trials.csv") as f:
            rows = list(csv.DictReader(f))
        trials = len(rows)
        # each trial's own time: the rate without idle slots at generation ends
        slot_hours = sum(float(r["seconds"] or 0) for r in rows) / 3600 / args.workers
        report["runs"][name] = {
            "best": best,
            "generations": gens,
            "wall_s": wall,
            "trials": trials,
            "trials_per_hour": trials / wall * 3600,
            "trials_per_slot_hour": trials / slot_hours,
        }
        where = "validation" if args.val_fraction else "test"
        test = f", test accuracy {best['test']['accuracy']:.4f}" if "test" in best else ""
        print(
            f"{name}: best {where} accuracy {best['fitness']:.4f}{test} ({best['genome']}); {trials} trials in "
            f"{wall / 60:.1f} min ({trials / wall * 3600:.0f} trials/hour; {trials / slot_hours:.0f} from the "
            f"trials' own times over {args.workers} slots)"
        )
        if args.samples:
            import shutil

            Path(args.samples).mkdir(parents=True, exist_ok=True)
            for f in ("trials.csv", "generations.csv"):
                if (out / f).is_file():
                    shutil.copy(out / f, Path(args.samples) / f"{name}-{f}")
        print("  best per generation: " + " ".join(f"{g['best']:.4f}" for g in gens))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "search_classic.json").write_text(json.dumps(report, indent=1))
    Path("bench/out").mkdir(exist_ok=True)
    Path("bench/out/search_classic.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
