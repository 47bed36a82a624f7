"""Batches straight from tensors, the way the fastest small-image trainers feed a GPU.

The whole dataset sits in one tensor per field (on the accelerator when it fits), a batch is one
index_select, and augmentation runs on the whole batch on the device. Each process takes its own
contiguous slice of every global batch, so N processes see exactly what one process would see in
one global batch, which is what makes data parallelism equal to large-batch training.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from towerlab.data.stream import Drawn, Items, StreamReader, TensorItems, choose, materialize
from towerlab.dist import Dist, print0
from towerlab.errors import ConfigError

ITEM_DRAWS = 4  # uniform numbers an item transform gets per item (segmentation: scale, x, y, mirror)


class TensorLoader:
    """Iterates over global batches of `tensors`; yields this rank's slice, on `dist.device`.

    batch_size is global (all ranks). Training loaders shuffle with a permutation that depends only on
    (seed, epoch), so a resumed run replays the same order; they drop the last partial batch so every
    rank gets equal slices. Evaluation loaders keep every item: rank r takes items r, r+W, ... of each batch.
    """

    skip_empty = False  # an empty slice still goes through the model, so every process runs the same number of
    # forward passes (FSDP gathers parameters collectively in each one)

    def __init__(
        self,
        tensors: tuple | None,
        batch_size: int,
        dist: Dist,
        *,
        train: bool,
        seed: int = 0,
        on_device: bool = True,
        transform: Callable | None = None,
        channels_last: bool = False,
        info: Any = None,
        reader: StreamReader | None = None,
        item_transform: Callable | None = None,
    ):
        """info: what evaluation needs to know of the items (segmentation: the label spec), read as loader.info.
        reader: the items are streamed from their files (data/stream.py) instead of held in `tensors`; the order,
        the slices and the transform are the same. item_transform(item, draws) -> item: applied to each item where
        it is read (the stream's workers), before the batch is made, with ITEM_DRAWS uniform numbers drawn for its
        place in the epoch (segmentation's random scale and crop: a batch of crops, never padded to its largest
        image)."""
        if train and batch_size % dist.world_size:
            raise ValueError(f"batch_size={batch_size} must be divisible by the {dist.world_size} processes")
        self.dist, self.batch_size, self.train, self.seed = dist, batch_size, train, seed
        self.transform, self.channels_last, self.info, self.reader = transform, channels_last, info, reader
        self.item_transform = item_transform
        self.tensors = None if reader else self._store(tensors, dist.device if on_device else torch.device("cpu"))
        self.epoch, self.start = 0, 0

    def _store(self, tensors: tuple, store: torch.device) -> tuple:
        placed = tuple(t.to(store) for t in tensors)
        if store.type == "cpu" and self.dist.device.type == "cuda":
            placed = tuple(t.pin_memory() for t in placed)
        return placed

    @property
    def num_items(self) -> int:
        return len(self.reader) if self.reader else len(self.tensors[0])

    @property
    def epoch_items(self) -> int:
        """Items one epoch visits (a balanced loader repeats the rare class)."""
        return self.num_items

    def __len__(self) -> int:
        n, b = self.epoch_items, self.batch_size
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
        return idx[r * per : (r + 1) * per]

    def local_items(self) -> torch.Tensor:
        """The items this process yields in one pass (from batch 0), in order, as indices into the whole split: what
        puts every process's predictions back in item order."""
        order, b = self._order(), self.batch_size
        return torch.cat([self._local(order[i * b : (i + 1) * b]) for i in range(len(self))] or [torch.zeros(0)]).long()

    def items_at(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The items at these indices as the loader yields them (the transform applied): a report's pictures."""
        if self.reader:
            batch = tuple(t.to(self.dist.device) for t in self.reader.read(idx.tolist()))
        else:
            batch = self._gather(idx.to(self._order_device()))
        return self.transform(*batch) if self.transform else batch

    def first_items(self, n: int) -> tuple[torch.Tensor, ...]:
        """The split's first n items as stored, before any transform (uint8 images: `data export`)."""
        idx = torch.arange(min(n, self.num_items))
        return self.reader.read(idx.tolist()) if self.reader else tuple(t[: len(idx)] for t in self.tensors)

    def _gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.index_select(0, idx).to(self.dist.device, non_blocking=True) for t in self.tensors)

    def _order_device(self) -> torch.device:
        return torch.device("cpu") if self.reader else self.tensors[0].device

    def _draws(self) -> torch.Tensor:
        """The item transform's numbers, a row per place in the epoch, from (seed, epoch) alone (a stream of its
        own: the order's permutation is not shifted by it)."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 2 + 1)
        return torch.rand(self.epoch_items, ITEM_DRAWS, generator=g)

    def _drawn_batches(self, start: int):
        """This process's batches from batch `start`, each item transformed where it is read: the slices are of
        places in the epoch (a Drawn view), read by the stream's workers or here from the held items."""
        held = self.reader.items if self.reader else TensorItems(self.tensors)
        draws = self._draws()
        if not self.reader and len(held):  # the held items may sit on the GPU: their numbers go there once an epoch,
            draws = draws.to(held[0][0].device)  # not once an item
        view, b = Drawn(held, self._order(), draws, self.item_transform), self.batch_size
        lists = [self._local(torch.arange(i * b, min((i + 1) * b, len(view)))) for i in range(start, len(self))]
        lists = [p.tolist() for p in lists if len(p)]
        batches = self.reader.batches(lists, items=view) if self.reader else (view.batch(p) for p in lists)
        for batch in batches:
            yield tuple(t.to(self.dist.device, non_blocking=True) for t in batch)

    def _batches(self, start: int):
        """This process's batches from batch `start` of the epoch, untransformed: gathered from the tensors, or read
        by the stream's workers (the same index lists, so the same items)."""
        if self.item_transform is not None:
            yield from self._drawn_batches(start)
            return
        order, b = self._order().to(self._order_device()), self.batch_size
        lists = [self._local(order[i * b : (i + 1) * b]) for i in range(start, len(self))]
        if self.skip_empty:  # more processes than items left: this rank sits those batches out
            lists = [idx for idx in lists if len(idx)]
        if self.reader:
            for batch in self.reader.batches([idx.tolist() for idx in lists]):
                yield tuple(t.to(self.dist.device, non_blocking=True) for t in batch)
        else:
            yield from (self._gather(idx) for idx in lists)

    def __iter__(self):
        start, self.start = self.start, 0
        for batch in self._batches(start):
            batch = self.transform(*batch) if self.transform else batch
            if self.channels_last and batch[0].ndim == 4:
                batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
            yield batch


class BalancedLoader(TensorLoader):
    """A training TensorLoader whose epochs hold every negative once and as many positives, drawn by cycling
    through shuffled positives: defect-free images far outnumber defective ones, so each batch sees both."""

    def __init__(self, tensors, batch_size: int, dist: Dist, *, positive: torch.Tensor, **kwargs):
        super().__init__(tensors, batch_size, dist, train=True, **kwargs)
        self.pos = positive.nonzero().flatten().cpu()
        self.neg = (~positive).nonzero().flatten().cpu()
        if len(self.pos) == 0 or len(self.neg) == 0:
            raise ValueError("balanced sampling needs both positive and negative items")

    @property
    def epoch_items(self) -> int:
        return 2 * max(len(self.neg), len(self.pos))

    def _order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        half = self.epoch_items // 2
        take = (
            lambda idx: torch.cat(
                [
                    idx[torch.randperm(len(idx), generator=g)]  # noqa: E731
                    for _ in range(-(-half // len(idx)))
                ]
            )[:half]
        )
        both = torch.cat([take(self.neg), take(self.pos)])
        return both[torch.randperm(len(both), generator=g)]


class PaddedLoader(TensorLoader):
    """A TensorLoader over items of different sizes: lists of [..., H, W] tensors, one list per field.

    A batch is padded at the bottom/right to its largest item, with `pad[i]` for field i (0 for images,
    the ignore index for label maps), so padding never counts in a loss or a metric.
    """

    skip_empty = True  # an empty padded batch has no size

    def __init__(
        self,
        items: tuple[list[torch.Tensor], ...],
        batch_size: int,
        dist: Dist,
        *,
        train: bool,
        pad: tuple[float, ...],
        **options,
    ):
        self.pad = pad
        super().__init__(items, batch_size, dist, train=train, **options)

    def _store(self, items: tuple, store: torch.device) -> tuple:
        return tuple([t.to(store) for t in field] for field in items)

    def _order_device(self) -> torch.device:
        return torch.device("cpu")  # list indices are host integers

    def _gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(
            pad_stack([field[i] for i in idx.tolist()], value).to(self.dist.device, non_blocking=True)
            for field, value in zip(self.tensors, self.pad)
        )


@dataclass
class Data:
    """What a recipe's build_data returns: the loaders, and what the model must know of the data (a vocabulary,
    property statistics), which build_model receives."""

    train: TensorLoader
    val: TensorLoader
    meta: dict = field(default_factory=dict)
    test: TensorLoader | None = (
        None  # with --val-fraction: the recipe's own test split, scored at each better validation
    )
    held_out: bool = False  # validation is a held-out part of the training items (--val-fraction)


SPLIT_SEED = 20_190_101  # one held-out split for every run and seed: trials of a search compare on the same items


def hold_out(train: Items, fraction: float) -> tuple[Items, Items]:
    """(the training items left, a validation split of `fraction` of them): a fixed random choice, so any seed, any
    number of processes, any resume and either loader see the same split."""
    n = len(train)
    k = round(n * fraction)
    if not 0 < k < n:
        raise ConfigError(
            f"val_fraction={fraction} of {n} training items leaves {k} for validation and {n - k} for "
            f"training; choose a fraction that leaves both"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    keep, held = order[k:].sort().values, order[:k].sort().values
    return train.subset(keep), train.subset(held)


def _items(split) -> Items | None:
    return TensorItems(split) if isinstance(split, tuple) else split


def tensor_data(
    cfg,
    dist: Dist,
    train: tuple | Items,
    val: tuple | Items | None,
    transform: Callable | None = None,
    val_transform: Callable | None = None,
    held_out: bool = False,
    **meta,
) -> Data:
    """The usual pair: a shuffled training loader and an evaluation loader, with the run's batch size, seed,
    placement and memory layout. The splits are tensors, or Items (data/stream.py) that are decoded into memory or
    streamed by worker processes as cfg.loader and cfg.data_memory choose. With cfg.val_fraction, validation is a
    held-out part of the training items and `val` becomes the test split. held_out: the recipe has held its
    validation split out of the data already, by cfg.val_fraction (the molecule corpus does): nothing is held out
    again."""
    train, val = _items(train), _items(val)
    test = None
    if getattr(cfg, "val_fraction", 0.0) and not held_out:
        train, held = hold_out(train, cfg.val_fraction)
        val, test = held, val  # (a folder of class folders has no test)
    elif val is None:
        raise ConfigError("this data has no validation split: pass --val-fraction F to hold out a part of it")
    splits = [s for s in (train, val, test) if s is not None]
    choice = choose(getattr(cfg, "loader", "memory"), getattr(cfg, "data_memory", ""), splits)
    if not all(isinstance(s, TensorItems) for s in splits):  # files or records: say how they are read (on stderr:
        print0(choice.line, dist=dist, file=sys.stderr)  # `towerlab eval RUN | jq` reads JSON from stdout)
    options = {"on_device": cfg.data_on_device, "channels_last": cfg.channels_last}

    def loader(items: Items, what: str, **kw) -> TensorLoader:
        if choice.stream:
            reader = StreamReader(items, cfg.workers, skip_bad=cfg.skip_bad_files, pin=dist.device.type == "cuda")
            return TensorLoader(None, cfg.batch_size, dist, reader=reader, **options, **kw)
        return TensorLoader(materialize(items, what), cfg.batch_size, dist, **options, **kw)

    evaluation = lambda items, what: loader(items, what, train=False, transform=val_transform or transform)  # noqa: E731
    return Data(
        loader(train, "training", train=True, seed=cfg.seed, transform=transform),
        evaluation(val, "validation"),
        meta,
        evaluation(test, "test") if test is not None else None,
        held_out=held_out or bool(getattr(cfg, "val_fraction", 0.0)),
    )


def limited(loader: TensorLoader, n: int) -> TensorLoader:
    """An evaluation loader over the first n items of `loader` only (the same items on any number of processes)."""
    if n >= loader.num_items:
        return loader
    small = copy.copy(loader)
    if loader.reader:
        small.reader = dataclasses.replace(loader.reader, items=loader.reader.items.subset(torch.arange(n)))
    else:
        small.tensors = tuple(field[:n] for field in loader.tensors)  # tensors or lists of tensors: both slice
    return small


def pad_stack(items: list[torch.Tensor], value: float) -> torch.Tensor:
    """Stack [..., H, W] tensors, padding each at the bottom/right to the largest H and W."""
    if not items:
        raise ValueError("pad_stack of no items")
    h = max(t.shape[-2] for t in items)
    w = max(t.shape[-1] for t in items)
    out = items[0].new_full((len(items), *items[0].shape[:-2], h, w), value)
    for i, t in enumerate(items):
        out[i, ..., : t.shape[-2], : t.shape[-1]] = t
    return out
