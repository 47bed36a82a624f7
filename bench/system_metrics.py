"""The cost of logging system metrics (host memory and CPU, GPU memory and utilisation) beside the loss: the same
digits run with and without them, alternating, median of --repeats, at --log-every 1 (the worst case: a read every
step). Prints a table and writes bench/out/system_metrics.json.

    python bench/system_metrics.py [--steps 400] [--repeats 5]
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    from towerlab import config
    from towerlab.engine import fit
    from towerlab.recipes import digits

    times = {True: [], False: []}
    work = Path(tempfile.mkdtemp(prefix="towerlab-sys-"))
    for i in range(args.repeats):
        for on in (False, True):
            cfg = config.build(digits.Config, None, {"max_steps": args.steps, "log_every": 1, "eval_every_epochs": 0.0,
                                                     "system_metrics": on})
            t0 = time.perf_counter()
            fit(digits, cfg, out=work / f"{on}-{i}")
            times[on].append(time.perf_counter() - t0)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"{'digits, log every step':30s} {'without s':>10s} {'with s':>10s} {'ratio':>6s}")
    print(f"{'':30s} {off:10.2f} {on:10.2f} {on / off:6.3f}")
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/system_metrics.json").write_text(json.dumps(
        {"command": " ".join(["python", *sys.argv]), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
         "steps": args.steps, "without_s": times[False], "with_s": times[True], "ratio": on / off}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
