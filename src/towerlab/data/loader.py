"""Batches straight from tensors, the way the fastest small-image trainers feed a GPU.

The whole dataset sits in one tensor per field (on the accelerator when it fits), a batch is one
index_select, and augmentation runs on the whole batch on the device. Each process takes its own
contiguous slice of every global batch, so N processes see exactly what one process would see in
one global batch, which is what makes data parallelism equal to large-batch training.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from towerlab.dist import Dist


class TensorLoader:
    """Iterates over global batches of `tensors`; yields this rank's slice, on `dist.device`.

    batch_size is global (all ranks). Training loaders shuffle with a permutation that depends only on
    (seed, epoch), so a resumed run replays the same order; they drop the last partial batch so every
    rank gets equal slices. Evaluation loaders keep every item: rank r takes items r, r+W, ... of each batch.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, dist: Dist, *, train: bool,
                 seed: int = 0, on_device: bool = True, transform: Callable | None = None):
        if train and batch_size % dist.world_size:
            raise ValueError(f"batch_size={batch_size} must be divisible by the {dist.world_size} processes")
        self.dist, self.batch_size, self.train, self.seed = dist, batch_size, train, seed
        self.transform = transform
        store = dist.device if on_device else torch.device("cpu")
        self.tensors = tuple(t.to(store) for t in tensors)
        if not on_device and dist.device.type == "cuda":
            self.tensors = tuple(t.pin_memory() for t in self.tensors)
        self.epoch, self.start = 0, 0
        self.channels_last = False  # the engine sets it when the model is NHWC

    @property
    def num_items(self) -> int:
        return len(self.tensors[0])

    def __len__(self) -> int:
        n, b = self.num_items, self.batch_size
        return n // b if self.train else math.ceil(n / b)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Next iteration yields batches start, start+1, ... of epoch `epoch`."""
        self.epoch, self.start = epoch, start

    def _order(self) -> torch.Tensor:
        if not self.train:
            return torch.arange(self.num_items)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_items, generator=g)

    def _local(self, idx: torch.Tensor) -> torch.Tensor:
        r, w = self.dist.rank, self.dist.world_size
        if not self.train:
            return idx[r::w]
        per = len(idx) // w
        return idx[r * per:(r + 1) * per]

    def __iter__(self):
        order, b = self._order().to(self.tensors[0].device), self.batch_size
        start, self.start = self.start, 0
        for i in range(start, len(self)):
            idx = self._local(order[i * b:(i + 1) * b])
            batch = tuple(t.index_select(0, idx).to(self.dist.device, non_blocking=True) for t in self.tensors)
            batch = self.transform(*batch) if self.transform else batch
            if self.channels_last and batch[0].ndim == 4:
                batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
            yield batch
