"""A dataset read item by item, for data that need not (or cannot) sit decoded in every process's memory.

`Items` is a split seen one item at a time (a map-style dataset: `len`, `[i]`), over memory-mapped records (IDX,
CIFAR-10's binary batches) or files (an image folder). The two ways to feed the loaders decode through it alike:

- memory: `materialize(items)` decodes every item once into one tensor per field (the fastest way to feed a small
  set, and what the loaders did before streams);
- stream: `StreamReader` decodes, in worker processes (torch.utils.data), the items of exactly the index lists the
  in-memory loader would gather, as batches are needed, a few batches ahead.

So the order stays a pure function of (seed, epoch, batch index) owned by the loader: workers decode, they never
decide; the two ways yield the same batches, bit for bit, and a resumed stream starts at the same batch.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from towerlab.config import parse_bytes
from towerlab.errors import DataError


class Items(torch.utils.data.Dataset):
    """A split, one item (a tuple of tensors: the image, its label) at a time."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def item_bytes(self) -> int:
        """Bytes one decoded item holds (the memory estimate that decides between memory and stream)."""
        return sum(t.numel() * t.element_size() for t in self[0]) if len(self) else 0

    def describe(self, i: int) -> str:
        """What item i is read from, for an error line (a file's path, a record's place)."""
        return f"item {i}"

    def subset(self, idx: torch.Tensor) -> Items:
        return Subset(self, idx)

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        """These items stacked, one tensor per field (a format that can read many at once does it faster)."""
        return self.stack([self[i] for i in idx])

    def stack(self, rows: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """Items made one batch, a tensor per field (items of different sizes: padded, see segmentation.PairItems)."""
        return tuple(torch.stack(field) for field in zip(*rows))


class Subset(Items):
    def __init__(self, items: Items, idx: torch.Tensor):
        self.items, self.idx = items, idx.tolist()

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int):
        return self.items[self.idx[i]]

    def stack(self, rows):
        return self.items.stack(rows)

    def item_bytes(self) -> int:
        return self.items.item_bytes()

    def describe(self, i: int) -> str:
        return self.items.describe(self.idx[i])


class TensorItems(Items):
    """Tensors already in memory (scikit-learn's digits), seen as items."""

    def __init__(self, tensors: tuple[torch.Tensor, ...]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i: int):
        return tuple(t[i] for t in self.tensors)

    def subset(self, idx: torch.Tensor) -> TensorItems:
        return TensorItems(tuple(t[idx] for t in self.tensors))


class Drawn(Items):
    """One epoch's items in the order it visits them, each through a transform with random numbers drawn for its
    position (segmentation's scale and crop, done where the item is read: in the stream's workers): position p is
    items[order[p]] transformed with draws[p]. The numbers come from (seed, epoch) alone, so every process, either
    loader and a resumed run transform each position the same way."""

    def __init__(self, items: Items, order: torch.Tensor, draws: torch.Tensor, transform):
        self.items, self.order, self.draws, self.transform = items, order, draws, transform

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, p: int):
        return self.transform(self.items[int(self.order[p])], self.draws[p])

    def describe(self, p: int) -> str:
        return self.items.describe(int(self.order[p]))


