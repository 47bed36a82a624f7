"""FCN's fixed bilinear upsampling: the full transposed convolution (the reference's layer, what towerlab ran
before) against towerlab's FixedUpsample (the same [C, C, k, k] weight, computed channel by channel), in one run.

    python bench/fcn_upsample.py [--repeats 5] [--size 512] [--threads 1]

Rows: the layer alone at each dataset's class count (CamVid 11, VOC 21, ADE20K 150) and each fixed factor (32x of
FCN-32s, 16x of FCN-16s, 8x of FCN-8s) on the score map of a --size square image; then a whole FCN-32s forward
(eval, width 0.25 of VGG16 so that it runs on a CPU in seconds) at ADE20K's 150 classes. Median wall time of
--repeats forwards after one warm-up; the ratio is reference / towerlab; the largest difference of the outputs is
printed beside it. Writes bench/out/fcn_upsample.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from towerlab.recipes import fcn

FACTORS = {32: "FCN-32s", 16: "FCN-16s", 8: "FCN-8s"}
CLASSES = {"CamVid": 11, "VOC": 21, "ADE20K": 150}


def timed(fn, x, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        y = fn(x)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            y = fn(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times), y


def full(layer):
    """The reference: the whole [C, C, k, k] transposed convolution, as nn.ConvTranspose2d computes it."""
    return lambda x: F.conv_transpose2d(x, layer.weight, None, layer.stride)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/out/fcn_upsample.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    print("| what | classes | input | reference (s) | towerlab (s) | reference / towerlab | max abs difference |")
    print("|---|---|---|---|---|---|---|")
    for dataset, classes in CLASSES.items():
        for factor, net in FACTORS.items():
            layer = fcn.upsample(classes, factor, learn=False)
            side = (args.size + 200) // factor + 1  # the score map: 1/factor of the input conv1_1 padded by 100
            x = torch.randn(1, classes, side, side)
            ref_s, ref = timed(full(layer), x, args.repeats)
            ours_s, ours = timed(layer, x, args.repeats)
            rows.append(
                {
                    "what": f"{net} {factor}x layer",
                    "dataset": dataset,
                    "classes": classes,
                    "input": list(x.shape),
                    "reference_s": ref_s,
                    "towerlab_s": ours_s,
                    "max_abs_diff": (ref - ours).abs().max().item(),
                }
            )
    model = fcn.FCN(150, 32, width=0.25, fc=1024).eval()
    torch.nn.init.normal_(model.score_fr.weight, std=0.01)  # FCN starts its scores at zero: give them values
    x = torch.randn(1, 3, args.size, args.size)
    ours_s, ours = timed(model, x, args.repeats)
    layer = model.upscore
    model.upscore = torch.nn.ConvTranspose2d(150, 150, 64, stride=32, bias=False)
    model.upscore.weight = layer.weight
    ref_s, ref = timed(model, x, args.repeats)
    rows.append(
        {
            "what": "FCN-32s forward (width 0.25)",
            "dataset": "ADE20K",
            "classes": 150,
            "input": list(x.shape),
            "reference_s": ref_s,
            "towerlab_s": ours_s,
            "max_abs_diff": (ref - ours).abs().max().item(),
        }
    )
    for r in rows:
        print(
            f"| {r['what']} | {r['classes']} ({r['dataset']}) | {'x'.join(map(str, r['input']))} | "
            f"{r['reference_s']:.3f} | {r['towerlab_s']:.3f} | {r['reference_s'] / r['towerlab_s']:.1f} | "
            f"{r['max_abs_diff']:.1e} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": args.threads, "size": args.size, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
