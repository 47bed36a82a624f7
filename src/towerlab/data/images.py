"""Image files -> uint8 tensors, for predict and for exporting samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from towerlab.errors import DataError


def read_image(path: str | Path, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 [C,H,W] with C = 1 (grayscale) or 3 (RGB), resized to size=(H, W) if given."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} not found; pass an existing PNG or JPEG file")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image {path} cannot be decoded ({e.__class__.__name__}: {e}); "
                        f"replace it with a valid PNG or JPEG") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1).contiguous()


def fit_to(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 [N,C,H,W] -> uint8 [N,*shape]: channels matched (gray <-> RGB), then resized bilinearly."""
    c, h, w = shape
    if images.shape[1] != c:
        images = images.expand(-1, c, -1, -1) if images.shape[1] == 1 else images.float().mean(1, keepdim=True)
    if tuple(images.shape[-2:]) != (h, w):
        images = torch.nn.functional.interpolate(images.float(), size=(h, w), mode="bilinear", antialias=True,
                                                 align_corners=False)
        images = images.round().clamp(0, 255)
    return images.to(torch.uint8).contiguous()


def write_image(image: torch.Tensor, path: str | Path) -> None:
    """uint8 [C,H,W] (C = 1 or 3) -> PNG."""
    arr = image.cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    Image.fromarray(arr).save(path)


def export_samples(images: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                   out: str | Path, n: int) -> list[Path]:
    """Write the first n images as <index>_<class>.png; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(n, len(images))):
        path = out / f"{i:04d}_{class_names[int(labels[i])]}.png"
        write_image(images[i], path)
        paths.append(path)
    return paths
