"""What every molecule optimiser shares: each molecule scored once (by canonical SMILES, a cache the optimiser and
its outputs read), within an optional bound on objective calls, a first pool taken from the best of a file, and a
journal of every score so that a long search saves only what is new."""

from __future__ import annotations

import json
import os
import random
from itertools import islice
from pathlib import Path

from towerlab.chem import props
from towerlab.chem.objectives import Objective
from towerlab.errors import DataError
from towerlab.progress import bar

CHUNK = 2000  # molecules scored per call when a whole file is scored: a progress bar, and GuacaMol's lists stay small


def score_new(
    smiles: list[str], objective: Objective, seen: dict[str, float | None], max_calls: int = 0
) -> list[str | None]:
    """Score the canonical forms not seen before, in first-seen order, within max_calls objective calls in all
    (0: no bound; the molecules past it stay unscored). Invalid SMILES are counted by the objective, never scored.
    Returns each SMILES's canonical form (None: not a molecule), so no caller runs RDKit over them again."""
    canon = [props.canonical(s) for s in smiles]
    objective.invalid += sum(c is None for c in canon)
    new = [c for c in dict.fromkeys(c for c in canon if c) if c not in seen]
    if max_calls:
        new = new[: max(0, max_calls - objective.calls)]
    for c, v in zip(new, objective(new)):
        seen[c] = v
    return canon


def ranked(seen: dict[str, float | None], among: list[str] | None = None) -> list[str]:
    """The scored molecules (of `among`, or all), best first; ties broken by SMILES so the order is reproducible."""
    pool = seen if among is None else dict.fromkeys(among)
    return sorted((c for c in pool if seen.get(c) is not None), key=lambda c: (-seen[c], c))


