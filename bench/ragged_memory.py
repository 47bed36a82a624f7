"""Resident memory of an LSTM trained on batches whose length changes every step, with and without the engine's
"keep freed memory" allocator setting (perf.keep_freed_memory): why smiles-lstm declares ragged_batches.

    python bench/ragged_memory.py [--steps 100]

Each setting runs in a fresh process on one thread (a 3 x 512 LSTM, batch 128, Adam, random lengths 30-101 or a
fixed 101); prints resident memory every 10 steps and seconds a step; writes bench/out/ragged_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import random, sys, time
import torch
mode, steps = sys.argv[1], int(sys.argv[2])
if mode != "glibc":
    from towerlab import perf
    perf.keep_freed_memory()
if mode == "kept, oneDNN off":
    torch.backends.mkldnn.enabled = False
torch.manual_seed(0)
emb, lstm, head = torch.nn.Embedding(40, 64), torch.nn.LSTM(64, 512, 3, batch_first=True), torch.nn.Linear(512, 40)
opt = torch.optim.Adam([*emb.parameters(), *lstm.parameters(), *head.parameters()], 1e-3)
rng, rss, t0 = random.Random(0), [], time.time()
for step in range(steps):
    x = torch.randint(1, 40, (128, 101 if mode == "kept, fixed length" else rng.randint(30, 101)))
    loss = torch.nn.functional.cross_entropy(head(lstm(emb(x))[0]).transpose(1, 2), x)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 10 == 9:
        rss.append(int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**30)
print(rss, (time.time() - t0) / steps)
"""
MODES = ("kept", "glibc", "kept, fixed length", "kept, oneDNN off")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    rows = []
    print("| allocator | resident GB every 10 steps | s a step |\n|---|---|---|")
    for mode in MODES:
        out = (
            subprocess.run(
                [sys.executable, "-c", PROBE, mode, str(args.steps)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        rss, per_step = out.rsplit("] ", 1)
        rss = json.loads(rss + "]")
        rows.append({"mode": mode, "rss_gb": rss, "s_per_step": float(per_step)})
        print(f"| {mode} | {' '.join(f'{g:.2f}' for g in rss)} | {float(per_step):.2f} |", flush=True)
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/ragged_memory.json").write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
