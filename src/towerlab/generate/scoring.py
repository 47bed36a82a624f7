"""What every molecule optimiser shares: each molecule scored once (by canonical SMILES, a cache the optimiser and
its outputs read), within an optional bound on objective calls, and a first pool taken from the best of a file."""

from __future__ import annotations

import random
from pathlib import Path

from towerlab.chem import props
from towerlab.chem.objectives import Objective
from towerlab.errors import DataError
from towerlab.progress import bar

CHUNK = 2000  # molecules scored per call when a whole file is scored: a progress bar, and GuacaMol's lists stay small


def score_new(smiles: list[str], objective: Objective, seen: dict[str, float | None],
              max_calls: int = 0) -> list[str | None]:
    """Score the canonical forms not seen before, in first-seen order, within max_calls objective calls in all
    (0: no bound; the molecules past it stay unscored). Invalid SMILES are counted by the objective, never scored.
    Returns each SMILES's canonical form (None: not a molecule), so no caller runs RDKit over them again."""
    canon = [props.canonical(s) for s in smiles]
    objective.invalid += sum(c is None for c in canon)
    new = [c for c in dict.fromkeys(c for c in canon if c) if c not in seen]
    if max_calls:
        new = new[:max(0, max_calls - objective.calls)]
    for c, v in zip(new, objective(new)):
        seen[c] = v
    return canon


def ranked(seen: dict[str, float | None], among: list[str] | None = None) -> list[str]:
    """The scored molecules (of `among`, or all), best first; ties broken by SMILES so the order is reproducible."""
    pool = seen if among is None else dict.fromkeys(among)
    return sorted((c for c in pool if seen.get(c) is not None), key=lambda c: (-seen[c], c))


def best_of_file(path: str, objective: Objective, n: int, seen: dict, limit: int = 0, seed: int = 0,
                 max_calls: int = 0) -> list[str]:
    """The n best molecules of a SMILES file by the objective (GuacaMol's baselines start from the top of their
    training file), each scored once; `limit` > 0 scores a seeded draw of that many. A file without two valid
    molecules is one line, never an empty pool."""
    from towerlab.chem.corpus import canonical_forms
    from towerlab.data import smiles as smiles_data

    # the forms the corpus reader caches by file content: a run's training file was canonicalised when it trained
    canon = sorted({c for c in canonical_forms(smiles_data.read(path)) if c})
    if len(canon) < 2:
        raise DataError(f"{path}: {len(canon)} valid molecule(s); give a SMILES file with at least 2 to start from")
    if limit and len(canon) > limit:
        canon = sorted(random.Random(seed).sample(canon, limit))
    print(f"scoring the {len(canon)} molecules of {path} to start from the best {n} (--start-limit N scores a "
          f"draw of N)", flush=True)
    for i in bar(range(0, len(canon), CHUNK), f"scoring {Path(path).name}", total=-(-len(canon) // CHUNK),
                 unit="chunk", min_total=2):
        score_new(canon[i:i + CHUNK], objective, seen, max_calls)
    return ranked(seen, canon)[:n]
