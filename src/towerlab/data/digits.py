"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 scans (UCI), installed with scikit-learn, no download.

The file is read where scikit-learn keeps it (datasets/data/digits.csv.gz, the file its load_digits reads) without
importing scikit-learn: that import (scipy, pandas) cost 1.5-3 s at the start of every digits process, the most of
a search trial's start after torch's own."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from towerlab.errors import DataError

# A fixed split, independent of the training seed, so every run evaluates on the same 360 images.
_SPLIT_SEED = 0
_N_VAL = 360


def _file() -> Path:
    """scikit-learn's digits.csv.gz, found without running scikit-learn's import."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise DataError(
            "the digits dataset ships with scikit-learn, which is not installed here; fix: pip install scikit-learn"
        )
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DataError(
            f"{path} (the digits scans scikit-learn ships) is missing; fix: pip install --force-reinstall scikit-learn"
        )
    return path


@functools.cache
def _table() -> np.ndarray:
    """The file's rows, parsed once a process (the train and the test split both come from it)."""
    with gzip.open(_file(), "rt") as f:
        return np.loadtxt(f, delimiter=",")


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images float64 [1797,8,8] in 0..16, labels int64 [1797]): the rows of load_digits(), in its order; copies,
    so a caller's changes never reach the parsed table."""
    table = _table()
    return table[:, :-1].reshape(-1, 8, 8).copy(), table[:, -1].astype(np.int64)


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,1,8,8] scaled 0..16 -> 0..255, labels int64 [N]) for 'train' or 'test'."""
    arrays, targets = load_arrays()
    images = torch.from_numpy(arrays).float().mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(targets).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    idx = order[:_N_VAL] if split == "test" else order[_N_VAL:]
    return images[idx].contiguous(), labels[idx].contiguous()
