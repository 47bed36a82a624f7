"""Fixtures: tiny datasets written in the real on-disk formats, and the real datasets in ../shared/data."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A 64-train / 32-test MNIST folder in IDX format: train files gzipped, test files plain."""
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", 64, True), ("t10k", 32, False)):
        suffix = ".gz" if gz else ""
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), gz)
    return tmp_path


def cifar_records(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, (n, 1), dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1).tobytes()


@pytest.fixture
def cifar_bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(cifar_records(48, 1))
    (folder / "data_batch_2.bin").write_bytes(cifar_records(16, 2))
    (folder / "test_batch.bin").write_bytes(cifar_records(20, 3))
    return tmp_path


def write_cifar_python_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """A batch as the official Python version stores it: a protocol-2 pickle of a dict with bytes keys."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    path.write_bytes(pickle.dumps({b"batch_label": b"x", b"labels": labels, b"data": data}, protocol=2))
    return data, labels


@pytest.fixture
def shared_data() -> Path:
    """The real datasets (../shared/data or $TOWERLAB_DATA). Skips, saying so, when absent;
    fails instead when TOWERLAB_REQUIRE_DATA=1 (CI), so a missing data folder never passes silently."""
    root = Path(os.environ.get("TOWERLAB_DATA") or REPO.parent / "shared" / "data")
    if not (root / "SOURCES.md").is_file() and not (root / "mnist").is_dir():
        msg = f"real datasets not found at {root}: set TOWERLAB_DATA to the shared data folder"
        if os.environ.get("TOWERLAB_REQUIRE_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m towerlab ARGS` in a fresh process, as a user would run it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "towerlab", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"towerlab {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
