"""Metrics from one confusion matrix, accumulated on the device and summed across processes.

A bincount confusion matrix (as in the torchvision references) gives classification accuracy and,
unchanged, the four segmentation metrics of the FCN paper: pixel accuracy, mean class accuracy,
mean IU and frequency-weighted IU.
"""

from __future__ import annotations

import torch

from towerlab.decide import decide  # noqa: F401 (the rule lives torch-free)
from towerlab.dist import Dist, all_reduce_sum


class ConfusionMatrix:
    """counts[t, p] = number of items of true class t predicted as p. Targets outside 0..n-1 are ignored."""

    def __init__(self, num_classes: int, device: torch.device, uncounted: tuple[int, ...] = ()):
        self.n, self.uncounted = num_classes, uncounted
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = pred.reshape(-1), target.reshape(-1)
        keep = (target >= 0) & (target < self.n)
        idx = target[keep] * self.n + pred[keep]
        self.counts += torch.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def reduce(self, dist: Dist) -> ConfusionMatrix:
        all_reduce_sum(self.counts, dist)
        return self

    def compute(self) -> dict[str, float]:
        return summarize(self.counts, self.uncounted)

    def class_iou(self) -> torch.Tensor:
        """IoU of every class (nan where a class is neither a target nor a prediction)."""
        c = self.counts.double()
        return c.diag() / (c.sum(1) + c.sum(0) - c.diag())


def summarize(counts: torch.Tensor, uncounted: tuple[int, ...] = ()) -> dict[str, float]:
    """accuracy (= pixel accuracy), mean class accuracy, mean IoU, frequency-weighted IoU.

    Classes absent from both targets and predictions are left out of the means (as in the FCN code's nanmean).
    `uncounted` classes (ADE20K's 0 = "other") are never targets and stay out of the means, but predicting
    them is still an error, as in the Scene Parsing benchmark's own evaluation.
    """
    c = counts.double()
    tp, true_n, pred_n = c.diag(), c.sum(1), c.sum(0)
    total = c.sum().clamp_min(1)
    union = true_n + pred_n - tp
    class_acc = tp / true_n  # nan where a class has no targets
    iou = tp / union
    freq = true_n / total
    valid = union > 0
    valid[list(uncounted)] = False
    return {
        "accuracy": (tp.sum() / total).item(),
        "mean_class_accuracy": class_acc[true_n > 0].mean().item() if (true_n > 0).any() else float("nan"),
        "mean_iou": iou[valid].mean().item() if valid.any() else float("nan"),
        "fw_iou": (freq[valid] * iou[valid]).sum().item(),
    }


def _ranked(
    scores: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cumulative true and false positives at each distinct score, highest first (ties form one threshold); with
    weights, each positive counts its weight."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, t = scores[order].double(), targets[order].double()
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last item of each run of equal scores
    positive = t if weights is None else t * weights[order].double()
    return positive.cumsum(0)[last], (1 - t).cumsum(0)[last], s[last]


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Area under the precision-recall curve as a step sum: sum_n (R_n - R_{n-1}) P_n (scikit-learn's AP)."""
    tp, fp, _ = _ranked(scores, targets)
    if tp[-1] == 0:
        return float("nan")
    precision, recall = tp / (tp + fp), tp / tp[-1]
    steps = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((steps * precision).sum())


def roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Area under the ROC curve by the trapezoidal rule over distinct thresholds."""
    tp, fp, _ = _ranked(scores, targets)
    if tp[-1] == 0 or fp[-1] == 0:
        return float("nan")
    tpr = torch.cat([tp.new_zeros(1), tp / tp[-1]])
    fpr = torch.cat([fp.new_zeros(1), fp / fp[-1]])
    return float(torch.trapezoid(tpr, fpr))


def best_f1_threshold(scores: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(threshold, F1) where F1 is highest; predict positive when score >= threshold."""
    tp, fp, thresholds = _ranked(scores, targets)
    if tp[-1] == 0:
        return float("nan"), float("nan")
    f1 = 2 * tp / (tp + fp + tp[-1])  # 2TP / (2TP + FP + FN), with FN = P - TP
    k = int(torch.argmax(f1))
    return float(thresholds[k]), float(f1[k])


def pixel_auroc(scores: torch.Tensor, masks: torch.Tensor) -> float:
    """ROC AUC over every pixel whose label is known (masks: 0, 1, or 255 where nobody labelled the pixel)."""
    known = masks <= 1
    return roc_auc(scores[known].float(), masks[known].float())


def aupro(scores: torch.Tensor, masks: torch.Tensor, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to a false positive rate of fpr_limit, divided by fpr_limit
    (Bergmann et al. 2021, MVTec AD; anomalib's AUPRO). scores, masks: [N, H, W]; masks 0, 1 or 255 (unknown)."""
    weights, regions = region_weights(masks)
    known = masks <= 1
    return aupro_of_pixels(scores[known], masks[known], weights[known], regions, fpr_limit)


def region_weights(masks: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(1 / the size of its connected defect region for every defect pixel, 0 elsewhere; the number of regions):
    regions are 8-connected, per image, as OpenCV's connected components (anomalib's) find them."""
    import numpy as np
    from scipy import ndimage

    weights = torch.zeros(masks.shape, dtype=torch.float32)
    regions = 0
    for i, mask in enumerate(masks):
        labels, n = ndimage.label(mask.cpu().numpy() == 1, structure=np.ones((3, 3)))
        if n:
            inverse_size = 1.0 / np.bincount(labels.ravel())
            inverse_size[0] = 0.0  # background: no weight
            weights[i] = torch.from_numpy(inverse_size[labels].astype(np.float32))
            regions += n
    return weights, regions


def aupro_of_pixels(
    scores: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, regions: int, fpr_limit: float = 0.3
) -> float:
    """AUPRO from known pixels (1-D: score, label 0/1, region_weights' weight) and the number of regions.

    Each region counts equally, whatever its size: at a threshold, the overlap is the mean over regions of the
    share of the region's pixels predicted defective, and the false positive rate the share of defect-free pixels
    predicted defective. The mean over regions is a weighted count (each pixel of region r weighs 1 / (|r| x
    regions)), so the exact curve comes from one sort of the pixels."""
    if regions == 0 or not (labels == 0).any():
        return float("nan")
    pro, fp, _ = _ranked(scores.float(), labels.float(), weights.double() / regions)
    fpr = torch.cat([fp.new_zeros(1), fp / fp[-1]])
    pro = torch.cat([pro.new_zeros(1), pro])
    k = int(torch.searchsorted(fpr, torch.tensor([fpr_limit], dtype=fpr.dtype), right=True)[0])
    if k < len(fpr):  # cut the curve at fpr_limit, interpolating the overlap there
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        at = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        fpr = torch.cat([fpr[:k], fpr.new_tensor([fpr_limit])])
        pro = torch.cat([pro[:k], at.reshape(1)])
    return float(torch.trapezoid(pro, fpr) / fpr_limit)
