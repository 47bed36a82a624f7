"""Surface-defect datasets: images with pixel masks -> tensors at one input size.

    kolektor  KolektorSDD: kos01..kos50/PartN.jpg with PartN_label.bmp (palette or grayscale; any value > 0 is
              a defect); an item (kosNN folder) is one commutator, so folds split by folder, as Tabernik et al. do
    generic   images/<stem>.png|jpg|bmp and masks/<stem>.png|bmp; an image without a mask is defect-free;
              or, as anomalib's Folder: ok/ (defect-free images) and defect/ (defective ones), with masks/<stem>.png
              for the defective images that have one; a defective image without a mask trains the decision only
    folder    anomalib's Folder with its own names: --normal-dir, --abnormal-dir, --mask-dir (masks matched to
              abnormal images by stem), and optionally --normal-test-dir / --abnormal-test-dir: a test split of
              their own (otherwise the folds)
    ksdd2     KolektorSDD2 as published: train/<id>.png with train/<id>_GT.png, test/ the same; the test/ folder
              is the test split (no folds)
    mvtec     one MVTec AD category as published: train/good/, test/good/, test/<defect>/ with
              ground_truth/<defect>/<stem>_mask.png; MVTec keeps every defective image in test/ (it is made for
              methods that learn from defect-free images only), so a supervised recipe folds over the whole
              category, by image, as supervised work on MVTec AD does

A layout gives its items and, when the data set comes with one, its own test items (Layout.test).

Images come back as uint8 [N,C,H,W], masks as uint8 [N,1,H,W] in {0,1} (UNKNOWN where a defective image has no
mask: its pixels are never counted), labels as float [N] (1 = defective).
Masks are resized with max-pooling when shrinking, so a thin scratch never disappears.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from towerlab.data.images import fit_to, read_image, read_label
from towerlab.data.stream import Items
from towerlab.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
UNKNOWN = 255  # a mask pixel nobody labelled: a defective image without its mask


def kolektor_items(root: Path) -> dict[str, list[tuple[Path, Path | None]]]:
    """{item folder name: [(image, label), ...]}; every image must have its _label file."""
    items = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("kos")):
        pairs = []
        for image in sorted(folder.glob("Part*.jpg")):
            label = image.with_name(f"{image.stem}_label.bmp")
            if not label.is_file():
                raise DataError(
                    f"image {image} has no label file {label.name}; KolektorSDD pairs every PartN.jpg "
                    f"with PartN_label.bmp (an all-black label for a defect-free part)"
                )
            pairs.append((image, label))
        if pairs:
            items[folder.name] = pairs
    if not items:
        raise DataError(
            f"no KolektorSDD items (kosNN folders with PartN.jpg) in {root}; check --data, or use "
            f"--layout generic (images/ and masks/)"
        )
    return items


def generic_items(root: Path) -> dict[str, list[tuple]]:
    """{image stem: [(image, mask or None[, label])]}: each image is its own item."""
    if (root / "ok").is_dir() or (root / "defect").is_dir():
        return folder_items(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir():
        raise DataError(f"no images/ folder in {root}; the generic layout is images/<stem>.png and masks/<stem>.png")
    masks = {p.stem: p for p in masks_dir.iterdir()} if masks_dir.is_dir() else {}
    items = {
        p.stem: [(p, masks.get(p.stem))] for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
    }
    if not items:
        raise DataError(f"no images in {images_dir} (PNG, JPEG, BMP or TIFF)")
    return items


def folder_items(
    root: Path, normal: str = "ok", abnormal: str = "defect", masks: str = "masks", matched: bool = True
) -> dict[str, list[tuple]]:
    """normal/ and abnormal/ (anomalib's Folder): the label from the folder, a mask from masks/<stem> where there is
    one. matched: every mask must belong to an abnormal image here (False when a test split shares the folder)."""
    found_masks = mask_files(root, masks)
    items = {}
    for label, sub in ((0, normal), (1, abnormal)):
        for name, pairs in labelled(root / sub, label, found_masks).items():
            if name in items:
                raise DataError(
                    f"{pairs[0][0]}: the name {name} is used twice; masks are matched by name, so rename one"
                )
            items[name] = pairs
    stray = [m for stem, m in found_masks.items() if stem not in items or items[stem][0][2] == 0]
    if stray and matched:
        raise DataError(
            f"mask {stray[0]} belongs to no image in {root / abnormal}; masks are for defective images, matched by name"
        )
    return items


def mask_files(root: Path, masks: str) -> dict[str, Path]:
    from towerlab.data.folder import image_files

    return {p.stem: p for p in image_files(root / masks)} if masks and (root / masks).is_dir() else {}


def labelled(folder: Path, label: int, masks: dict[str, Path]) -> dict[str, list[tuple]]:
    """{stem: [(image, its mask if defective and drawn, label)]} for every image in folder (none: an error)."""
    from towerlab.data.folder import image_files

    found = image_files(folder) if folder.is_dir() else []
    if not found:
        what = "defective" if label else "defect-free"
        raise DataError(f"no images in {folder}, the folder of {what} images; check --data and the folder names")
    return {p.stem: [(p, masks.get(p.stem) if label else None, label)] for p in found}


def ksdd2_items(folder: Path) -> dict[str, list[tuple]]:
    """KolektorSDD2's train/ or test/: <id>.png with <id>_GT.png (0 where defect-free, 255 on a defect)."""
    if not folder.is_dir():
        raise DataError(
            f"no {folder.name}/ folder in {folder.parent}; KolektorSDD2 is train/ and test/, each <id>.png with "
            f"<id>_GT.png"
        )
    items = {}
    for image in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.stem.endswith("_GT")):
        mask = image.with_name(f"{image.stem}_GT.png")
        if not mask.is_file():
            raise DataError(
                f"image {image} has no mask {mask.name}; KolektorSDD2 pairs every <id>.png with <id>_GT.png"
            )
        items[f"{folder.name}/{image.stem}"] = [(image, mask)]
    if not items:
        raise DataError(f"no KolektorSDD2 images (<id>.png with <id>_GT.png) in {folder}")
    return items


