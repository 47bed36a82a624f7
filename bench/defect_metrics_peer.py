"""towerlab's defect metrics against the peers' implementations on the same arrays: pixel AUROC against
torchmetrics' BinaryAUROC, AUPRO against anomalib's (its compute_pro and the normalised area, as AUPRO.compute
does), image AUROC and F1-max against torchmetrics. Random score maps over real-looking masks (several regions per
image, ties in the scores, some defect-free images), seeds 0..N-1.

    pip install --target /tmp/peer --no-deps anomalib torchmetrics lightning-utilities
    PYTHONPATH=/tmp/peer python bench/defect_metrics_peer.py [--seeds 5] [--out bench/out/defect_metrics_peer.json]

anomalib's package imports half the world (lightning, kornia, OpenCV); only its aupro.py is loaded here, with its
figure and connected-component imports stood in for (connected components by SciPy, 8-connected as OpenCV's).
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from towerlab import metrics as M


def anomalib_aupro_class():
    """anomalib.metrics.aupro.AUPRO, loaded from its file with its plotting and CCA imports stood in for."""
    import importlib.util

    spec = importlib.util.find_spec("anomalib")
    if spec is None:
        raise SystemExit("anomalib is not importable: pip install --target /tmp/peer --no-deps anomalib ...")
    path = Path(spec.submodule_search_locations[0]) / "metrics" / "aupro.py"
    figure = types.ModuleType("matplotlib.figure")
    figure.Figure = object
    pro = types.ModuleType("anomalib.metrics.pro")
    pro.connected_components_cpu = pro.connected_components_gpu = None
    stand_ins = {"matplotlib": types.ModuleType("matplotlib"), "matplotlib.figure": figure}
    stand_ins.update({"anomalib": types.ModuleType("anomalib"), "anomalib.metrics": types.ModuleType("m")})
    stand_ins["anomalib.metrics.pro"] = pro
    base, utils = types.ModuleType("anomalib.metrics.base"), types.ModuleType("anomalib.metrics.utils")
    base.AnomalibMetric, utils.plot_metric_curve = type("AnomalibMetric", (), {}), None
    stand_ins.update({"anomalib.metrics.base": base, "anomalib.metrics.utils": utils})
    saved = {k: sys.modules.get(k) for k in stand_ins}
    sys.modules.update(stand_ins)
    try:
        namespace: dict = {"__name__": "anomalib.metrics.aupro", "__package__": "anomalib.metrics"}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return namespace["_AUPRO"]  # the metric itself; AUPRO only adds anomalib's field plumbing


def anomalib_aupro(scores: torch.Tensor, masks: torch.Tensor, limit: float = 0.3) -> float:
    from torchmetrics.utilities.compute import auc

    aupro = anomalib_aupro_class()
    cca = torch.zeros(masks.shape, dtype=torch.long)
    offset = 0
    for i, m in enumerate(masks):
        labels, n = ndimage.label(m.numpy() == 1, structure=np.ones((3, 3)))
        cca[i] = torch.from_numpy(np.where(labels > 0, labels + offset, 0))
        offset += n
    fpr, pro = aupro.compute_pro(types.SimpleNamespace(fpr_limit=torch.tensor(limit)), cca, scores)
    return float(auc(fpr, pro, reorder=True) / fpr[-1])


def case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    n, h, w = 24, 48, 32
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(0, n, 2):  # every other image has defects: 1-3 blobs and scratches
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            masks[i, y : y + rng.integers(1, 8), x : x + rng.integers(1, 8)] = 1
    noise = rng.random(masks.shape)
    scores = np.round(0.6 * noise + 0.4 * masks * rng.random(masks.shape), 3).astype(np.float32)  # ties
    labels = torch.tensor([float(m.any()) for m in masks])
    image_scores = torch.from_numpy(np.round(0.7 * rng.random(n) + 0.3 * labels.numpy() * rng.random(n), 2)).float()
    return torch.from_numpy(scores), torch.from_numpy(masks), image_scores, labels


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default="bench/out/defect_metrics_peer.json")
    args = p.parse_args()
    from torchmetrics.functional.classification import binary_auroc, binary_f1_score

    rows = []
    for seed in range(args.seeds):
        scores, masks, image_scores, labels = case(seed)
        f1_peer = max(float(binary_f1_score(image_scores, labels.long(), threshold=float(t))) for t in image_scores)
        rows.append(
            {
                "seed": seed,
                "pixel_auroc": (
                    M.pixel_auroc(scores, masks),
                    float(binary_auroc(scores.flatten(), masks.flatten().long())),
                ),
                "pixel_aupro": (M.aupro(scores, masks), anomalib_aupro(scores, masks)),
                "image_auroc": (M.roc_auc(image_scores, labels), float(binary_auroc(image_scores, labels.long()))),
                "f1_max": (M.best_f1_threshold(image_scores, labels)[1], f1_peer),
            }
        )
    keys = ("pixel_auroc", "pixel_aupro", "image_auroc", "f1_max")
    print("| seed | " + " | ".join(f"{k} towerlab / peer" for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['seed']} | " + " | ".join(f"{r[k][0]:.6f} / {r[k][1]:.6f}" for k in keys) + " |")
    worst = {k: max(abs(r[k][0] - r[k][1]) for r in rows) for k in keys}
    print("largest difference: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "largest_difference": worst}, indent=1))


if __name__ == "__main__":
    main()
