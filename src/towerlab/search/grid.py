"""`--algo grid`: the brute-force baseline, every combination of the space (`--points` values per numeric range)
trained once, as one batch through the same executor, cache, outputs and resume as every other search."""

from __future__ import annotations

from pathlib import Path

from towerlab.search.base import BatchSearch, Fitness
from towerlab.search.space import Space


class GridSearch(BatchSearch):
    algo = "grid"
    OPTIONS = ("points",)

    def __init__(
        self, space: Space, fitness: Fitness, *, points: int = 4, maximize: bool = True, out: str | Path | None = None
    ):
        self.space, self.fitness, self.maximize, self.points = space, fitness, maximize, points
        self.out = Path(out) if out else None
        self.cache: dict[str, float | None] = {}
        self.history: list[dict] = []

    def run(self) -> dict:
        self.load()
        genomes = self.space.grid(self.points)
        scores = self.evaluate(genomes)  # a re-run finds the finished trials in their folders (the executor)
        if not self.history:
            self.record(0, genomes, scores)
            self.save()
        return {**self.best(), "evaluations": len(genomes)}

    def state(self) -> dict:
        return {"points": self.points, "cache": self.cache, "history": self.history}

    def load(self) -> None:
        state = self.saved_state()
        if state is not None:
            self.cache, self.history = state["cache"], state["history"]
