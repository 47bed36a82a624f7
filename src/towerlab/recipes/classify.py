"""What every image classifier recipe shares: cross-entropy, confusion-matrix evaluation, softmax prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from towerlab.dist import Dist, all_reduce_sum
from towerlab.metrics import ConfusionMatrix

MAIN_METRIC = ("accuracy", "max")


def folder_splits(cfg, shape: tuple[int, int, int]) -> tuple[tuple, tuple | None] | None:
    """An image folder's (training, validation or None) images at `shape` with their labels; None when the run
    reads a benchmark's own format (cfg.classes is empty)."""
    if not cfg.classes:
        return None
    from towerlab.data import folder

    train_pairs, val_pairs = folder.items(cfg.data, cfg.class_list())
    return folder.file_items(train_pairs, shape), folder.file_items(val_pairs, shape) if val_pairs is not None else None


def loss(model, batch, step=None):
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.float(), y), {}


@torch.no_grad()
def evaluate(model, loader, dist: Dist) -> dict[str, float]:
    """accuracy, mean class accuracy and mean loss over the whole split, summed across processes."""
    return evaluate_predictions(model, loader, dist)[0]


@torch.no_grad()
def evaluate_predictions(model, loader, dist: Dist) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """evaluate's metrics, and this process's items' probabilities [n, classes] and labels [n], on the host."""
    cm, loss_sum = None, torch.zeros((), dtype=torch.float64, device=dist.device)
    probs, labels = [], []
    for x, y in loader:
        logits = model(x).float()
        if cm is None:
            cm = ConfusionMatrix(logits.shape[1], dist.device)
        cm.update(logits.argmax(1), y)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        probs.append(logits.softmax(1))
        labels.append(y)
    if cm is None:  # this rank got no items (more processes than items)
        cm = ConfusionMatrix(model_num_classes(model), dist.device)
    cm.reduce(dist)
    metrics = cm.compute()
    n = cm.counts.sum().item()
    out = {
        "accuracy": metrics["accuracy"],
        "mean_class_accuracy": metrics["mean_class_accuracy"],
        "loss": all_reduce_sum(loss_sum, dist).item() / max(n, 1),
    }
    k = cm.n
    return (
        out,
        torch.cat(probs).cpu() if probs else torch.zeros(0, k),
        torch.cat(labels).cpu() if labels else torch.zeros(0, dtype=torch.int64),
    )


@torch.no_grad()
def model_num_classes(model) -> int:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].out_features


@torch.no_grad()
def predict(model, inputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities [N, classes]."""
    return model(inputs).float().softmax(1)
