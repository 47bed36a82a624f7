"""fcn: what FCN-32s, FCN-16s and FCN-8s share (Long, Shelhamer, Darrell, "Fully Convolutional Networks for
Semantic Segmentation", CVPR 2015 / PAMI 2016): the VGG16 net made fully convolutional, skip scores, in-network
upsampling, and the segmentation data, loss, metrics and outputs. The registered recipes fcn32s, fcn16s and fcn8s
are this module at output strides 32, 16 and 8 (`variant`).

    towerlab train fcn32s --dataset camvid --data DIR [--backbone-weights vgg16.pth]
    towerlab train fcn16s --dataset camvid --data DIR --init-from runs/fcn32s-...   # the paper's staged training
    towerlab train fcn8s  --dataset camvid --data DIR --init-from runs/fcn16s-...
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from towerlab import checkpoint
from towerlab.data import resolve_dir
from towerlab.data import segmentation as seg
from towerlab.data.augment import item_scale_crop_flip, normalize, paired_scale_crop_flip
from towerlab.data.images import check_output, read_image, write_image, write_label
from towerlab.data.loader import Data, PaddedLoader
from towerlab.data.stream import StreamReader, choose
from towerlab.dist import Dist, all_reduce_sum, print0
from towerlab.errors import ConfigError
from towerlab.metrics import ConfusionMatrix
from towerlab.recipes.configs import FcnConfig, fcn_config
from towerlab.strategy import unwrap

MAIN_METRIC = ("mean_iou", "max")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet statistics, which its VGG16 expects
FOLDERS = FcnConfig.FOLDERS  # $TOWERLAB_DATA/<folder>
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
POOL3, POOL4 = 17, 24  # features[:POOL3] ends with pool3, features[:POOL4] with pool4 (torchvision's indices)


Config = FcnConfig  # in recipes/configs.py, which imports no torch: a quick --help


def variant(name: str, stride: int) -> ModuleType:
    """The recipe `name`: this module's functions, with NAME and the Config of output stride `stride`."""
    if stride not in (32, 16, 8):
        raise ValueError(f"FCN output stride {stride}: the paper's variants are 32, 16 and 8")
    recipe = ModuleType(name, f"{name}: FCN-{stride}s semantic segmentation (the fcn module at output stride {stride})")
    recipe.__dict__.update({k: v for k, v in globals().items() if not k.startswith("__")})
    recipe.NAME, recipe.Config = name, fcn_config(stride=stride)  # the same (cached) class as config_class
    return recipe


def bilinear_kernel(channels: int, k: int) -> torch.Tensor:
    """ConvTranspose2d weight [C, C, k, k] that upsamples each channel by bilinear interpolation (FCN's init)."""
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    r = torch.arange(k, dtype=torch.float64)
    filt1d = 1 - (r - center).abs() / factor
    w = torch.zeros(channels, channels, k, k, dtype=torch.float64)
    w[range(channels), range(channels)] = torch.outer(filt1d, filt1d)
    return w.float()


