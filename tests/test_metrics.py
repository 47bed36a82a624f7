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


def _aupro_by_hand(scores, masks, limit=0.3):
    """The definition, threshold by threshold: the mean over regions of the share of each region's pixels at or
    above it, against the share of defect-free pixels at or above it; cut at `limit`, area / limit."""
    import numpy as np
    from scipy import ndimage

    s, m = scores.numpy(), masks.numpy()
    regions = []
    for i in range(len(m)):
        lab, n = ndimage.label(m[i] == 1, structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    negative = s[m == 0]
    points = [(0.0, 0.0)]
    for t in sorted(set(s[m <= 1].ravel().tolist()), reverse=True):
        points.append((float((negative >= t).mean()), float(np.mean([(s[i][r] >= t).mean() for i, r in regions]))))
    x, y = [], []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        x.append(x0), y.append(y0)
        if x1 > limit:
            x.append(limit), y.append(y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
            break
    else:
        x.append(points[-1][0]), y.append(points[-1][1])
    return np.trapezoid(y, x) / limit


def test_aupro_and_pixel_auroc_follow_their_definitions():
    """issue 48: AUPRO as MVTec AD / anomalib define it (each 8-connected region weighs the same, FPR cut at 0.3),
    pixel AUROC as scikit-learn computes it; unknown pixels (255) count nowhere. bench/defect_metrics_peer.py checks
    both against anomalib's and torchmetrics' own code on the same arrays."""
    import math

    import numpy as np
    from sklearn.metrics import roc_auc_score

    from towerlab import metrics as M

    rng = np.random.default_rng(0)
    masks = np.zeros((4, 20, 16), np.uint8)
    masks[0, 2:5, 3:8] = 1
    masks[0, 10:18, 10:12] = 1
    masks[0, 5, 8] = 1  # touches the first region diagonally: one region with it (8-connected)
    masks[2, 5:7, 5:7] = 1
    masks[3, 0:3, :] = 255
    scores = np.round(rng.random(masks.shape) * 0.7 + (masks == 1) * 0.3 * rng.random(masks.shape), 2)  # ties
    s, m = torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(masks)
    assert M.aupro(s, m) == pytest.approx(_aupro_by_hand(s, m), abs=1e-7)
    assert M.region_weights(m)[1] == 3
    known = masks <= 1
    assert M.pixel_auroc(s, m) == pytest.approx(roc_auc_score(masks[known], scores[known]), abs=1e-7)
    perfect = torch.where(m == 1, 1.0, 0.0)
    assert M.aupro(perfect, m) == pytest.approx(1.0) and M.pixel_auroc(perfect, m) == pytest.approx(1.0)
    assert math.isnan(M.aupro(s, torch.zeros_like(m)))  # no defect region: undefined, not 0
