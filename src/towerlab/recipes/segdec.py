"""segdec: SegDecNet surface-defect detection (segmentation net + decision net, two-stage), on KolektorSDD.

Tabernik, Šela, Skvarč, Skočaj, "Segmentation-Based Deep-Learning Approach for Surface-Defect Detection" (2019).

    towerlab train segdec --data DIR                         # the paper's sequence: seg stage, then dec stage
    towerlab train segdec --data DIR --stage joint           # both losses at once
    towerlab train segdec --data DIR --stage dec --init-from runs/segdec-.../seg
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from towerlab import metrics as M
from towerlab.data import defects, resolve_dir
from towerlab.data.augment import per_image_standardization, to_float
from towerlab.data.images import check_output, fit_to, read_image, write_image
from towerlab.data.loader import BalancedLoader, Data, TensorLoader
from towerlab.data.segmentation import red_overlay
from towerlab.data.stream import StreamReader, choose
from towerlab.dist import Dist, all_gather_rows, all_reduce_sum, print0
from towerlab.errors import DataError
from towerlab.recipes.configs import FOLDER_FIELDS, SegdecConfig
from towerlab.strategy import unwrap

NAME = "segdec"
MAIN_METRIC = ("ap", "max")
CLASSES = ["ok", "defect"]


Config = SegdecConfig  # in recipes/configs.py, which imports no torch: a quick --help


def conv(cin: int, cout: int, k: int) -> nn.Sequential:
    """conv k x k 'same' -> batch norm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SegDecNet(nn.Module):
    """forward(x) -> (mask logits [N,1,H/8,W/8], decision logit [N])."""

    def __init__(self, channels: int = 1, features: int = 1024, stage: str = "joint", pos_weight: float = 1.0):
        super().__init__()
        # the segmentation loss's weight on a defective cell: a buffer so that it lives on the model's device (no
        # tensor made and copied to the device every step), not persistent (a setting, not in checkpoints)
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)), persistent=False)
        pool = nn.MaxPool2d(2)
        self.seg = nn.Sequential(
            conv(channels, 32, 5),
            conv(32, 32, 5),
            pool,
            conv(32, 64, 5),
            conv(64, 64, 5),
            conv(64, 64, 5),
            pool,
            *(conv(64, 64, 5) for _ in range(4)),
            pool,
            conv(64, features, 15),
        )
        self.mask = nn.Conv2d(features, 1, 1)
        self.dec = nn.Sequential(
            nn.MaxPool2d(2), conv(features + 1, 8, 5), nn.MaxPool2d(2), conv(8, 16, 5), nn.MaxPool2d(2), conv(16, 32, 5)
        )
        self.fc = nn.Linear(66, 1)  # global max and average of the 32 channels and of the mask
        # The decision starts as the segmentation's own score (the mask's highest logit, input 64) and learns what
        # to add to it: with a random start, the decision stage lost AP that the segmentation had (0.931 vs 0.976)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[0, 64] = 1.0
            self.fc.bias.zero_()
        self.stage = stage
        for part in self.frozen():
            part.requires_grad_(False)

    def frozen(self) -> list[nn.Module]:
        """Parts that this stage does not train: the decision net while segmenting, the segmentation after."""
        return {"seg": [self.dec, self.fc], "dec": [self.seg, self.mask]}.get(self.stage, [])

    def train(self, mode: bool = True):
        super().train(mode)
        for part in self.frozen():  # frozen batch norms keep their running statistics
            part.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.seg(x)
        mask = self.mask(feats)
        if self.stage == "seg":  # the decision net is not trained yet: skip it
            return mask, mask.new_zeros(mask.shape[0])
        h = self.dec(torch.cat([feats, mask], 1))
        pooled = torch.cat([h.amax((2, 3)), h.mean((2, 3)), mask.amax((2, 3)), mask.mean((2, 3))], 1)
        return mask, self.fc(pooled).squeeze(1)

    def score(self, mask: torch.Tensor, decision: torch.Tensor) -> torch.Tensor:
        """P(defect) per image: the decision net's, or before it is trained the mask's highest pixel probability."""
        return mask.float().amax((1, 2, 3)).sigmoid() if self.stage == "seg" else decision.float().sigmoid()


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    stage = "seg" if cfg.stage == "seg+dec" else cfg.stage
    return SegDecNet(cfg.channels, cfg.feature_channels, stage, cfg.seg_pos_weight)


def stages(cfg: Config) -> list[tuple[str, Config]]:
    """seg+dec is two runs in sequence (run_dir/seg, then run_dir/dec started from its last weights, the paper's
    sequence: with --val-fraction 0 the validation split is the held-out fold, where the seg stage's best weights
    would be chosen on the test split)."""
    if cfg.stage != "seg+dec":
        return [("", cfg)]
    dec = replace(cfg, stage="dec", epochs=cfg.dec_epochs or cfg.epochs, init_checkpoint="last")
    return [("seg", replace(cfg, stage="seg")), ("dec", dec)]