def mvtec_items(root: Path) -> dict[str, list[tuple]]:
    """{train/good/000, test/<defect>/000, ...: [(image, mask or None, label)]} of one MVTec AD category."""
    if not (root / "train" / "good").is_dir() or not (root / "test").is_dir():
        categories = sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir()) if root.is_dir() else []
        hint = (
            f"--data is the MVTec AD root: pass one category, e.g. --data {root / categories[0]}"
            if categories
            else ("an MVTec AD category is train/good/, test/<defect>/ and ground_truth/<defect>/<stem>_mask.png")
        )
        raise DataError(f"no train/good/ and test/ folders in {root}; {hint}")
    items = {f"train/good/{k}": v for k, v in labelled(root / "train" / "good", 0, {}).items()}
    for folder in sorted(p for p in (root / "test").iterdir() if p.is_dir()):
        defect = folder.name != "good"
        truth = root / "ground_truth" / folder.name
        masks = {p.stem.removesuffix("_mask"): p for p in truth.glob("*_mask.*")} if defect else {}
        for stem, [(image, mask, label)] in labelled(folder, int(defect), masks).items():
            if defect and mask is None:
                raise DataError(
                    f"image {image} has no mask {truth / (stem + '_mask.png')}; MVTec AD draws a mask for every "
                    f"defective test image"
                )
            items[f"test/{folder.name}/{stem}"] = [(image, mask, label)]
    return items


