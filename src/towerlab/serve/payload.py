"""One database row -> a uint8 image: a matrix of numbers normalised (columns, text, blob), or an image file decoded
(PNG/JPEG bytes in the row, or a path under a root folder). A bad row raises RowError with the reason."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from towerlab.serve.settings import Normalize, Payload

_F32_MAX = float(np.finfo(np.float32).max)


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
    """uint8 [channels, H, W] from the row's image bytes or file path, resized to size=(H, W) when given. Only the
    formats of imagefile.FORMATS are decoded, at most imagefile.max_pixels() pixels, checked on the header."""
    import io

    from towerlab.imagefile import FORMAT_NAMES, BadImage, decode

    value = row[p.column]
    if p.kind == "image":
        if not isinstance(value, (bytes, bytearray, memoryview)) or not len(value):
            got = "empty bytes" if isinstance(value, (bytes, bytearray, memoryview)) else type(value).__name__
            raise RowError(f"column {p.column}: expected the bytes of a {FORMAT_NAMES} image, got {got}")
        source, name = io.BytesIO(bytes(value)), f"column {p.column}"
    else:
        source = _under_root(value, p)
        name = f"column {p.column}: file {_shown(value)}"
    try:
        arr = decode(source, "L" if channels == 1 else "RGB", size)
    except BadImage as e:
        raise RowError(f"{name}: {e}") from None
    return arr[None].copy() if channels == 1 else arr.transpose(2, 0, 1).copy()


def _shown(value, limit: int = 80) -> str:
    """A row's value as the error quotes it: its repr, shortened in the middle when long (a 5,000-character path
    must not become a 5,000-character outcome, and the message's own words must survive)."""
    text = repr(value)
    return (
        text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]} ({len(str(value)):,} characters)"
    )


def _under_root(value, p: Payload):
    """The file a path payload names, only inside p.root (links followed before the check). Whatever the file system
    says of the path (too long, a loop of links, no permission) is this row's error."""
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
    return path


# -- what can be checked before the first row: the columns' declared types and the model's input size ----------
# what each kind needs of its column(s), and the families of SQL types that can never hold it
_NEEDS = {
    "image": "binary (BLOB, bytea, VARBINARY): the image file's bytes",
    "blob": "binary (BLOB, bytea, VARBINARY): float32 values, little-endian",
    "text": "text (TEXT, VARCHAR): delimited numbers",
    "path": "text (TEXT, VARCHAR): a file path under root",
    "columns": "numeric (INTEGER, REAL, NUMERIC, DOUBLE)",
}


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
    family = _family(sql_type)
    wanted = _NEEDS[p.kind].split(" ")[0]
    if family is None or family == wanted:
        return None
    return f"which cannot hold a payload of kind {p.kind}: it needs {_NEEDS[p.kind]}; fix payload.kind or column"


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
