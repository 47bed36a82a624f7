"""Image files -> uint8 tensors, for predict and for exporting samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from towerlab.errors import DataError
from towerlab.files import make_dir, write_png, written_by_towerlab
from towerlab.imagefile import FORMAT_NAMES, BadImage, decode, opened


def read_image(path: str | Path, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 [C,H,W] with C = 1 (grayscale) or 3 (RGB), resized to size=(H, W) if given (imagefile's formats and
    pixel cap; whatever the decoder raises is one line naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} not found; pass an existing {FORMAT_NAMES} file")
    try:
        arr = decode(path, "L" if channels == 1 else "RGB", size)
    except BadImage as e:
        raise DataError(f"image {path}: {e}; replace or remove the file") from None
    t = torch.from_numpy(arr)
    return t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1).contiguous()


def read_label(path: str | Path) -> torch.Tensor:
    """uint8 [H,W] class indices from a palette or 8-bit grayscale PNG/BMP (the index, never the colour)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"label {path} not found; every image needs its label file (see the dataset layout in the README)"
        )
    try:
        with opened(path) as im:
            if im.mode not in ("P", "L", "1", "I;16", "I"):
                raise DataError(
                    f"label {path} is a {im.mode} image; labels must hold class indices "
                    f"(a palette or 8-bit grayscale PNG), not colours"
                )
            arr = np.asarray(im)
    except BadImage as e:
        raise DataError(f"label {path}: {e}; replace the file") from None
    if arr.max(initial=0) > 255:
        raise DataError(f"label {path} has index {int(arr.max())} > 255; labels must be 8-bit class indices")
    return torch.from_numpy(arr.astype(np.uint8))


def fit_to(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 [N,C,H,W] -> uint8 [N,*shape]: channels matched (gray <-> RGB), then resized bilinearly."""
    c, h, w = shape
    if images.shape[1] != c:
        images = images.expand(-1, c, -1, -1) if images.shape[1] == 1 else images.float().mean(1, keepdim=True)
    if tuple(images.shape[-2:]) != (h, w):
        images = torch.nn.functional.interpolate(
            images.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False
        )
        images = images.round().clamp(0, 255)
    return images.to(torch.uint8).contiguous()


def check_output(path: Path) -> Path:
    """path, when predict may write its output there: nothing is there, or a PNG towerlab wrote before (a rerun).
    A file of the user's is never overwritten: this image is refused with one line naming it."""
    if path.is_symlink() or (path.exists() and not written_by_towerlab(path)):
        raise DataError(
            f"{path} exists and was not written by towerlab; it is not overwritten: move it, or write the "
            f"outputs elsewhere with --out-dir"
        )
    return path


def write_image(image: torch.Tensor, path: str | Path) -> None:
    """uint8 [C,H,W] (C = 1 or 3) -> PNG."""
    arr = image.cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    write_png(Image.fromarray(arr), path)


def write_label(label: torch.Tensor, palette: list[tuple[int, int, int]], path: str | Path) -> None:
    """[H,W] class indices -> a palette PNG, as VOC's annotations: a viewer shows the classes' colours, and reading
    it (read_label, PIL, numpy) gives back the class indices, so a prediction can be rescored or trained on."""
    im = Image.fromarray(label.to(torch.uint8).cpu().numpy(), mode="P")
    im.putpalette([v for rgb in palette for v in rgb])
    write_png(im, path)


def export_samples(images, labels, class_names: list[str], out: str | Path, n: int) -> list[Path]:
    """Write the first n images as <index>_<class>.png (<index>.png when the label is a map); returns the paths."""
    out = Path(out)
    make_dir(out, "the destination folder")
    paths = []
    for i in range(min(n, len(images))):
        name = f"_{class_names[int(labels[i])]}" if labels[i].numel() == 1 else ""
        path = out / f"{i:04d}{name}.png"
        write_image(images[i], path)
        paths.append(path)
    return paths