class FixedUpsample(nn.ConvTranspose2d):
    """The paper's final upsampling, fixed to bilinear: its [C, C, k, k] weight (kept so, for the state dict and the
    reference's layout) is zero off the diagonal, so each channel is upsampled alone (groups=C). The same sums as
    the full transposed convolution without its C-1 zero terms per output: 5-10x faster at ADE20K's 150 classes on
    the CPU, equal to float rounding (bench/fcn_upsample.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [C, C, k, k] -> [C, 1, k, k] by indexing, not diagonal().permute(): the ONNX exporter keeps the kernel's
        # shape through the index and loses it through the permute ("convolution for kernel of unknown shape")
        c = torch.arange(self.in_channels, device=self.weight.device)
        return F.conv_transpose2d(x, self.weight[c, c].unsqueeze(1), None, self.stride, groups=self.in_channels)


def upsample(channels: int, factor: int, learn: bool) -> nn.ConvTranspose2d:
    # the paper fixes the final upsampling to bilinear and learns the 2x ones (which may mix the classes)
    layer = (nn.ConvTranspose2d if learn else FixedUpsample)(channels, channels, 2 * factor, stride=factor, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, 2 * factor))
    layer.weight.requires_grad_(learn)
    return layer


def vgg16_features(width: float) -> nn.Sequential:
    """torchvision's vgg16().features, layer for layer (so its state dict loads by name), with FCN's changes:
    conv1_1 pads by 100 (so every input size gives an output that can be cropped back to it) and pools round up."""
    layers, cin = [], 3
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            cout = max(1, round(v * width))
            layers += [nn.Conv2d(cin, cout, 3, padding=100 if cin == 3 else 1), nn.ReLU(inplace=True)]
            cin = cout
    return nn.Sequential(*layers)


class FCN(nn.Module):
    """FCN-32s/16s/8s. Output logits have exactly the input's height and width."""

    def __init__(
        self,
        classes: int,
        stride: int,
        width: float = 1.0,
        fc: int = 4096,
        dropout: float = 0.5,
        skip_scale: bool = False,
    ):
        super().__init__()
        self.stride, self.skip_scale = stride, skip_scale
        self.features = vgg16_features(width)
        c3, c4, c5 = (max(1, round(v * width)) for v in (256, 512, 512))
        self.fc6 = nn.Conv2d(c5, fc, 7)  # VGG's first fully connected layer as a 7x7 convolution
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(fc, classes, 1)
        if stride == 32:
            self.upscore = upsample(classes, 32, learn=False)
        else:
            self.upscore2 = upsample(classes, 2, learn=True)
            self.score_pool4 = nn.Conv2d(c4, classes, 1)
        if stride == 16:
            self.upscore16 = upsample(classes, 16, learn=False)
        if stride == 8:
            self.upscore_pool4 = upsample(classes, 2, learn=True)
            self.score_pool3 = nn.Conv2d(c3, classes, 1)
            self.upscore8 = upsample(classes, 8, learn=False)
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # torchvision's VGG init for a backbone trained from scratch
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for name in ("score_fr", "score_pool4", "score_pool3"):  # scores start at zero, as in the reference:
            if hasattr(self, name):  # a skip added in staged training leaves the coarser net's output unchanged
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pool3 = self.features[:POOL3](x)
        pool4 = self.features[POOL3:POOL4](pool3)
        pool5 = self.features[POOL4:](pool4)
        fc7 = self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(pool5))))))
        score = self.score_fr(fc7)
        if self.stride == 32:  # crop offsets: where the padded input's origin lands (the reference's values)
            return _crop(self.upscore(score), 19, h, w)
        score = self.upscore2(score)
        p4 = self.score_pool4(pool4 * 0.01 if self.skip_scale else pool4)
        score = score + _crop(p4, 5, *score.shape[-2:])
        if self.stride == 16:
            return _crop(self.upscore16(score), 27, h, w)
        score = self.upscore_pool4(score)
        p3 = self.score_pool3(pool3 * 0.0001 if self.skip_scale else pool3)
        score = score + _crop(p3, 9, *score.shape[-2:])
        return _crop(self.upscore8(score), 31, h, w)


def _crop(x: torch.Tensor, offset: int, h: int, w: int) -> torch.Tensor:
    return x[:, :, offset : offset + h, offset : offset + w]


def load_backbone(model: FCN, path: str) -> list[str]:
    """Copy a torchvision vgg16 state dict into the backbone; fc6/fc7 are its classifier.0/.3 reshaped to convs
    (as the paper casts VGG's fully connected layers). Returns the names it set. Read with weights_only=True
    or as safetensors: never unpickled."""
    theirs = checkpoint.read_state_dict(Path(path))
    own = model.state_dict()
    names = [(k, k) for k in own if k.startswith("features.")]
    names += [
        ("fc6.weight", "classifier.0.weight"),
        ("fc6.bias", "classifier.0.bias"),
        ("fc7.weight", "classifier.3.weight"),
        ("fc7.bias", "classifier.3.bias"),
    ]
    for ours, key in names:
        if key not in theirs or theirs[key].numel() != own[ours].numel():
            raise ConfigError(f"{path} has no {key} of {own[ours].numel()} values; pass a torchvision vgg16 state dict")
        own[ours].copy_(theirs[key].reshape(own[ours].shape))  # classifier.0: [4096, 25088] -> [4096, 512, 7, 7]
    return [ours for ours, _ in names]


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    model = FCN(len(class_names(cfg)), cfg.STRIDE, cfg.width, cfg.fc_channels, cfg.dropout, cfg.skip_scale)
    model.window = cfg.eval_window  # what evaluation and prediction slide over large images (not a weight)
    if cfg.backbone_weights:
        with torch.no_grad():
            load_backbone(model, cfg.backbone_weights)
    return model


