"""MNIST in LeCun's IDX format (gzipped or not). The item count comes from the header, never assumed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from towerlab.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FETCH_HINT = "re-download it with `towerlab data fetch mnist DIR`"


def _find(root: Path, stem: str) -> Path:
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"MNIST file {root / (stem + '.gz')} not found (plain or .gz); {_FETCH_HINT}")


# MNIST's images compress about 5:1 and its labels 2:1; a gzip that claims more than this per byte on disk is a
# decompression bomb or a lying header, refused before it is expanded
MAX_RATIO = 64


def _open(path: Path):
    """The file as a stream of its IDX bytes (gunzipped as read when it is gzip), and whether it was."""
    f = open(path, "rb")
    gz = f.read(2) == b"\x1f\x8b"
    f.seek(0)
    return (gzip.GzipFile(fileobj=f, mode="rb") if gz else f), f, gz


def _read(f, n: int, path: Path) -> bytes:
    try:
        return f.read(n)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: corrupt gzip data ({e}); {_FETCH_HINT}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file as a uint8 array shaped by its header. The header's size is checked against the file before
    anything is expanded, and exactly that many bytes are read."""
    path = Path(path)
    on_disk = path.stat().st_size
    f, raw, gz = _open(path)
    with raw, f:
        magic = _read(f, 4, path)
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08:
            raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number); {_FETCH_HINT}")
        ndim = magic[3]
        dims = _read(f, 4 * ndim, path)
        if len(dims) < 4 * ndim:
            raise DataError(f"{path}: truncated IDX header; {_FETCH_HINT}")
        shape = struct.unpack(f">{ndim}I", dims)
        expected = int(np.prod(shape, dtype=np.int64))
        limit = MAX_RATIO * on_disk + 2**20 if gz else on_disk  # (slack: a truncated file says so below)
        if expected > limit:
            raise DataError(
                f"{path}: header says shape {shape} ({expected:,} bytes) from a {on_disk:,}-byte file, "
                f"out of proportion; not an MNIST file ({_FETCH_HINT})"
            )
        data = _read(f, expected + 1, path)
    if len(data) != expected:
        held = len(data) if len(data) < expected else f"more than {expected}"
        raise DataError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file holds {held} bytes; {_FETCH_HINT}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def load_split(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,1,28,28], labels int64 [N]) of 'train' or 'test'."""
    root = Path(root)
    img_path, lbl_path = (_find(root, stem) for stem in FILES[split])
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{img_path}: expected images [N,H,W] and labels [N], got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels; {_FETCH_HINT}"
        )
    if labels.max(initial=0) > 9:
        raise DataError(f"{lbl_path}: label {labels.max()} outside 0..9; {_FETCH_HINT}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _header(f, path: Path) -> tuple[int, ...]:
    magic = _read(f, 4, path)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number); {_FETCH_HINT}")
    dims = _read(f, 4 * magic[3], path)
    if len(dims) < 4 * magic[3]:
        raise DataError(f"{path}: truncated IDX header; {_FETCH_HINT}")
    return struct.unpack(f">{magic[3]}I", dims)


def mapped_idx(path: str | Path) -> np.ndarray:
    """An IDX file memory-mapped (nothing read until an item is), shaped by its header. A gzipped one is unpacked
    once into the cache (~/.cache/towerlab/idx, keyed by the file's path, size and time) and that copy mapped."""
    from towerlab.files import atomic_write, cache_dir

    path = Path(path)
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    if gz:
        st = path.stat()
        import hashlib

        key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        plain = cache_dir() / "idx" / f"{path.name.removesuffix('.gz')}-{key}"
        if not plain.is_file():
            data = read_idx(path)  # every check of read_idx: a bomb or a lying header is refused before expanding
            plain.parent.mkdir(parents=True, exist_ok=True)
            header = bytes([0, 0, 8, data.ndim]) + struct.pack(f">{data.ndim}I", *data.shape)
            atomic_write(plain, header + data.tobytes(), sync=False)
        path = plain
    with open(path, "rb") as f:
        shape = _header(f, path)
        offset = f.tell()
    expected = int(np.prod(shape, dtype=np.int64))
    if path.stat().st_size - offset != expected:
        raise DataError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file holds "
            f"{path.stat().st_size - offset} bytes; {_FETCH_HINT}"
        )
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=shape)


def items(root: str | Path, split: str):
    """'train' or 'test' as Items (data/stream.py): images [1, 28, 28] uint8 and int64 labels, read from the
    memory-mapped files one item at a time."""
    from towerlab.data.stream import RecordItems

    root = Path(root)
    img_path, lbl_path = (_find(root, stem) for stem in FILES[split])
    images, labels = mapped_idx(img_path), np.asarray(mapped_idx(lbl_path))  # the labels: 60 KB, read whole
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{img_path}: expected images [N,H,W] and labels [N], got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels; {_FETCH_HINT}"
        )
    if labels.max(initial=0) > 9:
        raise DataError(f"{lbl_path}: label {labels.max()} outside 0..9; {_FETCH_HINT}")
    return RecordItems([(images[:, None], labels)], [img_path])
