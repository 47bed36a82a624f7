"""What a report costs beside the run it describes: `towerlab report` on a digits run, a chemvae run and a search,
each timed against the training (or search) it reports on, in the same process start-up conditions.

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
    subprocess.run([sys.executable, "-m", "towerlab", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, "TOWERLAB_REPORT": "0"})
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    data = Path(os.environ.get("TOWERLAB_DATA", "../shared/data"))
    tmp = Path(tempfile.mkdtemp(prefix="report_cost_"))
    zinc = tmp / "zinc.txt"
    zinc.write_text("\n".join((data / "zinc250k_jtvae" / "test.txt").read_text().split()[:2000]) + "\n")
    space = tmp / "space.yaml"
    space.write_text("lr: {logfloat: [0.001, 0.1]}\nunits: {choices: [16, 64, 256]}\n")
    cases = {"digits (30 epochs)": ["train", "digits", "--out", str(tmp / "digits")],
             "chemvae (200 steps)": ["train", "chemvae", "--data", str(zinc), "--max-steps", "200", "--max-len", "80",
                                     "--gru-hidden", "128", "--latent", "32", "--out", str(tmp / "chemvae")],
             "search (mlp, 4 x 3)": ["search", "mlp", "--space", str(space), "--population", "4", "--generations", "3",
                                     "--workers", "2", "--set", "dataset=digits", "--set", "epochs=2", "--out",
                                     str(tmp / "search")]}
    rows = []
    for name, cmd in cases.items():
        run_s = _run(*cmd)
        folder = cmd[cmd.index("--out") + 1]
        report_s = statistics.median(_run("report", folder) for _ in range(args.repeats))
        rows.append({"run": name, "run_s": run_s, "report_s": report_s, "ratio": report_s / run_s})
    print("| run | run (s) | report (s, median) | report / run |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['run_s']:.1f} | {r['report_s']:.2f} | {r['ratio']:.2f} |")
    out = Path("bench/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report_cost.json").write_text(json.dumps({"command": " ".join(["python", *sys.argv]),
                                                      "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                                                      "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