# -- data ----------------------------------------------------------------------------------------------------
def _spec(cfg: Config) -> seg.Spec:
    # the class names: ADE20K's objectInfo150.txt, a folder's classes.csv
    root = resolve_dir(cfg.data, FOLDERS.get(cfg.dataset, cfg.dataset)) if cfg.dataset in ("ade20k", "folder") else None
    return seg.spec(cfg.dataset, root)


def build_data(cfg: Config, dist: Dist) -> Data:
    """The splits decoded into memory, or streamed from their files by worker processes (--loader, as every image
    recipe): the same items, the same padded batches."""
    root = resolve_dir(cfg.data, FOLDERS.get(cfg.dataset, cfg.dataset))
    s = seg.spec(cfg.dataset, root)
    train = seg.PairItems(cfg.dataset, root, cfg.train_split or s.train_split)
    val = seg.PairItems(cfg.dataset, root, cfg.val_split or s.val_split)
    choice = choose(cfg.loader, cfg.data_memory, [train, val])
    print0(choice.line, dist=dist, file=sys.stderr)
    # evaluate() and examples() read loader.info: the classes, the uncounted ones and the colours
    options = {"pad": (0, seg.IGNORE), "on_device": cfg.data_on_device, "channels_last": cfg.channels_last, "info": s}

    def loader(items: seg.PairItems, batch_size: int, **kw) -> PaddedLoader:
        if choice.stream:
            reader = StreamReader(items, cfg.workers, skip_bad=cfg.skip_bad_files, pin=dist.device.type == "cuda")
            return PaddedLoader(None, batch_size, dist, reader=reader, **options, **kw)
        return PaddedLoader(decoded(items), batch_size, dist, **options, **kw)

    crops = None
    if cfg.crop_height:  # each image scaled and cropped where it is read: a batch of crops, never padded
        size, scale = (cfg.crop_height, cfg.crop_width), (cfg.scale_min, cfg.scale_max)
        crops = item_scale_crop_flip(size, scale, cfg.flip, seg.IGNORE)
    return Data(
        loader(train, cfg.batch_size, train=True, seed=cfg.seed, transform=train_transform(cfg), item_transform=crops),
        # one image per process at a time: padding to a batch would change the outputs near the border
        loader(val, dist.world_size, train=False, transform=eval_transform),
    )


def decoded(items: seg.PairItems) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every pair decoded once, kept at its own size (a list per field: the loader pads each batch)."""
    from towerlab.progress import bar

    rows = [items[i] for i in bar(range(len(items)), "reading images", unit="image", min_total=2000)]
    return [r[0] for r in rows], [r[1] for r in rows]


def train_transform(cfg: Config):
    """The batch's transform on the device: normalising, and without a crop size the random scale and mirror of
    the whole padded batch (with one, each image was scaled and cropped where it was read)."""

    def transform(x: torch.Tensor, y: torch.Tensor):
        # padding of the batch is black (0 -> -mean/std after normalising); it is IGNORE in y, so it never counts
        x = normalize(x, MEAN, STD)
        if not cfg.crop_height and ((cfg.scale_min, cfg.scale_max) != (1.0, 1.0) or cfg.flip):
            size = tuple(x.shape[-2:])
            x, y = paired_scale_crop_flip(x, y.long(), size, (cfg.scale_min, cfg.scale_max), cfg.flip, seg.IGNORE)
        return x, y.long()

    return transform


def eval_transform(x: torch.Tensor, y: torch.Tensor):
    return normalize(x, MEAN, STD), y.long()


# -- loss, metrics, outputs -------------------------------------------------------------------------------------
def loss(model, batch, step=None):
    x, y = batch
    # mean over labelled pixels (the reference sums; a mean keeps one lr valid for every image size)
    return F.cross_entropy(model(x).float(), y, ignore_index=seg.IGNORE), {}


@torch.no_grad()
def evaluate(model, loader, dist: Dist) -> dict[str, float]:
    """The FCN paper's four metrics from one confusion matrix over every labelled pixel, summed across processes;
    plus the per-class IoU, the mean loss, and for ADE20K the Scene Parsing score (pixel acc + mIoU) / 2."""
    s = loader.info
    cm = ConfusionMatrix(len(s.classes), dist.device, s.uncounted)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    for x, y in loader:
        logits = scores(model, x)
        cm.update(logits.argmax(1), y)
        loss_sum += F.cross_entropy(logits, y, ignore_index=seg.IGNORE, reduction="sum").double()
    cm.reduce(dist)
    summary = cm.compute()
    metrics = {"pixel_accuracy": summary.pop("accuracy"), **summary}
    metrics["loss"] = all_reduce_sum(loss_sum, dist).item() / max(cm.counts.sum().item(), 1)
    if s.name == "ade20k":
        metrics["score"] = (metrics["pixel_accuracy"] + metrics["mean_iou"]) / 2
    for name, iou in zip(s.classes, cm.class_iou().tolist()):
        if iou == iou:  # classes neither labelled nor predicted have no IoU
            metrics[f"iou/{name}"] = iou
    return metrics


def class_names(cfg: Config) -> list[str]:
    return _spec(cfg).classes


def prepare(cfg: Config, images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] -> normalised model input."""
    return normalize(images, MEAN, STD)


