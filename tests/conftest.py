"""Fixtures: tiny datasets written in the real on-disk formats, and the real datasets in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, cifar_records, missing, write_cifar_python_batch, write_idx  # noqa: F401


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A 64-train / 32-test MNIST folder in IDX format: train files gzipped, test files plain."""
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", 64, True), ("t10k", 32, False)):
        suffix = ".gz" if gz else ""
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), gz)
    return tmp_path


@pytest.fixture
def cifar_bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(cifar_records(48, 1))
    (folder / "data_batch_2.bin").write_bytes(cifar_records(16, 2))
    (folder / "test_batch.bin").write_bytes(cifar_records(20, 3))
    return tmp_path


@pytest.fixture
def shared_data() -> Path:
    """The real datasets (../shared/data or $TOWERLAB_DATA). Skips, saying so, when absent;
    fails instead when TOWERLAB_REQUIRE_DATA=1 (CI), so a missing data folder never passes silently."""
    root = Path(os.environ.get("TOWERLAB_DATA") or REPO.parent / "shared" / "data")
    if not (root / "SOURCES.md").is_file() and not (root / "mnist").is_dir():
        missing(f"real datasets not found at {root}: set TOWERLAB_DATA to the shared data folder", "TOWERLAB_REQUIRE_DATA")
    return root