class JsonLines:
    """An append-only file of JSON lines, one item a line, whose owner's checkpoint records only how many lines are
    its own: a long search then checkpoints in constant time (rewritten every generation, 300k scores are 17 MB of
    JSON and 10,000 generations of history a few MB: the checkpoint would cost more than the generation)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def items(self, n: int | None = None) -> list:
        """The first n items (all whole lines when None; a line cut by a kill is not one), and the file cut to
        exactly them: lines past a checkpoint belong to work that is done again, to the same items."""
        items, size = [], 0
        if self.path.is_symlink():  # it is cut to its whole lines below: never a file a planted link points at
            raise DataError(f"{self.path} is a link; a search's journal must be its own file (delete the link)")
        if self.path.is_file():
            with open(self.path, "rb") as f:
                for line in f:
                    if (n is not None and len(items) >= n) or not line.endswith(b"\n"):
                        break
                    try:
                        items.append(json.loads(line))
                    except ValueError:
                        break
                    size += len(line)
        if n is not None and len(items) < n:
            raise DataError(
                f"{self.path} holds {len(items)} entries where its search's checkpoint counts {n}; "
                f"delete {self.path.parent} to start the search again"
            )
        if self.path.is_file() and self.path.stat().st_size != size:
            os.truncate(self.path, size)
        return items

    def add(self, items: list) -> None:
        """Append these items, flushed to disk before a checkpoint may count them; never through a link planted
        at the path."""
        if not items:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(json.dumps(item).encode() + b"\n" for item in items))
            f.flush()
            os.fsync(f.fileno())


class Journal(JsonLines):
    """Every scored molecule, appended as it is scored: one line [canonical SMILES, score or null], in call order;
    a first pool scored from a large file (minutes to tens of minutes) continues after a kill from its last chunk."""

    def read(self, n: int | None = None) -> dict[str, float | None]:
        return {smiles: value for smiles, value in self.items(n)}

    def append(self, seen: dict[str, float | None], known: int) -> None:
        """Journal the scores added to `seen` after its first `known` (read from its end: a dict keeps insertion
        order, and slicing all of it would cost O(every score) per generation)."""
        new = list(islice(reversed(seen), len(seen) - known))
        self.add([[c, seen[c]] for c in reversed(new)])


def best_of_file(
    path: str,
    objective: Objective,
    n: int,
    seen: dict,
    limit: int = 0,
    seed: int = 0,
    max_calls: int = 0,
    journal: Journal | None = None,
) -> list[str]:
    """The n best molecules of a SMILES file by the objective (GuacaMol's baselines start from the top of their
    training file), each scored once; `limit` > 0 scores a seeded draw of that many. With a journal, each chunk's
    scores are appended as they come and a start cut off by a kill continues after its last whole chunk (`seen`
    must then begin empty). A file without two valid molecules is one line, never an empty pool."""
    from towerlab.chem.file_cache import canonical_forms
    from towerlab.data import smiles as smiles_data

    # the forms the corpus reader caches by file content: a run's training file was canonicalised when it trained
    canon = sorted({c for c in canonical_forms(smiles_data.read(path)) if c})
    if len(canon) < 2:
        raise DataError(f"{path}: {len(canon)} valid molecule(s); give a SMILES file with at least 2 to start from")
    if limit and len(canon) > limit:
        canon = sorted(random.Random(seed).sample(canon, limit))
    if journal is not None and (done := journal.read()):  # the calls already paid for: counted, not made again
        seen.update(done)
        objective.calls += len(done)
        objective.failed += sum(v is None for v in done.values())
        print(f"{len(done)} of them scored before the run was stopped ({journal.path})", flush=True)
    print(
        f"scoring the {len(canon)} molecules of {path} to start from the best {n} (--start-limit N scores a draw of N)",
        flush=True,
    )
    for i in bar(
        range(0, len(canon), CHUNK),
        f"scoring {Path(path).name}",
        total=-(-len(canon) // CHUNK),
        unit="chunk",
        min_total=2,
    ):
        known = len(seen)
        score_new(canon[i : i + CHUNK], objective, seen, max_calls)
        if journal is not None:
            journal.append(seen, known)
    return ranked(seen, canon)[:n]


def top_k_walk(scores: list[float | None], k: int = 10):
    """For each call in order: (call number, its score, whether it entered the k best so far, the mean of the k best
    so far). A failed call (None) scores 0. The walk behind PMO's curve (auc_top) and behind the list of molecules
    that were ever among the k best (what a reader needs to redraw the curve)."""
    import heapq

    top: list[float] = []  # the k best so far, a min-heap
    for i, v in enumerate(scores, 1):
        v = 0.0 if v is None else float(v)
        entered = len(top) < k or v > top[0]
        if len(top) < k:
            heapq.heappush(top, v)
        elif entered:
            heapq.heapreplace(top, v)
        yield i, v, entered, sum(top) / len(top)


def auc_top(scores: list[float | None], k: int = 10, budget: int = 0, every: int = 100) -> float:
    """PMO's main metric (Gao et al. 2022, "Sample efficiency matters"): the area under the curve of the mean of
    the k best scores found so far against the number of oracle calls, divided by the budget, so 1.0 means a
    perfect molecule found on the first call. `scores` are in call order, one per call (None, a failed call,
    counts as 0, as PMO scores what it cannot score). The curve is read every `every` calls and at the last call,
    joined by straight lines from 0 at call 0; a run that ends before the budget keeps its last value to the end
    (PMO's rule for a finished run); calls past the budget are not counted."""
    budget = budget or len(scores)
    area, last_x, last_y, n = 0.0, 0, 0.0, min(len(scores), budget)
    for i, _, _, y in top_k_walk(scores[:budget], k):
        if i % every == 0 or i == n:
            area += (i - last_x) * (y + last_y) / 2
            last_x, last_y = i, y
    area += (budget - last_x) * last_y
    return area / budget if budget else 0.0


def summary(seen: dict[str, float | None], max_calls: int = 0) -> dict:
    """What a finished optimisation reached: calls, the best, the means of the 1/10/100 best, and PMO's area under
    the top-10 curve at the budget (`max_calls`, or the calls made when there was none). `seen` is in call order."""
    best = [seen[c] for c in ranked(seen)]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "scoring_calls": len(seen),
        "best": best[0] if best else None,
        "top10_mean": mean(best[:10]),
        "top100_mean": mean(best[:100]),
        "budget": max_calls or len(seen),
        "auc_top10": auc_top(list(seen.values()), 10, max_calls or len(seen)),
    }