def starts(size: int, window: int) -> list[int]:
    """Where the windows along one side begin: every 2/3 of a window, the last flush with the far edge."""
    if size <= window:
        return [0]
    stride = max(1, window * 2 // 3)
    return sorted({*range(0, size - window, stride), size - window})


def scores(model, x: torch.Tensor) -> torch.Tensor:
    """Class scores [N, classes, H, W] of the whole images, or, for an image larger than the model's window
    (--eval-window), the mean of the scores of the overlapping windows that cover each pixel."""
    window = getattr(unwrap(model, FCN), "window", 0)
    h, w = x.shape[-2:]
    if not window or (h <= window and w <= window):
        return model(x).float()
    out, seen = None, torch.zeros(1, 1, h, w, device=x.device)
    for top in starts(h, window):
        for left in starts(w, window):
            part = model(x[..., top : top + window, left : left + window]).float()
            if out is None:
                out = torch.zeros(x.shape[0], part.shape[1], h, w, device=x.device)
            out[..., top : top + part.shape[-2], left : left + part.shape[-1]] += part
            seen[..., top : top + part.shape[-2], left : left + part.shape[-1]] += 1
    return out / seen


@torch.no_grad()
def predict(model, inputs: torch.Tensor) -> torch.Tensor:
    """Per-pixel class probabilities [N, classes, H, W]."""
    return scores(model, inputs).softmax(1)


def predict_files(model, cfg: Config, paths: list[str], out_dir: str | None) -> list[dict]:
    """For each image: <stem>_label.png (class indices in a palette PNG: the classes' colours in a viewer) and
    <stem>_overlay.png, beside it or in out_dir."""
    s = _spec(cfg)
    results = []
    for path in map(Path, paths):
        image = read_image(path, 3)
        label = predict(model, prepare(cfg, image[None]))[0].argmax(0)
        colours = seg.colorize(label, s.palette)
        folder = Path(out_dir) if out_dir else path.parent
        folder.mkdir(parents=True, exist_ok=True)
        label_png = check_output(folder / f"{path.stem}_label.png")
        overlay_png = check_output(folder / f"{path.stem}_overlay.png")
        write_label(label, s.palette, label_png)
        write_image(seg.overlay(image, colours), overlay_png)
        counts = torch.bincount(label.flatten(), minlength=len(s.classes)).double() / label.numel()
        top = counts.argsort(descending=True)[:5]
        results.append(
            {
                "file": str(path),
                "label_png": str(label_png),
                "overlay_png": str(overlay_png),
                "classes": {s.classes[i]: round(float(counts[i]), 4) for i in top if counts[i] > 0},
            }
        )
    return results


@torch.no_grad()
def examples(model, loader, n: int = 4) -> torch.Tensor:
    """uint8 [n,3,H,W]: predictions overlaid on the first validation images, for TensorBoard."""
    x, _ = next(iter(loader))
    x = x[:n]
    label = model(x).argmax(1)
    mean, std = (
        torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1),
        torch.tensor(STD, device=x.device).view(1, 3, 1, 1),
    )
    images = ((x.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).cpu()
    palette = loader.info.palette
    return torch.stack([seg.overlay(im, seg.colorize(lb, palette)) for im, lb in zip(images, label)])
