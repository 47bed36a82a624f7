"""What every search algorithm shares: evaluating batches of genomes through one fitness cache, the history of its
batches, the best so far, and a checkpoint after every batch in the search folder (runs/search.py).

An algorithm is a BatchSearch with a `run()` that asks for batches of genomes and hands each to `evaluate`, its name
(`algo`, what --algo says), the options it takes (`OPTIONS`, from the command line), and `state`/`load` (what a
re-run resumes from). Listed in search/__init__.py's SEARCHERS, it is a choice of `towerlab search --algo`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from towerlab.runs import SearchFolder
from towerlab.search.space import genome_key

Fitness = Callable[[list[dict]], list[float | None]]  # a batch of genomes -> fitness (None: the trial failed)


def rank_value(f: float | None, maximize: bool) -> float:
    """Sort key: failed trials (None, nan) rank last."""
    if f is None or (isinstance(f, float) and math.isnan(f)):
        return -math.inf
    return f if maximize else -f


def state_to_json(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def state_from_json(data) -> tuple:
    return (data[0], tuple(data[1]), data[2])


class BatchSearch:
    """What every search that evaluates batches of genomes keeps: the fitness of every genome trained (`cache`),
    the history of its batches, and after each batch its state (what a re-run resumes from), the fitness per batch
    and the best so far, written through the search folder's record (runs/search.py)."""

    algo = ""
    OPTIONS: tuple[str, ...] = ()  # the command-line options it takes (population, generations, seed, ...)
    cache: dict[str, float | None]
    history: list[dict]
    maximize: bool = True
    out: Path | None = None
    on_batch: Callable[[int, list[dict], list[float | None]], None] | None = None  # after each batch (a mirror)

    def record(self, generation: int, genomes: list[dict], scores: list[float | None]) -> None:
        scored = list(zip(genomes, scores))
        best = max(scored, key=lambda gf: rank_value(gf[1], self.maximize))
        finite = [s for s in scores if rank_value(s, self.maximize) > -math.inf]
        self.history.append(
            {
                "generation": generation,
                "best": best[1],
                "best_genome": best[0],
                "mean": sum(finite) / len(finite) if finite else None,
                "failed": len(scores) - len(finite),
                "evaluated": len(self.cache),
                "population": [{"genome": g, "fitness": f} for g, f in scored],
            }
        )
        if self.on_batch:
            self.on_batch(generation, genomes, scores)

    def evaluate(self, genomes: list[dict]) -> list[float | None]:
        """The fitness of each genome; only those never evaluated are trained (one batch), the rest come from the
        cache (a genome bred twice, a batch replayed by a resumed search)."""
        todo = {genome_key(g): g for g in genomes if genome_key(g) not in self.cache}
        if todo:
            for key, value in zip(todo, self.fitness(list(todo.values()))):
                self.cache[key] = value
        return [self.cache[genome_key(g)] for g in genomes]

    def best(self) -> dict:
        scored = [(h["best_genome"], h["best"]) for h in self.history]
        genome, value = max(scored, key=lambda gf: rank_value(gf[1], self.maximize))
        return {"genome": genome, "fitness": value, "evaluations": len(self.cache)}

    def state(self) -> dict:
        raise NotImplementedError

    def save(self) -> None:
        if self.out is None:
            return
        rows = [{k: h[k] for k in ("generation", "best", "mean", "failed", "evaluated")} for h in self.history]
        SearchFolder(self.out).save_progress(self.algo, self.state(), rows, self.best())

    def saved_state(self) -> dict | None:
        """The state an earlier run of this search saved, if any; one by another algorithm is refused."""
        return SearchFolder(self.out).state(self.algo) if self.out else None
