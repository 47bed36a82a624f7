"""SegDecNet on KolektorSDD: the paper's 3-fold cross-validation split by item (Tabernik et al. 2019), the
segmentation stage then the decision stage on each fold, then a table of image-level AP / ROC AUC / errors per fold.

    TOWERLAB_DATA=../shared/data python bench/segdec_folds.py [--epochs 30] [--dec-epochs 4] [-- extra train flags]

Sizes are the paper's 1408x512 scaled like the data in ../shared/data (downscaled by 4): 352x128; a narrower
15x15 layer (--feature-channels 256) for a CPU. The paper's protocol: the held-out fold is each run's validation
split (--val-fraction 0; the recipe's default carves validation out of the training folds instead), so nothing is
chosen on it: the schedule is fixed and every figure is the LAST checkpoint's. Each part's score is written to
--samples/fold<k>.csv (`item,part,label,score`, label 1 = defective, item/part as named in the data folder), so the
AP can be recomputed (sklearn.metrics.average_precision_score(label, score)). A finished fold is read back, a cut-off
one continues (--auto-resume). Writes --out/summary.json.

--val-fraction 0.2 runs the recipe's own protocol instead (issue 48): a fifth of the training folds' items (by item,
both classes) is the validation split, the best checkpoint and the operating threshold are chosen on it, and the
held-out fold is the test split, scored at that threshold: the table then shows FP/FN at the operating threshold
(what predict and serve decide with) next to FP/FN at the fold's own best-F1 point (a threshold fitted to the
figures it is judged on), all from the checkpoint validation chose; the scores go to --samples/val<F>/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEYS = ("ap", "auc", "fp@0.5", "fn@0.5", "fp@best_f1", "fn@best_f1", "dice", "pixel_auroc", "pixel_aupro")
OPERATING = ("fp@operating", "fn@operating", "operating_threshold")  # with --val-fraction > 0


def train(out: Path, fold: int, args, extra: list[str]) -> float:
    if (out / "dec" / "final_metrics.json").is_file():
        return 0.0
    cmd = [
        sys.executable,
        "-m",
        "towerlab",
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
        str(args.epochs),
        "--dec-epochs",
        str(args.dec_epochs),
        "--eval-every-epochs",
        "5",
        "--fold",
        str(fold),
        "--val-fraction",
        str(args.val_fraction),
        "--out",
        str(out),
        "--auto-resume",
        "--no-report",
        *extra,
    ]
    print("$ " + " ".join(cmd[2:]), flush=True)
    t0 = time.process_time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.process_time() - t0


def part_scores(run: Path, checkpoint: str = "last") -> list[dict]:
    """item, part, label and P(defect) of every part in the run's held-out fold, from `checkpoint`, in the
    order the recipe reads them (its fold's items sorted, each item's parts sorted)."""
    import torch

    from towerlab import infer
    from towerlab.data import defects
    from towerlab.dist import Dist

    loaded = infer.load(run, checkpoint)
    cfg = loaded.cfg
    items = defects.items_of(Path(cfg.data), cfg.layout).items
    names = [
        (item, image.stem) for item in defects.folds(list(items), cfg.folds)[cfg.fold] for image, *_ in items[item]
    ]
    scores, labels = [], []
    with torch.no_grad():
        data = loaded.recipe.build_data(cfg, Dist())
        for x, _, label in data.test if cfg.val_fraction else data.val:
            scores += loaded.recipe.predict(loaded.model, x)[:, 1].tolist()
            labels += label.int().tolist()
    return [{"item": i, "part": p, "label": y, "score": round(s, 6)} for (i, p), y, s in zip(names, labels, scores)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=float, default=30.0, help="epochs of the segmentation stage (the recipe's default)")
    p.add_argument("--dec-epochs", type=float, default=4.0, help="epochs of the decision stage")
    p.add_argument(
        "--out",
        default="",
        help="default: bench/out/segdec_folds/seg<E>-dec<D>[-<extra flags>] (a "
        "finished fold is read back, so each schedule has its own folder)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="0: the paper's protocol (the fold validates, last checkpoint); F > 0: validation carved from the "
        "training folds chooses the checkpoint and the operating threshold, the fold is the test split",
    )
    p.add_argument("--samples", default="docs/samples/segdec")
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]
    # the folder names every setting that changes the runs: a finished fold is read back, never another schedule's
    flags = "".join("-" + re.sub(r"[^A-Za-z0-9.]+", "", a) for a in extra)
    if args.val_fraction:
        flags += f"-val{args.val_fraction:g}"
        args.samples = str(Path(args.samples) / f"val{args.val_fraction:g}")
    args.out = args.out or f"bench/out/segdec_folds/seg{args.epochs:g}-dec{args.dec_epochs:g}{flags}"
    keys = (*KEYS, *OPERATING) if args.val_fraction else KEYS
    if not os.environ.get("TOWERLAB_DATA"):
        sys.exit("set TOWERLAB_DATA to the shared data folder (../shared/data)")
    rows = []
    for fold in range(3):
        run = Path(args.out) / f"fold{fold}"
        cpu = train(run, fold, args, extra)
        seg = json.loads((run / "seg" / "final_metrics.json").read_text())
        dec = json.loads((run / "dec" / "final_metrics.json").read_text())
        if args.val_fraction:  # the held-out fold's figures, for the checkpoint validation chose
            seg, dec = {**seg, **seg["best"]["test"]}, {**dec, **dec["best"]["test"]}
        scores = part_scores(run / "dec", "best" if args.val_fraction else "last")
        Path(args.samples).mkdir(parents=True, exist_ok=True)
        with open(Path(args.samples) / f"fold{fold}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["item", "part", "label", "score"])
            w.writeheader()
            w.writerows(scores)
        rows.append(
            {
                "fold": fold,
                **{k: dec.get(k, float("nan")) for k in keys},  # runs before issue 48 lack the pixel figures
                "seg_stage_ap": seg["ap"],
                "parts": len(scores),
                "cpu_s_this_call": cpu,
                "wall_s": seg["wall_s"] + dec["wall_s"],
            }
        )
    mean = {"fold": "mean", **{k: statistics.mean(r[k] for r in rows) for k in (*keys, "seg_stage_ap", "wall_s")}}
    head = "AP | ROC AUC | FP@0.5 | FN@0.5 | FP@best F1 | FN@best F1 | Dice | pixel AUROC | pixel AUPRO"
    head += " | FP@operating | FN@operating | operating threshold" if args.val_fraction else ""
    print(f"| fold | {head} | AP after seg stage | parts | wall s |")
    print("|---" * (len(keys) + 4) + "|")
    for r in [*rows, mean]:
        print(
            f"| {r['fold']} | "
            + " | ".join(f"{r[k]:.4g}" for k in (*keys, "seg_stage_ap"))
            + f" | {r.get('parts', '')} | {r['wall_s']:.0f} |"
        )
    report = {"command": " ".join(["python", *sys.argv]), "rows": rows, "mean": mean}
    (Path(args.out) / "summary.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
