"""The genetic algorithm of the classic "evolve a neural network" approach, resumable generation by generation.

Each generation: evaluate the population (each distinct genome once: fitness is cached by genome key), keep the
fittest `retain` fraction, keep each other genome with probability `random_select` (diversity), then fill the
population with children: two random kept parents, each gene taken from one of them at random, and with
probability `mutate` one gene drawn afresh. After every generation an atomic checkpoint holds the next
population, the fitness cache, the history and the random state, so a search stopped anywhere resumes and ends
exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from towerlab.runs import SearchFolder
from towerlab.search.space import Space, genome_key

Fitness = Callable[[list[dict]], list[float | None]]  # a batch of genomes -> fitness (None: the trial failed)


def _rank_value(f: float | None, maximize: bool) -> float:
    """Sort key: failed trials (None, nan) rank last."""
    if f is None or (isinstance(f, float) and math.isnan(f)):
        return -math.inf
    return f if maximize else -f


def _state_to_json(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _state_from_json(data) -> tuple:
    return (data[0], tuple(data[1]), data[2])


class BatchSearch:
    """What every search that evaluates batches of genomes keeps: the fitness of every genome trained (`cache`),
    the history of its batches, and after each batch its state (what a re-run resumes from), the fitness per batch
    and the best so far, written through the search folder's record (runs/search.py)."""

    algo = ""
    maximize: bool = True
    out: Path | None = None
    on_batch: Callable[[int, list[dict], list[float | None]], None] | None = None  # after each batch (a mirror)

    def record(self, generation: int, genomes: list[dict], scores: list[float | None]) -> None:
        scored = list(zip(genomes, scores))
        best = max(scored, key=lambda gf: _rank_value(gf[1], self.maximize))
        finite = [s for s in scores if _rank_value(s, self.maximize) > -math.inf]
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

    def best(self) -> dict:
        scored = [(h["best_genome"], h["best"]) for h in self.history]
        genome, value = max(scored, key=lambda gf: _rank_value(gf[1], self.maximize))
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


class GeneticSearch(BatchSearch):
    algo = "ga"

    def __init__(
        self,
        space: Space,
        fitness: Fitness,
        *,
        population: int = 20,
        generations: int = 10,
        retain: float = 0.4,
        random_select: float = 0.1,
        mutate: float = 0.2,
        seed: int = 0,
        maximize: bool = True,
        out: str | Path | None = None,
    ):
        self.space, self.fitness, self.maximize = space, fitness, maximize
        self.size, self.generations = population, generations
        self.retain, self.random_select, self.mutate_chance = retain, random_select, mutate
        self.out = Path(out) if out else None
        self.rng = random.Random(seed)
        self.cache: dict[str, float | None] = {}
        self.history: list[dict] = []
        self.generation = 0
        self.population = [space.sample(self.rng) for _ in range(population)]

    # -- the operators ---------------------------------------------------------------------------------------
    def breed(self, mother: dict, father: dict) -> list[dict]:
        """Two children, each gene from one parent at random, each perhaps mutated."""
        children = []
        for _ in range(2):
            child = {k: self.rng.choice((mother[k], father[k])) for k in mother}
            if self.rng.random() < self.mutate_chance:
                child = self.space.mutate(child, self.rng)
            children.append(child)
        return children

    def evolve(self, scored: list[tuple[dict, float | None]]) -> list[dict]:
        ranked = [g for g, _ in sorted(scored, key=lambda gf: _rank_value(gf[1], self.maximize), reverse=True)]
        keep = max(2, int(len(ranked) * self.retain))
        parents = ranked[:keep]
        parents += [g for g in ranked[keep:] if self.rng.random() < self.random_select]
        children, seen = [], {genome_key(g) for g in parents} | set(self.cache)
        while len(parents) + len(children) < self.size:
            mother, father = self.rng.sample(parents, 2)
            for child in self.breed(mother, father):
                children.append(self._novel(child, seen))
        return (parents + children)[: self.size]

    def _novel(self, child: dict, seen: set[str]) -> dict:
        """A child that repeats a genome already evaluated or bred costs a slot and teaches nothing: mutate it
        until it is new (a few tries; a small space may have nothing new left). Without this, a converged
        population re-breeds its parents and the 10 generations of the classic setup evaluate ~50 genomes."""
        for _ in range(10):
            if genome_key(child) not in seen:
                break
            child = self.space.mutate(child, self.rng)
        seen.add(genome_key(child))
        return child

    # -- the loop ----------------------------------------------------------------------------------------------
    def evaluate(self, genomes: list[dict]) -> list[float | None]:
        todo = {genome_key(g): g for g in genomes if genome_key(g) not in self.cache}
        if todo:
            for key, value in zip(todo, self.fitness(list(todo.values()))):
                self.cache[key] = value
        return [self.cache[genome_key(g)] for g in genomes]

    def run(self) -> dict:
        """Run (or resume) to the last generation; returns the best genome and its fitness."""
        self.load()
        while self.generation < self.generations:
            scores = self.evaluate(self.population)
            self.record(self.generation, self.population, scores)
            self.generation += 1
            if self.generation < self.generations:
                self.population = self.evolve(list(zip(self.population, scores)))
            self.save()
        return self.best()

    # -- checkpoint ----------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "generation": self.generation,
            "population": self.population,
            "cache": self.cache,
            "history": self.history,
            "rng": _state_to_json(self.rng.getstate()),
        }

    def load(self) -> None:
        s = self.saved_state()
        if s is None:
            return
        self.generation, self.population, self.cache, self.history = (
            s["generation"],
            s["population"],
            s["cache"],
            s["history"],
        )
        self.rng.setstate(_state_from_json(s["rng"]))


def grid_search(space: Space, fitness: Fitness, points: int = 4, maximize: bool = True) -> dict:
    """The brute-force baseline: every combination, evaluated once."""
    genomes = space.grid(points)
    scores = fitness(genomes)
    genome, value = max(zip(genomes, scores), key=lambda gf: _rank_value(gf[1], maximize))
    return {"genome": genome, "fitness": value, "evaluations": len(genomes)}
