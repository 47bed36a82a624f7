"""What a report costs beside the run it describes: `towerlab report` on a short run of every recipe and on a search,
each timed against the training (or search) it reports on, in the same process start-up conditions. The goal: a
report costs at most a few seconds or 5% of its run, whichever is more.

    TOWERLAB_DATA=../shared/data python bench/report_cost.py [--repeats 3]

Each run is trained with --no-report; then `towerlab report RUN` is timed as a user runs it (a fresh process,
its start-up included) `--repeats` times. Prints a table (seconds and report/run ratio) and writes
bench/out/report_cost.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "towerlab", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TOWERLAB_REPORT": "0"},
    )
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", nargs="*", help="run only the cases whose name starts with one of these")
    args = p.parse_args()
    data = Path(os.environ.get("TOWERLAB_DATA", "../shared/data"))
    tmp = Path(tempfile.mkdtemp(prefix="report_cost_"))
    zinc = tmp / "zinc.txt"
    zinc.write_text("\n".join((data / "zinc250k_jtvae" / "test.txt").read_text().split()[:2000]) + "\n")
    space = tmp / "space.yaml"
    space.write_text("lr: {logfloat: [0.001, 0.1]}\nunits: {choices: [16, 64, 256]}\n")
    cases = {
        "digits (30 epochs)": ["train", "digits", "--out", str(tmp / "digits")],
        "mnist (300 steps, 10k test)": ["train", "mnist", "--max-steps", "300", "--fast", "--out", str(tmp / "mnist")],
        "mlp (1 epoch, mnist)": ["train", "mlp", "--epochs", "1", "--out", str(tmp / "mlp")],
        "cifar10 (300 steps)": ["train", "cifar10", "--max-steps", "300", "--out", str(tmp / "cifar10")],
        "fcn8s (camvid, 40 steps, width 0.25)": [
            "train",
            "fcn8s",
            "--max-steps",
            "40",
            "--width",
            "0.25",
            "--fc-channels",
            "256",
            "--batch-size",
            "4",
            "--optimizer",
            "adam",
            "--lr",
            "1e-3",
            "--out",
            str(tmp / "fcn8s"),
        ],
        "segdec (fold 0, 2+2 epochs, 352x128)": [
            "train",
            "segdec",
            "--height",
            "352",
            "--width",
            "128",
            "--feature-channels",
            "256",
            "--batch-size",
            "4",
            "--epochs",
            "2",
            "--out",
            str(tmp / "segdec"),
        ],
        "chemvae (200 steps)": [
            "train",
            "chemvae",
            "--data",
            str(zinc),
            "--max-steps",
            "200",
            "--max-len",
            "80",
            "--gru-hidden",
            "128",
            "--latent",
            "32",
            "--out",
            str(tmp / "chemvae"),
        ],
        "chemaae (200 steps)": [
            "train",
            "chemaae",
            "--data",
            str(zinc),
            "--max-steps",
            "200",
            "--max-len",
            "80",
            "--out",
            str(tmp / "chemaae"),
        ],
        "smiles-lstm (MOSES 250k, 300 steps)": [
            "train",
            "smiles-lstm",
            "--max-steps",
            "300",
            "--hidden",
            "256",
            "--out",
            str(tmp / "smiles-lstm"),
        ],
        "search (mlp, 4 x 3)": [
            "search",
            "mlp",
            "--space",
            str(space),
            "--population",
            "4",
            "--generations",
            "3",
            "--workers",
            "2",
            "--set",
            "dataset=digits",
            "--set",
            "epochs=2",
            "--out",
            str(tmp / "search"),
        ],
    }
    rows = []
    for name, cmd in cases.items():
        if args.only and not name.startswith(tuple(args.only)):
            continue
        run_s = _run(*cmd)
        folder = cmd[cmd.index("--out") + 1]
        if (Path(folder) / "dec").is_dir():  # a staged run (segdec seg+dec): the report of its last stage
            folder = str(Path(folder) / "dec")
        report_s = statistics.median(_run("report", folder) for _ in range(args.repeats))
        rows.append({"run": name, "run_s": run_s, "report_s": report_s, "ratio": report_s / run_s})
    print("| run | run (s) | report (s, median) | report / run | within max(5 s, 5%) |")
    print("|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r["report_s"] <= max(5.0, 0.05 * r["run_s"]) else "no"
        print(f"| {r['run']} | {r['run_s']:.1f} | {r['report_s']:.2f} | {r['ratio']:.2f} | {ok} |")
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report_cost.json").write_text(
        json.dumps(
            {
                "command": " ".join(["python", *sys.argv]),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "rows": rows,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
