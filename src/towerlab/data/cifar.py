"""CIFAR-10 in its binary version (fixed 3,073-byte records) and its Python version.

The Python version is a pickle. We never hand it to pickle.load: a restricted unpickler admits only
what rebuilds a numpy array and then checks that the result is exactly the expected dict of arrays.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch

from towerlab.errors import DataError

RECORD = 1 + 3 * 32 * 32
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FETCH_HINT = "re-download it with `towerlab data fetch cifar10 DIR`"


def read_binary(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,3,32,32], labels uint8 [N]); N from the file size."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) == 0 or len(raw) % RECORD:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
            f"(truncated or not CIFAR-10 binary); {_FETCH_HINT}"
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels, images = records[:, 0], records[:, 1:].reshape(-1, 3, 32, 32)
    if labels.max() > 9:
        raise DataError(f"{path}: label byte {labels.max()} outside 0..9 (not CIFAR-10 binary?); {_FETCH_HINT}")
    return images, labels


def _latin1_bytes(text, encoding: str = "latin1") -> bytes:
    """What a protocol-2 pickle written by Python 3 calls to rebuild a bytes object: _codecs.encode(str, 'latin1').
    Only that: latin-1 maps one character to one byte, so nothing grows. (_codecs.encode itself also runs the hex,
    base64 and zlib codecs: a 549-byte file chained them into 1.7 GB.)"""
    if not isinstance(text, str) or encoding.lower().replace("-", "").replace("_", "") != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds what a CIFAR-10 batch holds (a dict of bytes, lists of ints and uint8 numpy arrays); any other
    global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


# an official batch is 31 MB for 10,000 images; a pickle holds its arrays' bytes, so it cannot be much smaller
MAX_BATCH_BYTES = 256 * 2**20


def read_python_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,3,32,32], labels uint8 [N]) from one pickled batch of the Python version."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BATCH_BYTES:
        raise DataError(f"{path}: {size:,} bytes is far more than a CIFAR-10 batch (about 31 MB); {_FETCH_HINT}")
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as e:  # any failure to parse is a bad file, whatever pickle raised
        raise DataError(f"{path}: not a CIFAR-10 python batch ({str(e)[:200]}); {_FETCH_HINT}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict of arrays, found {type(obj).__name__}; {_FETCH_HINT}")
    data, labels = obj.get(b"data", obj.get("data")), obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be a uint8 array [N, 3072]; {_FETCH_HINT}")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: 'labels' must be N integers in 0..9; {_FETCH_HINT}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.uint8)


def _layout(root: Path) -> tuple[str, Path]:
    for kind, sub in (("binary", "cifar-10-batches-bin"), ("python", "cifar-10-batches-py")):
        for folder in (root / sub, root):
            suffix = ".bin" if kind == "binary" else ""
            if (folder / f"test_batch{suffix}").is_file():
                return kind, folder
    raise DataError(
        f"no CIFAR-10 data under {root}: expected cifar-10-batches-bin/test_batch.bin "
        f"or cifar-10-batches-py/test_batch; {_FETCH_HINT}"
    )


def load_split(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,3,32,32], labels int64 [N]) of 'train' (every data_batch_k present) or 'test'."""
    kind, folder = _layout(Path(root))
    suffix, reader = (".bin", read_binary) if kind == "binary" else ("", read_python_batch)
    if split == "test":
        paths = [folder / f"test_batch{suffix}"]
    else:
        paths = [
            folder / f"data_batch_{k}{suffix}" for k in range(1, 6) if (folder / f"data_batch_{k}{suffix}").is_file()
        ]
        if not paths:
            raise DataError(f"no CIFAR-10 training batches (data_batch_1{suffix} ...) in {folder}; {_FETCH_HINT}")
    parts = [reader(p) for p in paths]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def items(root: str | Path, split: str):
    """'train' or 'test' as Items (data/stream.py): images [3, 32, 32] uint8 and int64 labels. The binary version's
    records are memory-mapped (nothing read until an item is); the Python version is a pickle, decoded whole."""
    from towerlab.data.stream import RecordItems, TensorItems

    kind, folder = _layout(Path(root))
    if kind == "python":
        return TensorItems(load_split(root, split))
    paths = (
        [folder / "test_batch.bin"]
        if split == "test"
        else [folder / f"data_batch_{k}.bin" for k in range(1, 6) if (folder / f"data_batch_{k}.bin").is_file()]
    )
    if not paths:
        raise DataError(f"no CIFAR-10 training batches (data_batch_1.bin ...) in {folder}; {_FETCH_HINT}")
    parts = []
    for p in paths:
        size = p.stat().st_size
        if size == 0 or size % RECORD:
            raise DataError(
                f"{p}: {size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records "
                f"(truncated or not CIFAR-10 binary); {_FETCH_HINT}"
            )
        records = np.memmap(p, dtype=np.uint8, mode="r").reshape(-1, RECORD)
        labels = np.asarray(records[:, 0])  # one byte a record: read whole, checked once
        if labels.max() > 9:
            raise DataError(f"{p}: label byte {labels.max()} outside 0..9 (not CIFAR-10 binary?); {_FETCH_HINT}")
        parts.append((records[:, 1:].reshape(-1, 3, 32, 32), labels))
    return RecordItems(parts, paths)
