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


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: corrupt gzip data ({e}); {_FETCH_HINT}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file as a uint8 array shaped by its header."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number); {_FETCH_HINT}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header; {_FETCH_HINT}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes) but the file holds "
                        f"{len(data) - header} bytes; {_FETCH_HINT}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_split(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,1,28,28], labels int64 [N]) of 'train' or 'test'."""
    root = Path(root)
    img_path, lbl_path = (_find(root, stem) for stem in FILES[split])
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{img_path}: expected images [N,H,W] and labels [N], got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels; {_FETCH_HINT}")
    if labels.max(initial=0) > 9:
        raise DataError(f"{lbl_path}: label {labels.max()} outside 0..9; {_FETCH_HINT}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