# -- data ----------------------------------------------------------------------------------------------------
def build_data(cfg: Config, dist: Dist) -> Data:
    """The test split is the data set's own (KolektorSDD2's test/, a folder layout's test folders), else the
    cross-validation fold cfg.fold; validation is a part of the other items held out by cfg.val_fraction (with
    --val-fraction 0, the test split itself: the paper's protocol)."""
    root = resolve_dir(cfg.data, "kolektorsdd")
    found = defects.items_of(root, cfg.layout, {f: getattr(cfg, f) for f in FOLDER_FIELDS})
    items = {**found.items, **(found.test or {})}
    if found.test:
        train_names, fold_names = list(found.items), list(found.test)
    else:
        parts = defects.folds(list(items), cfg.folds)
        fold_names = parts[cfg.fold]
        train_names = [n for i, part in enumerate(parts) if i != cfg.fold for n in part]
    size = (cfg.height, cfg.width)
    train_rows, fold_rows = defects.rows_of(train_names, items), defects.rows_of(fold_names, items)
    if not train_rows or not fold_rows:
        raise DataError(f"no images in the chosen fold of {root}")
    probe = [defects.DefectItems(r, cfg.channels, size) for r in (train_rows, fold_rows)]
    choice = choose(cfg.loader, cfg.data_memory, probe)
    print0(choice.line, dist=dist, file=sys.stderr)
    owners = [n for n in train_names for _ in items[n]]  # an item's images stay on one side of the validation carve
    if choice.stream:
        splits = _streamed(cfg, train_rows, fold_rows, owners, dist)
    else:
        splits = _decoded(cfg, root, train_rows, fold_rows, owners)
    train, val, test, positive = splits
    options = dict(on_device=cfg.data_on_device, channels_last=cfg.channels_last)
    kwargs = dict(seed=cfg.seed, transform=train_transform(cfg), **options)
    train_data, train_reader = (None, train) if choice.stream else (train, None)
    if cfg.balanced and 0 < positive.sum() < len(positive):
        loader = BalancedLoader(train_data, cfg.batch_size, dist, positive=positive, reader=train_reader, **kwargs)
    else:
        loader = TensorLoader(train_data, cfg.batch_size, dist, train=True, reader=train_reader, **kwargs)

    def evaluation(split):
        if split is None:
            return None
        data, reader = (None, split) if choice.stream else (split, None)
        return TensorLoader(data, cfg.batch_size, dist, train=False, transform=eval_transform, reader=reader, **options)

    return Data(loader, evaluation(val), test=evaluation(test), held_out=bool(cfg.val_fraction))


def _decoded(cfg: Config, root: Path, train_rows: list, fold_rows: list, owners: list):
    """(train, val, test, positive): the splits decoded into memory, tensors (images, masks, labels)."""
    size = (cfg.height, cfg.width)
    train = defects.load_rows(root, train_rows, cfg.channels, size)
    fold = defects.load_rows(root, fold_rows, cfg.channels, size)
    val, test = fold, None
    if cfg.val_fraction:
        keep, held = defects.hold_out_items(owners, train[2], cfg.val_fraction)
        train, val, test = _rows(train, keep), _rows(train, held), fold
    if cfg.dilate > 1:
        train = (train[0], defects.dilate(train[1], cfg.dilate), train[2])
    return train, val, test, train[2] > 0


def _streamed(cfg: Config, train_rows: list, fold_rows: list, owners: list, dist: Dist):
    """(train, val, test, positive): the same splits as `_decoded`, as stream readers of the items' files."""
    size = (cfg.height, cfg.width)

    def reader(items):
        return StreamReader(items, cfg.workers, skip_bad=cfg.skip_bad_files, pin=dist.device.type == "cuda")

    whole = defects.DefectItems(train_rows, cfg.channels, size, dilate=cfg.dilate)
    labels = whole.labels()
    fold = defects.DefectItems(fold_rows, cfg.channels, size)
    keep = torch.arange(len(whole))
    val, test = reader(fold), None
    if cfg.val_fraction:
        keep, held = defects.hold_out_items(owners, labels, cfg.val_fraction)
        plain = defects.DefectItems(train_rows, cfg.channels, size)  # validation masks are never dilated
        val, test = reader(plain.subset(held)), reader(fold)
    return reader(whole.subset(keep)), val, test, labels[keep] > 0


def _rows(split: tuple, index: torch.Tensor) -> tuple:
    return tuple(t[index] for t in split)


