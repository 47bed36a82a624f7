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


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(4))
def test_segmentation_label_maps_with_ignore_and_uncounted(seed):
    """Random label maps: pixels labelled 255 are ignored; class 0 (ADE20K's 'other') is never a target and
    stays out of the means, yet predicting it is an error, as in the Scene Parsing evaluation."""
    rng = np.random.default_rng(seed)
    target = rng.integers(1, 7, (4, 30, 40))
    target[rng.random(target.shape) < 0.1] = 255
    pred = np.where(rng.random(target.shape) < 0.5, target, rng.integers(0, 7, target.shape))
    pred[pred == 255] = 0
    cm = ConfusionMatrix(7, torch.device("cpu"), uncounted=(0,))
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    m = cm.compute()
    keep = target != 255
    t, p = target[keep], pred[keep]
    assert m["accuracy"] == pytest.approx(accuracy_score(t, p))
    iou = jaccard_score(t, p, labels=range(1, 7), average=None)
    assert m["mean_iou"] == pytest.approx(iou.mean())
    assert m["mean_class_accuracy"] == pytest.approx(balanced_accuracy_score(t, p))
    freq = np.bincount(t, minlength=7)[1:] / len(t)
    assert m["fw_iou"] == pytest.approx((freq * iou).sum())


@pytest.mark.parametrize("seed", range(6))
def test_ap_auc_f1_against_scikit_learn(seed):
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    from towerlab.metrics import average_precision, best_f1_threshold, roc_auc

    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.2).astype(int)
    s = np.round(np.clip(y * 0.3 + rng.random(300), 0, 1), 1 if seed % 2 else 6)  # coarse scores: many ties
    st, yt = torch.from_numpy(s), torch.from_numpy(y)
    assert average_precision(st, yt) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert roc_auc(st, yt) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    threshold, f1 = best_f1_threshold(st, yt)
    assert f1 == pytest.approx(f1_score(y, s >= threshold))
    assert f1 >= max(f1_score(y, s >= t) for t in np.unique(s)) - 1e-12
