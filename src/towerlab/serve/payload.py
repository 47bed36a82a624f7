"""One database row -> a uint8 image, by its payload kind (kinds.py), and what the kinds share: the row error,
the normalisation of a matrix, paths kept under a root, and the checks made before the first row (column types,
the model's input size). A bad row raises RowError with the reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from towerlab.serve.settings import Normalize, Payload

_F32_MAX = float(np.finfo(np.float32).max)


class RowError(ValueError):
    """This row cannot be graded; the message is stored in the outcome table."""


def finite_matrix(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [height, width] from float64 values; a NaN, an infinity or a value past float32's range is the row's
    error (finite here, it would be infinite in the model's float32)."""
    if len(values) and not np.isfinite(values).all():
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise RowError(f"value {i} is {values[i]} (NaN or infinite)")
    big = np.abs(values) > _F32_MAX
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise RowError(f"value {i} is {values[i]:g}, outside float32's range (+-{_F32_MAX:.4g})")
    return values.reshape(height, width).astype(np.float32)


def to_image(m: np.ndarray, norm: Normalize) -> np.ndarray:
    """uint8 [1, H, W]: the matrix mapped to 0..1 (min-max per row, fixed affine, or as is), clipped, x255."""
    if norm.kind == "minmax":
        lo, hi = float(m.min()), float(m.max())
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    elif norm.kind == "fixed":
        m = (m - norm.offset) / norm.scale
    m = np.clip(m, 0.0, 1.0)
    return np.rint(m * 255.0).astype(np.uint8)[None]


def to_input(row: dict, p: Payload, normalize: Normalize, input_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 [C, H, W] at the model's input size, by the payload's kind (kinds.py); a payload of another size is
    this row's error unless p.resize is on."""
    from towerlab.serve.kinds import kind_of

    c, h, w = input_shape
    kind = kind_of(p)
    image = kind.read(row, p, normalize, c, (h, w) if p.resize else None)
    if image.shape[-2:] != (h, w) and not p.resize:
        raise RowError(
            f"payload is {image.shape[-2]}x{image.shape[-1]} but the model takes {h}x{w}; send {h}x{w} "
            f"{'pixels' if kind.pictures else 'values'} or set payload.resize: true"
        )
    return image


def _shown(value, limit: int = 80) -> str:
    """A row's value as the error quotes it: its repr, shortened in the middle when long (a 5,000-character path
    must not become a 5,000-character outcome, and the message's own words must survive)."""
    text = repr(value)
    return (
        text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]} ({len(str(value)):,} characters)"
    )


def under_root(value, p: Payload) -> tuple[object, str]:
    """The file a path payload names (and how an error names it), only inside p.root (links followed before the
    check). Whatever the file system says of the path (too long, a loop of links, no permission) is this row's
    error."""
    from pathlib import Path

    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise RowError(f"column {p.column}: expected a file path, got {_shown(value)}")
    try:
        root = Path(p.root).resolve()
        path = (root / value).resolve()
        inside = path.is_relative_to(root)
        found = inside and path.is_file()
    except (OSError, RuntimeError) as e:  # ENAMETOOLONG, ELOOP; Python 3.11's resolve() raises RuntimeError on a loop
        from towerlab.imagefile import reason

        raise RowError(f"column {p.column}: path {_shown(value)} cannot be followed ({reason(e)})") from None
    if not inside:
        raise RowError(
            f"column {p.column}: path {_shown(value)} leaves the root folder {p.root}; only files under it are read"
        )
    if not found:
        raise RowError(f"column {p.column}: no file {_shown(value)} under {p.root}")
    return path, f"column {p.column}: file {_shown(value)}"


# -- what can be checked before the first row: the columns' declared types and the model's input size ----------
def _family(sql_type) -> str | None:
    """binary, text, numeric, or None for a type that is none of them (or unknown: SQLite's untyped columns)."""
    from sqlalchemy import types

    if isinstance(sql_type, types._Binary):
        return "binary"
    if isinstance(sql_type, types.String):
        return "text"
    if isinstance(sql_type, (types.Integer, types.Numeric, types.Boolean)):
        return "numeric"
    if isinstance(sql_type, (types.Date, types.DateTime, types.Time, types.Interval)):
        return "time"
    return None


def column_type_mismatch(p: Payload, column: str, sql_type) -> str | None:
    """Why a column of this declared type cannot hold the payload kind (every row would be an error), or None. Only a
    type of another known family is refused: an untyped or unknown one is given the benefit of the doubt."""
    from towerlab.serve.kinds import kind_of

    family, kind = _family(sql_type), kind_of(p)
    if family is None or family == kind.family:
        return None
    return f"which cannot hold a payload of kind {p.kind}: it needs {kind.needs()}; fix payload.kind or column"


def size_mismatch(p: Payload, input_shape: tuple[int, int, int]) -> str | None:
    """Why a matrix payload's height x width cannot be graded by a model taking input_shape (C, H, W), or None."""
    _, h, w = input_shape
    if p.pictures or p.resize or (p.height, p.width) == (h, w):
        return None
    return (
        f"payload is {p.height}x{p.width} values but the model takes {h}x{w}; set payload height: {h} and "
        f"width: {w}, or payload.resize: true to resize every row"
    )


def failure_kind(error: str) -> str:
    """An error outcome's text with what differs from row to row (quoted values, numbers) taken out: two rows that
    failed for the same reason have the same failure kind."""
    import re

    return re.sub(r"\d+", "#", re.sub(r"'[^']*'|\"[^\"]*\"", "'?'", error))