def prepare(cfg: Config, images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,C,H,W] -> model input: each image standardised (zero mean, unit variance)."""
    return per_image_standardization(to_float(images))


def eval_transform(x: torch.Tensor, mask: torch.Tensor, label: torch.Tensor):
    return prepare(None, x), mask.float(), label


def train_transform(cfg: Config):
    def transform(x: torch.Tensor, mask: torch.Tensor, label: torch.Tensor):
        x, mask = x.float(), mask.float()
        if cfg.flip:  # the same mirroring for image and mask: flip them as one tensor
            both = torch.cat([x, mask], 1)
            for dim in (-1, -2):
                flip = torch.rand(both.shape[0], device=both.device) < 0.5
                both = torch.where(flip[:, None, None, None], both.flip(dim), both)
            x, mask = both[:, :-1], both[:, -1:]
        return per_image_standardization(x / 255.0), mask, label

    return transform


def input_shape(cfg: Config) -> tuple[int, int, int]:
    return (cfg.channels, cfg.height, cfg.width)


def class_names(cfg: Config) -> list[str]:
    return CLASSES


# -- loss, metrics, outputs -------------------------------------------------------------------------------------
def loss(model, batch, step=None):
    x, mask, label = batch
    mask_logits, decision = model(x)
    target = F.adaptive_max_pool2d(mask, mask_logits.shape[-2:])  # a defect anywhere in a cell makes it positive
    net = unwrap(model, SegDecNet)
    known = (target <= 1).float()  # a defective image without a mask (UNKNOWN) trains the decision only
    # defective cells weighted up (pos_weight), the mean still over every known cell: at 1.0 the plain mean
    seg_loss = F.binary_cross_entropy_with_logits(
        mask_logits.float(), target.clamp(max=1), weight=known, pos_weight=net.pos_weight.float(), reduction="sum"
    ) / known.sum().clamp_min(1)
    dec_loss = F.binary_cross_entropy_with_logits(decision.float(), label)
    total = {"seg": seg_loss, "dec": dec_loss, "joint": seg_loss + dec_loss}[net.stage]
    return total, {"seg_loss": seg_loss.detach(), "dec_loss": dec_loss.detach()}


@torch.no_grad()
def evaluate(model, loader, dist: Dist, operating: float | None = None) -> dict[str, float]:
    """Image level: AP, ROC AUC (also as anomalib's image_auroc), errors at 0.5 and at the best-F1 threshold
    (F1-max), and at `operating`, a threshold chosen elsewhere, when given. Pixel level: Dice and IoU on the 1/8
    grid; pixel AUROC and AUPRO (anomalib's definitions) of the heat map at the input size."""
    net = unwrap(model, SegDecNet)
    scores, targets, heat, truth_maps = [], [], [], []
    pix = torch.zeros(3, dtype=torch.float64, device=dist.device)  # true positive, predicted, actual pixels
    for x, mask, label in loader:
        mask_logits, decision = net(x)
        scores.append(net.score(mask_logits, decision))
        targets.append(label)
        cells = F.adaptive_max_pool2d(mask, mask_logits.shape[-2:])
        known = cells <= 1  # pixels of an image without a mask count nowhere
        pred, truth = (mask_logits.float() > 0) & known, (cells > 0.5) & known
        pix += torch.stack([(pred & truth).sum(), pred.sum(), truth.sum()]).double()
        heat.append(F.interpolate(mask_logits.float(), size=x.shape[-2:], mode="bilinear").sigmoid()[:, 0])
        truth_maps.append(mask[:, 0].to(torch.uint8))  # 0, 1, or 255 (UNKNOWN) at the input size
    s = all_gather_rows(torch.cat(scores) if scores else torch.zeros(0, device=dist.device), dist)
    t = all_gather_rows(torch.cat(targets) if targets else torch.zeros(0, device=dist.device), dist)
    all_reduce_sum(pix, dist)
    return {
        **image_metrics(s, t, operating),
        "dice": float(2 * pix[0] / (pix[1] + pix[2]).clamp_min(1)),
        "iou": float(pix[0] / (pix[1] + pix[2] - pix[0]).clamp_min(1)),
        **pixel_metrics(heat, truth_maps, dist),
    }


def pixel_metrics(heat: list[torch.Tensor], truth: list[torch.Tensor], dist: Dist) -> dict[str, float]:
    """pixel AUROC and AUPRO over every process's images: each process finds its images' defect regions, then the
    known pixels (score, label, region weight) of all are gathered, since each curve needs every pixel."""
    empty = torch.zeros(0)
    h, m = (torch.cat(heat).cpu(), torch.cat(truth).cpu()) if heat else (empty, empty.to(torch.uint8))
    weights, regions = M.region_weights(m)
    known = m <= 1
    local = torch.stack([h[known].float(), m[known].float(), weights[known]], 1) if heat else torch.zeros(0, 3)
    pixels = all_gather_rows(local.to(dist.device), dist)
    count = torch.tensor([float(regions)], dtype=torch.float64, device=dist.device)
    all_reduce_sum(count, dist)
    scores, labels, w = pixels.unbind(1) if len(pixels) else (empty, empty, empty)
    if not len(scores):
        return {"pixel_auroc": float("nan"), "pixel_aupro": float("nan")}
    return {
        "pixel_auroc": M.roc_auc(scores, labels),
        "pixel_aupro": M.aupro_of_pixels(scores, labels, w, int(count.item())),
    }


def evaluate_at(model, loader, dist: Dist, validation: dict[str, float]) -> dict[str, float]:
    """A test split's metrics, its decisions taken at the validation's best-F1 threshold (the operating point)."""
    return evaluate(model, loader, dist, operating=validation["best_f1_threshold"])


def image_metrics(scores: torch.Tensor, targets: torch.Tensor, operating: float | None = None) -> dict[str, float]:
    threshold, f1 = M.best_f1_threshold(scores, targets)
    out = {
        "ap": M.average_precision(scores, targets),
        "auc": M.roc_auc(scores, targets),
        "best_f1": f1,
        "best_f1_threshold": threshold,
    }
    points = [("0.5", 0.5), ("best_f1", threshold)]
    if operating is not None:
        out["operating_threshold"] = float(operating)
        points.append(("operating", float(operating)))
    out["image_auroc"], out["f1_max"] = out["auc"], f1  # anomalib's names for the same figures
    for name, th in points:
        pred = scores >= th
        out[f"fp@{name}"] = int((pred & (targets == 0)).sum())
        out[f"fn@{name}"] = int((~pred & (targets == 1)).sum())
    out["accuracy@0.5"] = float(((scores >= 0.5) == (targets == 1)).double().mean())
    if operating is not None:
        tp = int(((scores >= operating) & (targets == 1)).sum())
        out["f1@operating"] = 2 * tp / max(1, 2 * tp + out["fp@operating"] + out["fn@operating"])
        out["accuracy@operating"] = float(((scores >= operating) == (targets == 1)).double().mean())
    return out


@torch.no_grad()
def predict(model, inputs: torch.Tensor) -> torch.Tensor:
    """[N, 2]: P(ok), P(defect)."""
    net = unwrap(model, SegDecNet)
    p = net.score(*net(inputs))
    return torch.stack([1 - p, p], 1)


@torch.no_grad()
def heatmaps(model, inputs: torch.Tensor) -> torch.Tensor:
    """[N, H, W]: the segmentation net's defect probability per pixel, at the inputs' size."""
    mask_logits, _ = unwrap(model, SegDecNet)(inputs)
    return F.interpolate(mask_logits.float().sigmoid(), size=inputs.shape[-2:], mode="bilinear")[:, 0]


def predict_files(model, cfg: Config, paths: list[str], out_dir: str | None) -> list[dict]:
    """Defect probability per image, and <stem>_defect.png: the predicted mask in red over the image."""
    net = unwrap(model, SegDecNet)
    results = []
    for path in map(Path, paths):
        image = read_image(path, cfg.channels)
        x = prepare(cfg, fit_to(image[None], input_shape(cfg)))
        mask_logits, decision = net(x)
        p = float(net.score(mask_logits, decision)[0])
        heat = F.interpolate(mask_logits.float().sigmoid(), size=image.shape[1:], mode="bilinear")[0, 0]
        folder = Path(out_dir) if out_dir else path.parent
        folder.mkdir(parents=True, exist_ok=True)
        overlay_png = check_output(folder / f"{path.stem}_defect.png")
        write_image(red_overlay(image, heat), overlay_png)
        threshold = cfg.threshold or 0.5  # infer.load resolves 0 to the run's best-F1 point
        results.append(
            {
                "file": str(path),
                "class": CLASSES[int(p >= threshold)],
                "probability": p,
                "threshold": threshold,
                "overlay_png": str(overlay_png),
            }
        )
    return results


@torch.no_grad()
def examples(model, loader, n: int = 4) -> torch.Tensor:
    """uint8 [n,3,H,W]: predicted masks over the first validation images (defective ones first), for TensorBoard."""
    x, mask, label = next(iter(loader))
    order = torch.argsort(label, descending=True, stable=True)[:n]
    x = x[order]
    mask_logits, _ = unwrap(model, SegDecNet)(x)
    heat = F.interpolate(mask_logits.float().sigmoid(), size=x.shape[-2:], mode="bilinear")[:, 0]
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    images = ((x - lo) / (hi - lo).clamp_min(1e-6) * 255).round().to(torch.uint8).cpu()
    return torch.stack([red_overlay(im, h) for im, h in zip(images, heat)])
