"""Surface-defect datasets: images with pixel masks -> tensors at one input size.

    kolektor  KolektorSDD: kos01..kos50/PartN.jpg with PartN_label.bmp (palette or grayscale; any value > 0 is
              a defect); an item (kosNN folder) is one commutator, so folds split by folder, as Tabernik et al. do
    generic   images/<stem>.png|jpg|bmp and masks/<stem>.png|bmp; an image without a mask is defect-free

Images come back as uint8 [N,C,H,W], masks as uint8 [N,1,H,W] in {0,1}, labels as float [N] (1 = defective).
Masks are resized with max-pooling when shrinking, so a thin scratch never disappears.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F

from towerlab.data.images import fit_to, read_image, read_label
from towerlab.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def kolektor_items(root: Path) -> dict[str, list[tuple[Path, Path | None]]]:
    """{item folder name: [(image, label), ...]}; every image must have its _label file."""
    items = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("kos")):
        pairs = []
        for image in sorted(folder.glob("Part*.jpg")):
            label = image.with_name(f"{image.stem}_label.bmp")
            if not label.is_file():
                raise DataError(f"image {image} has no label file {label.name}; KolektorSDD pairs every PartN.jpg "
                                f"with PartN_label.bmp (an all-black label for a defect-free part)")
            pairs.append((image, label))
        if pairs:
            items[folder.name] = pairs
    if not items:
        raise DataError(f"no KolektorSDD items (kosNN folders with PartN.jpg) in {root}; check --data, or use "
                        f"--layout generic (images/ and masks/)")
    return items


def generic_items(root: Path) -> dict[str, list[tuple[Path, Path | None]]]:
    """{image stem: [(image, mask or None)]}: each image is its own item."""
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir():
        raise DataError(f"no images/ folder in {root}; the generic layout is images/<stem>.png and masks/<stem>.png")
    masks = {p.stem: p for p in masks_dir.iterdir()} if masks_dir.is_dir() else {}
    items = {p.stem: [(p, masks.get(p.stem))] for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not items:
        raise DataError(f"no images in {images_dir} (PNG, JPEG, BMP or TIFF)")
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
        m = F.adaptive_max_pool2d(m, size)
    else:
        m = F.interpolate(m, size=size, mode="nearest")
    return m[0].to(torch.uint8)


def read_pair(image_path: Path, mask_path: Path | None, channels: int, size: tuple[int, int]):
    image = read_image(image_path, channels)
    if mask_path is None:
        mask = torch.zeros(1, *image.shape[1:], dtype=torch.uint8)
    else:
        raw = read_label(mask_path)
        if tuple(raw.shape) != tuple(image.shape[1:]):
            raise DataError(f"label {mask_path} is {raw.shape[1]}x{raw.shape[0]} but its image is "
                            f"{image.shape[2]}x{image.shape[1]}; a mask must match its image pixel for pixel")
        mask = (raw > 0).to(torch.uint8)[None]
    return fit_to(image[None], (channels, *size))[0], resize_mask(mask, size)


def load(root: Path, layout: str, names: list[str], items: dict, channels: int, size: tuple[int, int]):
    """The pairs of the named items -> (images, masks, labels)."""
    images, masks = [], []
    for name in names:
        for image_path, mask_path in items[name]:
            image, mask = read_pair(image_path, mask_path, channels, size)
            images.append(image)
            masks.append(mask)
    if not images:
        raise DataError(f"no images in the chosen fold of {root}")
    masks_t = torch.stack(masks)
    return torch.stack(images), masks_t, masks_t.flatten(1).amax(1).float()


def items_of(root: Path, layout: str) -> dict[str, list[tuple[Path, Path | None]]]:
    if layout == "kolektor":
        return kolektor_items(root)
    if layout == "generic":
        return generic_items(root)
    raise DataError(f"unknown defect layout {layout!r}; choose kolektor or generic")
