"""One database row -> a uint8 image: a matrix of numbers normalised (columns, text, blob), or an image file decoded
(PNG/JPEG bytes in the row, or a path under a root folder). A bad row raises RowError with the reason."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from towerlab.serve.settings import Normalize, Payload


_F32_MAX = float(np.finfo(np.float32).max)
MAX_PIXELS = 40_000_000  # an image row larger than this (e.g. 6,300 x 6,300) is an error outcome, never decoded


class RowError(ValueError):
    """This row cannot be graded; the message is stored in the outcome table."""


def _number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
        raise RowError(f"column {name}: {v!r} where a number belongs")
    return float(v)


def to_matrix(row: dict, p: Payload) -> np.ndarray:
    """float32 [height, width] from the row's payload column(s)."""
    n = p.height * p.width
    if p.kind == "columns":
        values = np.array([_number(c, row[c]) for c in p.columns], dtype=np.float64)
    elif p.kind == "text":
        text = row[p.column]
        if not isinstance(text, str):
            raise RowError(f"column {p.column}: expected delimited text, got {type(text).__name__}")
        parts = text.split(p.delimiter) if text.strip() else []
        if len(parts) != n:
            raise RowError(f"column {p.column}: expected {n} values ({p.height}x{p.width}), got {len(parts)}")
        try:
            values = np.array(parts, dtype=np.float64)  # numpy parses the strings in C; ten times Python's float()
        except ValueError:
            bad = next(t.strip() for t in parts if not _is_float(t))
            raise RowError(f"column {p.column}: {bad!r} where a number belongs") from None
    else:
        blob = row[p.column]
        if not isinstance(blob, (bytes, bytearray, memoryview)) or len(blob) != 4 * n:
            size = len(blob) if isinstance(blob, (bytes, bytearray, memoryview)) else type(blob).__name__
            raise RowError(f"column {p.column}: expected {4 * n} bytes of float32 ({p.height}x{p.width}), got {size}")
        values = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float64)
    if len(values) and not np.isfinite(values).all():
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise RowError(f"value {i} is {values[i]} (NaN or infinite)")
    big = np.abs(values) > _F32_MAX  # finite here, infinite in the model's float32
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise RowError(f"value {i} is {values[i]:g}, outside float32's range (+-{_F32_MAX:.4g})")
    return values.reshape(p.height, p.width).astype(np.float32)


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def to_image(m: np.ndarray, norm: Normalize) -> np.ndarray:
    """uint8 [1, H, W]: the matrix mapped to 0..1 (min-max per row, fixed affine, or as is), clipped, x255."""
    if norm.kind == "minmax":
        lo, hi = float(m.min()), float(m.max())
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    elif norm.kind == "fixed":
        m = (m - norm.offset) / norm.scale
    m = np.clip(m, 0.0, 1.0)
    return np.rint(m * 255.0).astype(np.uint8)[None]


def to_picture(row: dict, p: Payload, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 [channels, H, W] from the row's image bytes or file path, resized to size=(H, W) when given."""
    import io

    from PIL import Image, UnidentifiedImageError

    value = row[p.column]
    if p.kind == "image":
        if not isinstance(value, (bytes, bytearray, memoryview)) or not len(value):
            raise RowError(f"column {p.column}: expected PNG or JPEG bytes, got "
                           f"{type(value).__name__ if not isinstance(value, (bytes, bytearray, memoryview)) else 'none'}")
        source, name = io.BytesIO(bytes(value)), f"column {p.column}"
    else:
        source = name = _under_root(value, p)
    try:
        with Image.open(source) as im:  # reads the header only: the size is known before any pixel is decoded
            if im.width * im.height > MAX_PIXELS:
                raise RowError(f"{name}: a {im.width}x{im.height} image; the service decodes at most {MAX_PIXELS:,} "
                               f"pixels per row (a few bytes of PNG can claim gigabytes)")
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except Image.DecompressionBombError:  # Pillow's own limit, above ours: the same refusal
        raise RowError(f"{name}: an image of more than {MAX_PIXELS:,} pixels; the service does not decode it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise RowError(f"{name}: not a readable image ({type(e).__name__}: {str(e)[:120]})") from None
    return arr[None].copy() if channels == 1 else arr.transpose(2, 0, 1).copy()


def _under_root(value, p: Payload):
    """The file a path payload names, only inside p.root (links followed before the check)."""
    from pathlib import Path

    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise RowError(f"column {p.column}: expected a file path, got {value!r}"[:200])
    root = Path(p.root).resolve()
    path = (root / value).resolve()
    if not path.is_relative_to(root):
        raise RowError(f"column {p.column}: path {value!r} leaves the root folder {p.root}; only files under it are "
                       f"read"[:300])
    if not path.is_file():
        raise RowError(f"column {p.column}: no file {value!r} under {p.root}"[:300])
    return path
