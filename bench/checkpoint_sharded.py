"""Checkpoints of an FSDP run: whole tensors gathered on rank 0 (--checkpoint full) against every rank writing its own
shards (--checkpoint sharded, torch.distributed.checkpoint) and the same shards written by a background thread while
training goes on (--checkpoint sharded-async), in the same run otherwise.

    python bench/checkpoint_sharded.py --procs 2 --units 4096 --layers 4

Trains the mlp recipe (scikit-learn's digits, an MLP made wide so that the state is hundreds of MB) under
strategy=fsdp on N CPU processes over gloo, checkpointing every 2 steps, and reads rank 0's peak resident memory
(VmHWM, polled from /proc), the command's wall time and the training loop's own (final_metrics wall_s: the steps,
the checkpoints they wait for, no start-up). Prints a table, writes bench/out/checkpoint_sharded.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rank0_peak(run: Path) -> int:
    """The largest VmHWM (kB) of a live process training `run` as rank 0, 0 if none is found."""
    peak = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if str(run).encode() in cmd and b"RANK=0" in env:
            peak = max(peak, int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM"))))
    return peak


def run(mode: str, args, tmp: Path) -> dict:
    out = tmp / mode
    cmd = [sys.executable, "-m", "towerlab", "train", "mlp", "--gpus", "0", "--procs", str(args.procs)]
    cmd += ["--strategy", "fsdp", "--checkpoint", mode, "--out", str(out), "--max-steps", str(args.steps)]
    cmd += ["--ckpt-every-steps", "2", "--eval-every-epochs", "0", "--hidden-layers", str(args.layers)]
    cmd += ["--units", str(args.units), "--dataset", "digits", "--no-report", "--keep-checkpoints", "1"]
    t0, peak = time.perf_counter(), 0
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        peak = max(peak, _rank0_peak(out))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{mode}: {proc.stderr.read()[-2000:]}")
    ckpt = next(p for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))
    size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
    loop = json.loads((out / "final_metrics.json").read_text())["wall_s"]
    mb = {"rank0_peak_mb": peak / 1024, "checkpoint_mb": size / 2**20}
    return {"checkpoint": mode, "wall_s": wall, "loop_s": loop, **mb}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--units", type=int, default=4096)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", default="bench/out/checkpoint_sharded.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(m, args, Path(tmp)) for m in ("full", "sharded", "sharded-async")]
    head = "| checkpoint | wall s | training loop s | rank 0 peak RSS MB | one checkpoint MB |"
    print(f"{head}  ({args.procs} processes, fsdp)")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = [r["checkpoint"], f"{r['wall_s']:.1f}", f"{r['loop_s']:.1f}", f"{r['rank0_peak_mb']:.0f}"]
        print("| " + " | ".join([*cells, f"{r['checkpoint_mb']:.0f}"]) + " |")
    full = rows[0]
    for r in rows[1:]:
        ratio = {k: r[k] / full[k] for k in ("wall_s", "loop_s", "rank0_peak_mb")}
        print(f"{r['checkpoint']} / full: wall {ratio['wall_s']:.2f}x, loop {ratio['loop_s']:.2f}x, rank 0 peak "
              f"{ratio['rank0_peak_mb']:.2f}x")  # fmt: skip
    machine = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "args": vars(args), "machine": machine}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
