"""CPU time of the CLI's start-up: what a user waits for on `towerlab --help`, `towerlab recipes` and a
subcommand's --help (median of N runs, user + system CPU of the child process, so a busy machine does not inflate
it); then a bad value refused (train, jobs), and the whole of a one-step digits training (what each trial of a
search pays before it learns). The reference in the same run is `python -c pass`: the interpreter's own start-up.

    python bench/cli_startup.py [--repeats 5]          # writes bench/out/cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "towerlab --help": ["-m", "towerlab", "--help"],
    "towerlab recipes": ["-m", "towerlab", "recipes"],
    "towerlab search --help": ["-m", "towerlab", "search", "--help"],
    "towerlab train --help": ["-m", "towerlab", "train", "--help"],
    "towerlab train digits --help": ["-m", "towerlab", "train", "digits", "--help"],
}


def refusals(tmp: Path) -> dict[str, tuple[list[str], int]]:
    """Commands that end in one line (exit 2) and a one-step training (exit 0), with the exit code each must give."""
    jobs = tmp / "jobs.yaml"
    jobs.write_text("jobs:\n  - {name: 'a b', recipe: mlp}\n")
    return {
        "train digits --lr -1 (refused)": (["-m", "towerlab", "train", "digits", "--lr", "-1"], 2),
        "jobs run, a bad job name (refused)": (["-m", "towerlab", "jobs", "run", str(jobs)], 2),
        "train digits, 1 step": (
            [
                "-m",
                "towerlab",
                "train",
                "digits",
                "--max-steps",
                "1",
                "--no-report",
                "--eval-every-epochs",
                "0",
                "--out",
                str(tmp / "run"),
                "--gpus",
                "0",
            ],
            0,
        ),
    }


def cpu_seconds(args: list[str], code: int = 0) -> float:
    before = os.times()
    rc = subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if rc != code:
        raise SystemExit(f"{' '.join(args)} exited {rc}, not {code}")
    after = os.times()
    return (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="bench/out/cli_startup.json")
    args = p.parse_args()
    commands = {name: (a, 0) for name, a in COMMANDS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        commands.update(refusals(Path(tmp)))
        rows = {}
        for name, (a, code) in commands.items():
            times = []
            for _ in range(args.repeats):
                shutil.rmtree(Path(tmp) / "run", ignore_errors=True)  # the training starts afresh each time
                times.append(cpu_seconds(a, code))
            rows[name] = statistics.median(times)
    base = rows["python -c pass"]
    print(f"{'command':38s} {'CPU s':>7s} {'x python':>9s}")
    for name, s in rows.items():
        print(f"{name:38s} {s:7.2f} {s / base:9.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
