"""Your own images, in the layout torchvision's ImageFolder reads: a folder per class.

    DIR/train/<class>/*.png|jpg|bmp|tif   and   DIR/val/<class>/*   (val/ may be named valid/ or test/)
    DIR/<class>/*                         with --val-fraction F: a fixed part of the images is held out to validate

Classes are the training folders' names in sorted order (ImageFolder's), recorded in the run's config so that eval,
predict, export and serve name them; files are found recursively under each class folder, sorted. Images of any
size, grey or colour, are converted to the recipe's channels and resized to its input (`--image-size HxW` changes
the input). The layout functions import no torch: the config reads the class names when it is built.
"""

from __future__ import annotations

from pathlib import Path

from towerlab.errors import DataError
from towerlab.files import walk_files

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VAL_NAMES = ("val", "valid", "test")


def image_files(folder: str | Path) -> list[Path]:
    """Every image file under folder, recursively, in sorted order (hidden folders skipped)."""
    return [p for p in walk_files(folder) if p.suffix.lower() in SUFFIXES]  # links followed, as the data hash


_images = image_files


def _has_images(folder: Path) -> bool:
    """Whether any image lies under folder: stops at the first (layout() looks at a 60,000-file folder once)."""
    return any(
        p.suffix.lower() in SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        for p in folder.rglob("*")
    )


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def layout(root: str | Path) -> str | None:
    """ "split" (train/ and a validation folder of class folders), "flat" (class folders only), or None (not an
    image folder: a benchmark's own format)."""
    root = Path(root)
    if not root.is_dir():
        return None
    if (root / "train").is_dir() and any(_has_images(d) for d in _class_dirs(root / "train")):
        return "split"
    if root.name != "train" and not (root / "train").exists() and any(_has_images(d) for d in _class_dirs(root)):
        return "flat"
    return None


def val_folder(root: Path) -> Path | None:
    return next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)


def classes(root: str | Path) -> list[str]:
    """The class names in label order; an empty class folder or a name the config cannot hold is one line."""
    root = Path(root)
    top = root / "train" if layout(root) == "split" else root
    names = []
    for d in _class_dirs(top):
        if not _has_images(d):
            raise DataError(f"class folder {d} holds no images ({', '.join(SUFFIXES)}); add some or remove it")
        if "," in d.name:
            raise DataError(f"class folder {d}: a class name cannot hold a comma; rename the folder")
        names.append(d.name)
    return names


def items(root: str | Path, names: list[str]) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]] | None]:
    """(training (file, label) pairs, validation pairs or None for a flat folder), every class as `names` orders
    them; a validation class that training does not have is one line naming it."""
    root = Path(root)
    index = {n: i for i, n in enumerate(names)}
    if layout(root) == "flat":
        return _pairs(root, index), None
    val = val_folder(root)
    if val is None:
        raise DataError(
            f"{root} has train/ but no validation folder ({', '.join(VAL_NAMES)}); add one, or put the "
            f"class folders directly in {root} and pass --val-fraction"
        )
    extra = [d.name for d in _class_dirs(val) if d.name not in index]
    if extra:
        raise DataError(
            f"{val / extra[0]}: class {extra[0]!r} is not among the training classes "
            f"({', '.join(names)}); add {root / 'train' / extra[0]} or remove it"
        )
    return _pairs(root / "train", index), _pairs(val, index)


def _pairs(top: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    return [(p, index[d.name]) for d in _class_dirs(top) if d.name in index for p in _images(d)]


def file_items(pairs: list[tuple[Path, int]], shape: tuple[int, int, int]):
    """The (file, label) pairs as Items (data/stream.py): each file decoded, converted to shape's channels and
    resized to its size when it is read, in memory at the start or by the stream's workers."""
    from towerlab.data.stream import FileItems

    return FileItems(pairs, shape)
