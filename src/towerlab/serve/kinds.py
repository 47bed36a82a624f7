"""Payload kinds: one class per way a table row holds a model input, in a registry shaped like the backends'
(run.py) and the dialects' (dialects.py). A kind says which settings it needs, which family of SQL types can hold
it, and how one row becomes a uint8 [C, H, W] image; adding a kind is one class here and one line in KINDS.

    columns   height*width numeric columns, row-major          -> a matrix, normalised
    text      one column of delimited numbers                   -> a matrix, normalised
    blob      one column of little-endian float32 bytes         -> a matrix, normalised
    image     one column holding an image file's bytes          -> decoded at its own size and channels
    path      one column naming an image file under a root      -> decoded at its own size and channels
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from towerlab.serve.payload import RowError, finite_matrix, to_image, under_root

if TYPE_CHECKING:
    from towerlab.serve.settings import Normalize, Payload

# what each family of SQL types is, as a refusal names it
FAMILIES = {
    "binary": "binary (BLOB, bytea, VARBINARY)",
    "text": "text (TEXT, VARCHAR)",
    "numeric": "numeric (INTEGER, REAL, NUMERIC, DOUBLE)",
}
_BYTES = (bytes, bytearray, memoryview)


class Kind:
    name = ""
    family = ""  # the SQL type family its column(s) must belong to (FAMILIES)
    holds = ""  # what the column holds, in a refusal's words
    pictures = False  # an image file decoded at its own size and channels; otherwise a matrix of numbers

    def needs(self) -> str:
        return f"{FAMILIES[self.family]}{': ' + self.holds if self.holds else ''}"

    def check(self, p: Payload) -> None:
        """Raise ValueError naming what the settings lack for this kind."""
        if not self.pictures and (p.height is None or p.width is None):
            raise ValueError(f"kind={self.name} needs height and width: the matrix the values fill")
        if not p.column:
            raise ValueError(f"kind={self.name} needs 'column': the column that holds the values")

    def columns(self, p: Payload) -> list[str]:
        """The SQL columns a row is read from."""
        return [p.column]

    def read(self, row: dict, p: Payload, normalize: Normalize, channels: int, size: tuple[int, int] | None):
        """uint8 [C, H, W] from one row; a bad row raises RowError (or anything its decoder raises)."""
        raise NotImplementedError


class Matrix(Kind):
    """A height x width matrix of numbers, normalised to 0..255 (the model's channels: one)."""

    def values(self, row: dict, p: Payload) -> np.ndarray:
        """float64, height*width long."""
        raise NotImplementedError

    def read(self, row, p, normalize, channels, size):
        return to_image(self.matrix(row, p), normalize)

    def matrix(self, row: dict, p: Payload) -> np.ndarray:
        """float32 [height, width]."""
        return finite_matrix(self.values(row, p), p.height, p.width)


class Columns(Matrix):
    name, family = "columns", "numeric"

    def check(self, p):
        if p.height is None or p.width is None:
            raise ValueError("kind=columns needs height and width: the matrix the values fill")
        if len(p.columns) != p.height * p.width:
            raise ValueError(f"kind=columns needs height*width = {p.height * p.width} columns, got {len(p.columns)}")

    def columns(self, p):
        return p.columns

    def values(self, row, p):
        return np.array([_number(c, row[c]) for c in p.columns], dtype=np.float64)


class Text(Matrix):
    name, family, holds = "text", "text", "delimited numbers"

    def values(self, row, p):
        text, n = row[p.column], p.height * p.width
        if not isinstance(text, str):
            raise RowError(f"column {p.column}: expected delimited text, got {type(text).__name__}")
        parts = text.split(p.delimiter) if text.strip() else []
        if len(parts) != n:
            raise RowError(f"column {p.column}: expected {n} values ({p.height}x{p.width}), got {len(parts)}")
        try:
            return np.array(parts, dtype=np.float64)  # numpy parses the strings in C; ten times Python's float()
        except ValueError:
            bad = next(t.strip() for t in parts if not _is_float(t))
            raise RowError(f"column {p.column}: {bad!r} where a number belongs") from None


class Blob(Matrix):
    name, family, holds = "blob", "binary", "float32 values, little-endian"

    def values(self, row, p):
        blob, n = row[p.column], p.height * p.width
        if not isinstance(blob, _BYTES) or len(blob) != 4 * n:
            size = len(blob) if isinstance(blob, _BYTES) else type(blob).__name__
            raise RowError(f"column {p.column}: expected {4 * n} bytes of float32 ({p.height}x{p.width}), got {size}")
        return np.frombuffer(bytes(blob), dtype="<f4").astype(np.float64)


class Picture(Kind):
    """An image file, decoded by imagefile.decode: only its allow-listed formats, at most max_pixels() pixels
    (checked on the header), resized to size=(H, W) when given."""

    pictures = True

    def source(self, row: dict, p: Payload) -> tuple[object, str]:
        """What to decode (a file-like object or a path) and how an error names it."""
        raise NotImplementedError

    def read(self, row, p, normalize, channels, size):
        from towerlab.imagefile import BadImage, decode

        source, name = self.source(row, p)
        try:
            arr = decode(source, "L" if channels == 1 else "RGB", size)
        except BadImage as e:
            raise RowError(f"{name}: {e}") from None
        return arr[None].copy() if channels == 1 else arr.transpose(2, 0, 1).copy()


class Image(Picture):
    name, family, holds = "image", "binary", "the image file's bytes"

    def source(self, row, p):
        import io

        from towerlab.imagefile import FORMAT_NAMES

        value = row[p.column]
        if not isinstance(value, _BYTES) or not len(value):
            got = "empty bytes" if isinstance(value, _BYTES) else type(value).__name__
            raise RowError(f"column {p.column}: expected the bytes of a {FORMAT_NAMES} image, got {got}")
        return io.BytesIO(bytes(value)), f"column {p.column}"


class Path(Picture):
    name, family, holds = "path", "text", "a file path under root"

    def check(self, p):
        super().check(p)
        from pathlib import Path as FsPath

        if not (p.root and FsPath(p.root).is_dir()):
            raise ValueError(f"kind=path needs 'root': an existing folder the paths are read under (got {p.root!r})")

    def source(self, row, p):
        return under_root(row[p.column], p)


KINDS: dict[str, Kind] = {k.name: k for k in (Columns(), Text(), Blob(), Image(), Path())}


def kind_of(p: Payload) -> Kind:
    return KINDS[p.kind]


def _number(name: str, v) -> float:
    from decimal import Decimal

    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
        raise RowError(f"column {name}: {v!r} where a number belongs")
    return float(v)


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False
