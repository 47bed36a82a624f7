"""Metrics from one confusion matrix, accumulated on the device and summed across processes.

A bincount confusion matrix (as in the torchvision references) gives classification accuracy and,
unchanged, the four segmentation metrics of the FCN paper: pixel accuracy, mean class accuracy,
mean IU and frequency-weighted IU.
"""

from __future__ import annotations

import torch

from towerlab.dist import Dist, all_reduce_sum


class ConfusionMatrix:
    """counts[t, p] = number of items of true class t predicted as p. Targets outside 0..n-1 are ignored."""

    def __init__(self, num_classes: int, device: torch.device):
        self.n = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = pred.reshape(-1), target.reshape(-1)
        keep = (target >= 0) & (target < self.n)
        idx = target[keep] * self.n + pred[keep]
        self.counts += torch.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def reduce(self, dist: Dist) -> "ConfusionMatrix":
        all_reduce_sum(self.counts, dist)
        return self

    def compute(self) -> dict[str, float]:
        return summarize(self.counts)


def summarize(counts: torch.Tensor) -> dict[str, float]:
    """accuracy (= pixel accuracy), mean class accuracy, mean IoU, frequency-weighted IoU.

    Classes absent from both targets and predictions are left out of the means (as in the FCN code's nanmean).
    """
    c = counts.double()
    tp, true_n, pred_n = c.diag(), c.sum(1), c.sum(0)
    total = c.sum().clamp_min(1)
    union = true_n + pred_n - tp
    class_acc = tp / true_n  # nan where a class has no targets
    iou = tp / union
    freq = true_n / total
    valid = union > 0
    return {
        "accuracy": (tp.sum() / total).item(),
        "mean_class_accuracy": class_acc[true_n > 0].mean().item() if (true_n > 0).any() else float("nan"),
        "mean_iou": iou[valid].mean().item() if valid.any() else float("nan"),
        "fw_iou": (freq[valid] * iou[valid]).sum().item(),
    }