class RecordItems(Items):
    """Fixed-size records of memory-mapped files (CIFAR-10's batches, IDX files): nothing is read until an item is
    asked for, and then only its bytes (the page cache is the machine's, shared by every process).

    arrays: (images [N, ...] uint8, labels [N]) pairs per file, np.memmap views; labels are int64 items."""

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]], sources: list[Path]):
        self.parts, self.sources = parts, sources
        self.starts = np.cumsum([0] + [len(p[0]) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _where(self, i: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return k, i - int(self.starts[k])

    def __getitem__(self, i: int):
        k, j = self._where(i)
        images, labels = self.parts[k]
        return torch.from_numpy(np.array(images[j])), torch.tensor(int(labels[j]), dtype=torch.int64)

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        """One vectorized read per file for the whole batch (each record a few hundred bytes)."""
        where = np.asarray(idx, dtype=np.int64)
        k = np.searchsorted(self.starts, where, side="right") - 1
        images = np.empty((len(idx), *self.parts[0][0].shape[1:]), dtype=np.uint8)
        labels = np.empty(len(idx), dtype=np.int64)
        for part in np.unique(k):
            mine = np.flatnonzero(k == part)
            local = where[mine] - self.starts[part]
            images[mine] = self.parts[part][0][local]
            labels[mine] = self.parts[part][1][local]
        return torch.from_numpy(images), torch.from_numpy(labels)

    def item_bytes(self) -> int:
        return int(np.prod(self.parts[0][0].shape[1:])) + 8 if self.parts else 0

    def describe(self, i: int) -> str:
        k, j = self._where(i)
        return f"record {j} of {self.sources[k]}"


class FileItems(Items):
    """Image files with their labels, each decoded (converted and resized to `shape`) when asked for."""

    def __init__(self, pairs: list[tuple[Path, int]], shape: tuple[int, int, int]):
        self.pairs, self.shape = pairs, shape

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        from towerlab.data.images import read_image

        path, label = self.pairs[i]
        c, h, w = self.shape
        return read_image(path, c, (h, w)), torch.tensor(label, dtype=torch.int64)

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        """The batch's files decoded straight into one uint8 array (no tensor an item, no second copy to stack)."""
        from towerlab.imagefile import BadImage, decode

        c, h, w = self.shape
        images = np.empty((len(idx), c, h, w), dtype=np.uint8)
        for k, i in enumerate(idx):
            path = self.pairs[i][0]
            try:
                arr = decode(path, "L" if c == 1 else "RGB", (h, w))
            except BadImage as e:
                raise DataError(f"image {path}: {e}; replace or remove the file") from None
            images[k] = arr if c == 1 else arr.transpose(2, 0, 1)
        labels = torch.tensor([self.pairs[i][1] for i in idx], dtype=torch.int64)
        return torch.from_numpy(images), labels

    def item_bytes(self) -> int:
        return int(np.prod(self.shape)) + 8

    def describe(self, i: int) -> str:
        return f"file {self.pairs[i][0]}"


def materialize(items: Items, what: str) -> tuple[torch.Tensor, ...]:
    """Every item decoded once into one tensor per field (the in-memory way), with a bar for a long read."""
    from towerlab.progress import bar

    if isinstance(items, TensorItems):
        return items.tensors
    if not len(items):
        raise DataError(f"no {what} items")
    first = items[0]
    out = tuple(torch.empty((len(items), *t.shape), dtype=t.dtype) for t in first)
    for i in bar(range(len(items)), f"reading {what} items", unit="item", min_total=2000):
        for field, t in zip(out, items[i] if i else first):
            field[i] = t
    return out


# -- the stream ---------------------------------------------------------------------------------------------------
class _Bad:
    """What a worker returns for an item it could not read: the reason travels to the main process."""

    def __init__(self, why: str):
        self.why = why


class _Guarded(torch.utils.data.Dataset):
    """The items as workers read them, a batch at a time (stacked in the worker: one transfer a field, not one an
    item). Each worker says in shared memory which item it is reading, so a worker that dies is reported with its
    file; a failure becomes a _Bad naming the item (or, with skip_bad, that item is replaced by the next one that
    reads, the same one every time)."""

    def __init__(self, items: Items, busy: torch.Tensor, skip_bad: bool):
        self.items, self.busy, self.skip_bad = items, busy, skip_bad

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, idx: list[int]):
        info = torch.utils.data.get_worker_info()
        slot = info.id if info is not None else 0
        if not idx:
            return "empty"
        try:
            self.busy[slot] = idx[0]
            return self.items.batch(idx), 0
        except Exception:  # noqa: BLE001 -- the fast read failed: read one item at a time, which names the bad one
            return self._one_by_one(idx, slot)

    def _one_by_one(self, idx: list[int], slot: int):
        rows, skipped = [], 0
        for i in idx:
            found = self._one(i, slot)
            if isinstance(found, _Bad):
                return found
            rows.append(found[0])
            skipped += found[1] > 0
        self.busy[slot] = -1
        return self.items.stack(rows), skipped

    def _one(self, i: int, slot: int):
        n = len(self.items)
        for step in range(n if self.skip_bad else 1):
            j = (i + step) % n
            self.busy[slot] = j
            try:
                return self.items[j], step
            except Exception as e:  # noqa: BLE001 -- any failure to read one item is said with the item's name
                why = str(e) if isinstance(e, DataError) else f"{self.items.describe(j)}: {type(e).__name__}: {e}"
                if not self.skip_bad:
                    self.busy[slot] = -1
                    return _Bad(why)
        self.busy[slot] = -1
        return _Bad(f"no item of the split can be read (the last: {self.items.describe(i)})")


def _collate(got):
    return got  # the worker stacked the batch already (or says what went wrong)


@dataclass(eq=False)  # readers are told apart by identity (the set of active ones)
class StreamReader:
    """Reads the items of given index lists in `workers` processes, a few batches ahead, and stacks them."""

    items: Items
    workers: int = 2
    prefetch: int = 4  # batches each worker reads ahead
    skip_bad: bool = False
    pin: bool = False  # page-locked batches for a fast copy to the GPU

    def __post_init__(self):
        self.busy = torch.full((max(self.workers, 1),), -1, dtype=torch.int64).share_memory_()
        self.skipped = 0  # items replaced by the next readable one (skip_bad), this process, so far
        self._empty = None
        self._passes = []  # the loader iterators of the passes open now (their workers run)
        self.reading = self.items

    def __len__(self) -> int:
        return len(self.items)

    def empty(self) -> tuple[torch.Tensor, ...]:
        """A batch of no items (a process with nothing to evaluate still runs the model once)."""
        if self._empty is None:
            self._empty = tuple(t.new_empty((0, *t.shape)) for t in self.items[0])
        return self._empty

    def read(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        """These items, read here in this process (a report's few pictures)."""
        return self._stack(self._guarded(self.items).__getitems__(list(idx)))

    def _guarded(self, items: Items) -> _Guarded:
        return _Guarded(items, self.busy, self.skip_bad)

    def batches(self, index_lists: list[list[int]], items: Items | None = None):
        """The stacked batches of the index lists, in order; items: what the indices index (a Drawn view of this
        reader's items for one epoch), by default this reader's items."""
        if not index_lists:
            return
        _ACTIVE.add(self)
        self.reading = items or self.items  # what a dead worker's index names
        loader = torch.utils.data.DataLoader(
            self._guarded(self.reading),
            batch_sampler=index_lists,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=False,
            prefetch_factor=self.prefetch if self.workers else None,
            worker_init_fn=_worker_init,
            multiprocessing_context="fork" if self.workers else None,
            # its own generator: a DataLoader draws its workers' seed from the one it is given, and from the
            # process's global one otherwise, which would shift every augmentation drawn after it
            generator=torch.Generator(),
        )
        rows_of = iter(loader)
        self._passes.append(rows_of)
        try:
            for rows in rows_of:
                yield self._stack(rows)
        except RuntimeError as e:
            died = worker_death(e)
            if died is None:
                raise
            raise died from None
        finally:
            self._passes.remove(rows_of)

    def stop(self) -> None:
        """Ends the workers of every open pass. After one worker died this must happen at once: PyTorch's SIGCHLD
        handler raises the death again at every later signal (the other workers exiting) wherever the main process
        is then, in the cleanup that writes the run's status, say, where it would replace the one line."""
        from torch.utils.data._utils import signal_handling

        for rows_of in list(self._passes):
            if getattr(rows_of, "_worker_pids_set", False):  # unregistered first: the shutdown's own joins and
                signal_handling._remove_worker_pids(id(rows_of))  # the workers' exits send SIGCHLDs of their own
                rows_of._worker_pids_set = False
            shutdown = getattr(rows_of, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def _stack(self, got) -> tuple[torch.Tensor, ...]:
        if isinstance(got, _Bad):
            raise DataError(
                f"{got.why} (read while training); replace or remove it, or pass --skip-bad-files, then --resume"
            )
        if isinstance(got, str):  # "empty": this process has no items in the batch
            return self.empty()
        batch, skipped = got
        self.skipped += skipped
        return tuple(t.pin_memory() for t in batch) if self.pin else batch


_ACTIVE: weakref.WeakSet[StreamReader] = weakref.WeakSet()  # readers whose workers run now


def worker_death(e: BaseException) -> DataError | None:
    """The one line for a data worker that died (SIGKILLed by the OOM killer, say), naming what it was reading; None
    when `e` is something else. PyTorch raises it from its SIGCHLD handler wherever the main process happens to be
    (inside the model, often), so the training loop asks here."""
    # the loader's own report, or, when the worker died mid-message, the pipe to it broken under the reader
    broken = isinstance(e, (ConnectionResetError, BrokenPipeError, EOFError)) and bool(list(_ACTIVE))
    if not broken and (not isinstance(e, RuntimeError) or "DataLoader worker" not in str(e)):
        return None
    reading = [r.reading.describe(int(i)) for r in list(_ACTIVE) for i in r.busy.tolist() if i >= 0]
    for reader in list(_ACTIVE):
        reader.stop()
    return DataError(
        f"a data worker died ({(str(e).splitlines() or [type(e).__name__])[0].strip()}) while reading "
        f"{', '.join(reading) or 'no item'}; check that file and the machine's memory, then --resume"
    )


def _worker_init(worker_id: int) -> None:
    """A worker decodes with one thread (the workers are the parallelism) and keeps the main process's torch RNG
    out of it: nothing random happens in a worker."""
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


# -- memory or stream ---------------------------------------------------------------------------------------------
def machine_memory() -> int:
    """Physical memory of this machine in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget() -> int:
    """What the decoded data of all processes on a machine may take unless --data-memory says: half its memory (the
    other half is the models, the optimizer states, the workers and everything else on it)."""
    return machine_memory() // 2


def local_processes() -> int:
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 alone)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)


@dataclass(frozen=True)
class Choice:
    stream: bool
    line: str  # said once at the start, on rank 0


def choose(mode: str, data_memory: str, splits: list[Items]) -> Choice:
    """memory or stream for these splits: `mode` when it is one of them; auto: memory when every process's copy of
    the decoded splits fits the budget."""
    decoded = sum(len(s) * s.item_bytes() for s in splits)
    procs = local_processes()
    budget = parse_bytes(data_memory) if data_memory else default_budget()
    stream = mode == "stream" or (mode == "auto" and decoded * procs > budget)
    how = "streamed from its files by worker processes" if stream else "decoded into memory"
    why = (
        f"--loader {mode}"
        if mode != "auto"
        else f"{_size(decoded * procs)} for {procs} process(es) {'>' if stream else '<='} {_size(budget)} "
        f"(--data-memory)"
    )
    items = " + ".join(f"{len(s):,}" for s in splits)
    return Choice(stream, f"data: {items} items, {_size(decoded)} decoded: {how} ({why})")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
