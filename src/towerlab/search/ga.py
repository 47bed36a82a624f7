"""The genetic algorithm of the classic "evolve a neural network" approach, resumable generation by generation.

Each generation: evaluate the population (each distinct genome once: fitness is cached by genome key), keep the
fittest `retain` fraction, keep each other genome with probability `random_select` (diversity), then fill the
population with children: two random kept parents, each gene taken from one of them at random, and with
probability `mutate` one gene drawn afresh. After every generation an atomic checkpoint holds the next
population, the fitness cache, the history and the random state, so a search stopped anywhere resumes and ends
exactly as an uninterrupted one.
"""

from __future__ import annotations

import random
from pathlib import Path

from towerlab.search.base import BatchSearch, Fitness, rank_value, state_from_json, state_to_json
from towerlab.search.space import Space, genome_key


class GeneticSearch(BatchSearch):
    algo = "ga"
    OPTIONS = ("population", "generations", "retain", "random_select", "mutate", "seed")

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
        ranked = [g for g, _ in sorted(scored, key=lambda gf: rank_value(gf[1], self.maximize), reverse=True)]
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
        """A child that repeats a genome already evaluated or bred costs a slot and teaches nothing (without this, a
        converged population re-breeds its parents and the 10 generations of the classic setup evaluate ~50
        genomes): see `novel`."""
        return novel(child, seen, self.space, self.rng)

    # -- the loop ----------------------------------------------------------------------------------------------
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
            "rng": state_to_json(self.rng.getstate()),
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
        self.rng.setstate(state_from_json(s["rng"]))


def novel(child: dict, seen: set[str], space: Space, rng: random.Random, tries: int = 10) -> dict:
    """`child`, mutated until its genome is not in `seen` (a few tries: a small space may have nothing new left);
    its key is added to `seen`."""
    for _ in range(tries):
        if genome_key(child) not in seen:
            break
        child = space.mutate(child, rng)
    seen.add(genome_key(child))
    return child
