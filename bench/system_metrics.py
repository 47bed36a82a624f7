"""The cost of logging system metrics (host memory and CPU, GPU memory and utilisation) and of MLflow tracking (a
real `mlflow server` on 127.0.0.1) beside the loss: the same digits run without either, with system metrics, and
with MLflow too, alternating, median of --repeats, at --log-every 10 and at 1 (the worst case: a request every
step). Prints a table and writes bench/out/system_metrics.json.

    python bench/system_metrics.py [--steps 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import free_port, start_mlflow, stop_mlflow  # noqa: E402  the tests' MLflow server helpers


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from towerlab import config
    from towerlab.engine import fit
    from towerlab.recipes import digits

    work = Path(tempfile.mkdtemp(prefix="towerlab-sys-"))
    port = free_port()
    server = start_mlflow(work, port)  # the tests' real `mlflow server` on 127.0.0.1
    setups = {
        "plain": {"system_metrics": False},
        "system metrics": {},
        "system metrics + MLflow": {"mlflow": f"http://127.0.0.1:{port}"},
    }
    rows, report = [], {}
    try:
        for every in (10, 1):
            times = {name: [] for name in setups}
            for i in range(args.repeats):
                for name, extra in setups.items():
                    cfg = config.build(
                        digits.Config,
                        None,
                        {"max_steps": args.steps, "log_every": every, "eval_every_epochs": 0.0, **extra},
                    )
                    t0 = time.perf_counter()
                    fit(digits, cfg, out=work / f"{every}-{name}-{i}")
                    times[name].append(time.perf_counter() - t0)
            base = statistics.median(times["plain"])
            for name in setups:
                rows.append(
                    (f"log every {every}", name, statistics.median(times[name]), statistics.median(times[name]) / base)
                )
            report[f"log_every_{every}"] = times
    finally:
        stop_mlflow(server)
    print(f"{'digits, ' + str(args.steps) + ' steps':22s} {'setup':26s} {'seconds':>8s} {'ratio':>6s}")
    for every, name, sec, ratio in rows:
        print(f"{every:22s} {name:26s} {sec:8.2f} {ratio:6.3f}")
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/system_metrics.json").write_text(
        json.dumps(
            {
                "command": " ".join(["python", *sys.argv]),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "steps": args.steps,
                "seconds": report,
                "table": rows,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