def folds(names: list[str], k: int, seed: int = 0) -> list[list[str]]:
    """k disjoint folds of item names, shuffled with a fixed seed so every run splits the same way."""
    order = sorted(names)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [1,H,W] {0,1} -> [1,h,w]: a cell is a defect if any pixel it covers is (max-pool when shrinking)."""
    m = mask[None].float()
    if m.shape[-2] >= size[0] and m.shape[-1] >= size[1]:
        m = F.adaptive_max_pool2d(m, size)  # (an UNKNOWN mask stays UNKNOWN: it is UNKNOWN everywhere)
    else:
        m = F.interpolate(m, size=size, mode="nearest")
    return m[0].to(torch.uint8)


def read_pair(image_path: Path, mask_path: Path | None, channels: int, size: tuple[int, int], label: int | None = None):
    image = read_image(image_path, channels)
    if mask_path is None:  # defect-free, or defective with no mask drawn (UNKNOWN: only its label trains)
        mask = torch.full((1, *image.shape[1:]), UNKNOWN if label == 1 else 0, dtype=torch.uint8)
    else:
        raw = read_label(mask_path)
        if tuple(raw.shape) != tuple(image.shape[1:]):
            raise DataError(
                f"label {mask_path} is {raw.shape[1]}x{raw.shape[0]} but its image is "
                f"{image.shape[2]}x{image.shape[1]}; a mask must match its image pixel for pixel"
            )
        mask = (raw > 0).to(torch.uint8)[None]
    return fit_to(image[None], (channels, *size))[0], resize_mask(mask, size)


def load(root: Path, layout: str, names: list[str], items: dict, channels: int, size: tuple[int, int]):
    """The pairs of the named items -> (images, masks, labels)."""
    return load_rows(root, rows_of(names, items), channels, size)


def load_rows(root: Path, rows: list[tuple], channels: int, size: tuple[int, int]):
    """(image, mask[, label]) rows decoded -> (images, masks, labels)."""
    images, masks, labels = [], [], []
    for image_path, mask_path, *label in rows:
        image, mask = read_pair(image_path, mask_path, channels, size, *label)
        images.append(image)
        masks.append(mask)
        labels.append(float(label[0]) if label else float(mask.amax() > 0))
    if not images:
        raise DataError(f"no images in the chosen fold of {root}")
    return torch.stack(images), torch.stack(masks), torch.tensor(labels)


class DefectItems(Items):
    """The pairs of a defect split read one at a time (the stream's items, data/stream.py): exactly what `load`
    decodes, item by item: (image [C,H,W] float, mask [1,H,W] uint8, label float 0-d), the mask grown by `dilate`
    (training only) as segdec grows a batch's."""

    def __init__(self, rows: list[tuple], channels: int, size: tuple[int, int], dilate: int = 1):
        self.rows, self.channels, self.size, self.dilate = rows, channels, size, dilate

    def __len__(self) -> int:
        return len(self.rows)

    def describe(self, i: int) -> str:
        return str(self.rows[i][0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        image_path, mask_path, *label = self.rows[i]
        image, mask = read_pair(image_path, mask_path, self.channels, self.size, *label)
        value = float(label[0]) if label else float(mask.amax() > 0)  # before dilation, as `load`
        if self.dilate > 1:
            mask = dilate(mask[None], self.dilate)[0]
        return image, mask, torch.tensor(value)

    def labels(self) -> torch.Tensor:
        """Every item's label without decoding its image (a defect-free or labelled item: its label; else whether
        its mask, at the training size, marks any pixel): what balanced sampling and the validation carve need."""
        out = []
        for _, mask_path, *label in self.rows:
            if label or mask_path is None:
                out.append(float(label[0]) if label else 0.0)
            else:
                mask = (read_label(mask_path) > 0).to(torch.uint8)[None]
                out.append(float(resize_mask(mask, self.size).amax() > 0))
        return torch.tensor(out)


def dilate(masks: torch.Tensor, k: int) -> torch.Tensor:
    """Grow every defect by a k x k square (Božič et al. 2021 dilate labels to cover annotation slack)."""
    grown = F.max_pool2d(masks.float(), k, stride=1, padding=k // 2)
    return grown[..., : masks.shape[-2], : masks.shape[-1]].to(masks.dtype)


def rows_of(names: list[str], items: dict) -> list[tuple]:
    """The named items' (image, mask[, label]) rows, in the order `load` reads them."""
    return [row for name in names for row in items[name]]


@dataclass
class Layout:
    items: dict[str, list[tuple]]  # {item name: [(image, mask or None[, label])]}: what is trained on (or folded)
    test: dict[str, list[tuple]] | None = None  # the data set's own test split, when it has one


def items_of(root: Path, layout: str, names: dict[str, str] | None = None) -> Layout:
    """The items of a defect data set; names: the folder layout's folder names (normal_dir, abnormal_dir, mask_dir,
    normal_test_dir, abnormal_test_dir)."""
    if layout == "kolektor":
        return Layout(kolektor_items(root))
    if layout == "generic":
        return Layout(generic_items(root))
    if layout == "ksdd2":
        return Layout(ksdd2_items(root / "train"), ksdd2_items(root / "test"))
    if layout == "folder":
        return named_folders(root, names or {})
    if layout == "mvtec":
        return Layout(mvtec_items(root))
    raise DataError(f"unknown defect layout {layout!r}; choose kolektor, generic, folder, ksdd2 or mvtec")


def named_folders(root: Path, n: dict[str, str]) -> Layout:
    """anomalib's Folder: normal_dir and abnormal_dir (the config requires both), masks by stem from mask_dir; the
    test folders, when named, are the test split."""
    testing = bool(n.get("normal_test_dir") or n.get("abnormal_test_dir"))
    items = folder_items(root, n["normal_dir"], n["abnormal_dir"], n.get("mask_dir", ""), matched=not testing)
    if not testing:
        return Layout(items)
    masks = mask_files(root, n.get("mask_dir", ""))
    test: dict[str, list[tuple]] = {}
    for label, key in ((0, "normal_test_dir"), (1, "abnormal_test_dir")):
        if n.get(key):
            test.update({f"{n[key]}/{k}": v for k, v in labelled(root / n[key], label, masks).items()})
    return Layout(items, test)


HOLD_OUT_SEED = 20_190_101  # one validation split for every run and seed (loader.SPLIT_SEED's rule)


def hold_out_items(owners: list[str], labels: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices kept for training, indices held out for validation) of images whose items are `owners`: a fixed
    `fraction` of the items with a defective image and of those without, so that validation has both classes and
    no item (the same part photographed again) is on both sides."""
    names = sorted(set(owners))
    defective = {o for o, y in zip(owners, labels.tolist()) if y > 0}
    rng = random.Random(HOLD_OUT_SEED)
    held: set[str] = set()
    for group in ([n for n in names if n in defective], [n for n in names if n not in defective]):
        rng.shuffle(group)
        held.update(group[: round(len(group) * fraction)])
    index = torch.tensor([o in held for o in owners])
    val_labels = labels[index]
    if not len(val_labels) or val_labels.min() > 0 or val_labels.max() <= 0 or index.all():
        raise ConfigError(
            f"val_fraction={fraction} of the {len(names)} training items ({len(defective)} with a defect) "
            f"leaves no validation split with both defective and defect-free images; raise --val-fraction, "
            f"or pass --val-fraction 0 to validate on the held-out fold"
        )
    return (~index).nonzero().flatten(), index.nonzero().flatten()
