"""The predictions behind the FCN staged table, committed and rescored by code that shares nothing with towerlab's.

    TOWERLAB_DATA=../shared/data python bench/fcn_predictions.py bench/out/fcn_stages800 docs/samples/fcn_stages800
    python bench/fcn_predictions.py --rescore docs/samples/fcn_stages800      # numpy + Pillow only

Writing: `towerlab predict` on each run of a bench/fcn_stages.sh folder (its last checkpoint, as the table) over
CamVid's validation images, one label map per image (a palette PNG: the pixel values are class indices 0-10).
Rescoring: each label map against CamVid's annotation (void, 11, ignored) summed into one confusion matrix per run,
then the FCN paper's four figures (pixel accuracy, mean accuracy, mean IU, frequency-weighted IU; a class neither in
the annotations nor predicted is left out of the means, as the FCN code's nanmean). The table printed beside the
run's own final_metrics.json, when that is there, with JSON in the samples folder (rescored.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

RUNS = ("fcn32s", "fcn16s", "fcn8s", "fcn32s_x2", "fcn32s_x3")
CLASSES, VOID = 11, 11


def write(stages: Path, samples: Path, images: Path) -> None:
    for run in RUNS:
        out = samples / run
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "towerlab",
                "predict",
                str(stages / run),
                str(images),
                "--out-dir",
                str(out),
                "--out",
                str(out / "predict.csv"),
            ],
            check=True,
        )
        for overlay in out.glob("*_overlay.png"):  # pictures, not figures: left out to keep the samples small
            overlay.unlink()
        (out / "predict.csv").unlink()
        src = stages / run / "final_metrics.json"
        if src.is_file():
            (out / "final_metrics.json").write_text(src.read_text())


def figures(conf: np.ndarray) -> dict[str, float]:
    tp, true_n, pred_n = np.diag(conf).astype(float), conf.sum(1).astype(float), conf.sum(0).astype(float)
    union = true_n + pred_n - tp
    seen = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = tp / union, tp / true_n
    return {
        "pixel_accuracy": tp.sum() / conf.sum(),
        "mean_class_accuracy": acc[true_n > 0].mean(),
        "mean_iou": iou[seen].mean(),
        "fw_iou": (true_n[seen] / conf.sum() * iou[seen]).sum(),
    }


def rescore(samples: Path, annotations: Path) -> list[dict]:
    rows = []
    for run in RUNS:
        maps = sorted((samples / run).glob("*_label.png"))
        if not maps:
            raise SystemExit(f"{samples / run}: no *_label.png; write them first (see --help)")
        conf = np.zeros((CLASSES, CLASSES), dtype=np.int64)
        for path in maps:
            pred = np.asarray(Image.open(path))
            truth = np.asarray(Image.open(annotations / path.name.replace("_label.png", ".png")))
            keep = truth != VOID
            conf += np.bincount(truth[keep].astype(np.int64) * CLASSES + pred[keep], minlength=CLASSES**2).reshape(
                CLASSES, CLASSES
            )
        own = samples / run / "final_metrics.json"
        rows.append(
            {
                "run": run,
                "images": len(maps),
                **{k: round(float(v), 4) for k, v in figures(conf).items()},
                "towerlab_mean_iou": round(json.loads(own.read_text())["mean_iou"], 4) if own.is_file() else None,
            }
        )
    print("| run | images | pixel acc | mean acc | mean IU | f.w. IU | mean IU by towerlab eval |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['images']} | {r['pixel_accuracy']:.4f} | {r['mean_class_accuracy']:.4f} | "
            f"{r['mean_iou']:.4f} | {r['fw_iou']:.4f} | {r['towerlab_mean_iou']} |"
        )
    (samples / "rescored.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stages", nargs="?", help="a bench/fcn_stages.sh output folder (to write the label maps)")
    p.add_argument("samples", help="where the label maps go, or are (with --rescore)")
    p.add_argument("--rescore", action="store_true", help="only rescore label maps already written")
    a = p.parse_args()
    camvid = Path(os.environ.get("TOWERLAB_DATA", "../shared/data")) / "camvid"
    samples = Path(a.samples)
    if not a.rescore:
        if not a.stages:
            p.error("give the bench/fcn_stages.sh folder to write the label maps from")
        write(Path(a.stages), samples, camvid / "val")
    rescore(samples, camvid / "valannot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
