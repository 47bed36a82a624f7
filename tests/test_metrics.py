import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, jaccard_score

from towerlab.dist import Dist
from towerlab.metrics import ConfusionMatrix


@pytest.mark.parametrize("seed", range(5))
def test_against_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n_cls = 6
    target = rng.integers(0, n_cls, 500)
    pred = np.where(rng.random(500) < 0.6, target, rng.integers(0, n_cls, 500))
    cm = ConfusionMatrix(n_cls, torch.device("cpu"))
    cm.update(torch.from_numpy(pred[:200]), torch.from_numpy(target[:200]))
    cm.update(torch.from_numpy(pred[200:]), torch.from_numpy(target[200:]))
    assert np.array_equal(cm.counts.numpy(), confusion_matrix(target, pred, labels=range(n_cls)))
    m = cm.reduce(Dist()).compute()
    assert m["accuracy"] == pytest.approx(accuracy_score(target, pred))
    assert m["mean_class_accuracy"] == pytest.approx(balanced_accuracy_score(target, pred))
    assert m["mean_iou"] == pytest.approx(jaccard_score(target, pred, average="macro"))
    per_class = jaccard_score(target, pred, average=None)
    freq = np.bincount(target, minlength=n_cls) / len(target)
    assert m["fw_iou"] == pytest.approx((freq * per_class).sum())


def test_ignored_targets_do_not_count():
    cm = ConfusionMatrix(3, torch.device("cpu"))
    cm.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 255, 2, -1]))
    assert cm.counts.sum() == 2 and cm.compute()["accuracy"] == 1.0
