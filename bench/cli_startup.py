"""CPU time of the CLI's start-up: what a user waits for on `towerlab --help`, `towerlab recipes` and a
subcommand's --help (median of N runs, user + system CPU of the child process, so a busy machine does not inflate
it). The reference in the same run is `python -c pass`: the interpreter's own start-up.

    python bench/cli_startup.py [--repeats 5]          # writes bench/out/cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

COMMANDS = {"python -c pass": ["-c", "pass"], "towerlab --help": ["-m", "towerlab", "--help"],
            "towerlab recipes": ["-m", "towerlab", "recipes"], "towerlab search --help": ["-m", "towerlab", "search", "--help"],
            "towerlab train --help": ["-m", "towerlab", "train", "--help"],
            "towerlab train digits --help": ["-m", "towerlab", "train", "digits", "--help"]}


def cpu_seconds(args: list[str]) -> float:
    before = os.times()
    subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = os.times()
    return (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="bench/out/cli_startup.json")
    args = p.parse_args()
    rows = {name: statistics.median(cpu_seconds(a) for _ in range(args.repeats)) for name, a in COMMANDS.items()}
    base = rows["python -c pass"]
    print(f"{'command':32s} {'CPU s':>7s} {'x python':>9s}")
    for name, s in rows.items():
        print(f"{name:32s} {s:7.2f} {s / base:9.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
