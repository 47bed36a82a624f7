"""What a long phase shows while it runs: a progress bar on stderr, on rank 0 only, for phases over a couple of
seconds (a short one draws nothing). Every loop over a whole dataset outside training goes through `bar`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def bar(
    items: Iterable[T], desc: str, total: int | None = None, unit: str = "item", min_total: int = 2000
) -> Iterator[T]:
    """`items` seen through a tqdm bar named `desc` when there are at least min_total of them, on rank 0."""
    from tqdm import tqdm

    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    quiet = (total is not None and total < min_total) or os.environ.get("RANK", "0") != "0"
    return iter(
        tqdm(items, desc=desc, total=total, unit=unit, leave=False, disable=quiet, dynamic_ncols=True, mininterval=0.5)
    )


def say(message: str) -> None:
    """One line on stderr for a phase that has no count (rank 0 only)."""
    import sys

    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr, flush=True)
