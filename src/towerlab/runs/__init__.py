"""Records: every folder towerlab writes, and the only code that knows its files by name.

  run.py      a run directory (towerlab train): Run writes it, RunRecord reads it back
  opening.py  opening a run directory for training, on every rank at once (lock, fresh or continue, refusals)
  trial.py    a trial folder (a run started by an executor): Trial and its Result
  search.py   a search folder (towerlab search): SearchFolder
  group.py    a jobs or an ensemble folder: GroupFolder

Commands (train, eval, report, the board, the executor, search, jobs, generate) read and write through these.
`kind(path)` says which of them a folder is.
"""

from __future__ import annotations

from pathlib import Path

from towerlab.runs.group import GroupFolder
from towerlab.runs.run import (
    CONFIG,
    FILES,
    STATUSES,
    Run,
    RunRecord,
    acquire_lock,
    curve,
    default_dir,
    holder,
    newest_change,
    read_config,
    read_metrics,
)
from towerlab.runs.search import GENERATIONS, SearchFolder, is_search
from towerlab.runs.trial import Result, Trial

__all__ = [
    "FILES",
    "STATUSES",
    "GroupFolder",
    "Result",
    "Run",
    "RunRecord",
    "SearchFolder",
    "Trial",
    "acquire_lock",
    "changed",
    "curve",
    "default_dir",
    "holder",
    "kind",
    "read_config",
    "read_metrics",
]


def kind(path: str | Path) -> str | None:
    """search, ensemble, jobs, run, or None for a folder towerlab did not write."""
    path = Path(path)
    if is_search(path):
        return "search"
    group = GroupFolder(path).kind
    if group:
        return group
    return "run" if (path / CONFIG).is_file() else None


def changed(path: str | Path) -> float:
    """When a run's or a search's results last changed (0: never): whether a page made of them is stale."""
    path = Path(path)
    return max(newest_change(path), (path / GENERATIONS).stat().st_mtime if (path / GENERATIONS).is_file() else 0)
