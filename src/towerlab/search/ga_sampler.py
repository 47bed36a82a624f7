"""Samplers for a study many workers share (search/workers.py) whose draws depend on the trial's number, not on
which worker asks or when: `NumberedRandom` (trial n's genome is the n-th draw from --seed, so a shared random
search trains the same genomes with one worker or ten) and towerlab's genetic algorithm as an Optuna sampler.

Steady state rather than generational (no generation waits for its slowest trial): each new trial is a child of two
parents drawn from the best `population` trials that completed so far (the fittest `retain` fraction, and each
other one of them with probability `random_select`), each gene from one parent at random, and with probability
`mutate` one gene drawn afresh; a child that repeats a trial already asked for is mutated until it is new. Until
`population` trials have completed, trials are drawn at random from the space (each trial number its own
draw: workers with the same --seed do not propose the same genomes). The operators are ga.py's.
"""

from __future__ import annotations

import random

from towerlab.search.base import rank_value
from towerlab.search.ga import novel
from towerlab.search.space import Space, genome_key
from towerlab.search.tpe import _optuna

_BaseSampler = _optuna().samplers.BaseSampler


class NumberedRandom(_BaseSampler):
    """Trial n: a genome drawn from the space by a generator seeded with (seed, n)."""

    def __init__(self, space: Space, dists: dict, *, seed: int = 0, **_unused):
        self.space, self.dists, self.seed = space, dists, seed

    def infer_relative_search_space(self, study, trial) -> dict:
        return dict(self.dists)

    def sample_relative(self, study, trial, search_space: dict) -> dict:
        return self.space.sample(random.Random(f"{self.seed}:{trial.number}"))

    def sample_independent(self, study, trial, param_name, param_distribution):
        raise AssertionError("every parameter is sampled in sample_relative")


class GeneticSampler(NumberedRandom):
    def __init__(
        self,
        space: Space,
        dists: dict,
        *,
        maximize: bool,
        seed: int = 0,
        population: int = 20,
        retain: float = 0.4,
        random_select: float = 0.1,
        mutate: float = 0.2,
        **_unused,
    ):
        self.space, self.dists, self.maximize, self.seed = space, dists, maximize, seed
        self.population, self.retain, self.random_select, self.mutate = population, retain, random_select, mutate

    def sample_relative(self, study, trial, search_space: dict) -> dict:
        State = _optuna().trial.TrialState
        done = study.get_trials(deepcopy=False, states=(State.COMPLETE,))
        rng = random.Random(f"{self.seed}:{trial.number}")  # each trial its own draw, whichever worker asks
        if len(done) < self.population:
            return super().sample_relative(study, trial, search_space)  # the first population: at random
        ranked = sorted(done, key=lambda t: rank_value(t.value, self.maximize), reverse=True)[: self.population]
        keep = max(2, int(len(ranked) * self.retain))
        parents = ranked[:keep] + [t for t in ranked[keep:] if rng.random() < self.random_select]
        mother, father = (t.params for t in rng.sample(parents, 2))
        child = {p.name: rng.choice((mother[p.name], father[p.name])) for p in self.space.params}
        if rng.random() < self.mutate:
            child = self.space.mutate(child, rng)
        seen = {
            genome_key({p.name: t.params.get(p.name) for p in self.space.params})
            for t in study.get_trials(deepcopy=False)
            if t.params
        }
        return novel(child, seen, self.space, rng)  # a repeat teaches nothing: ga.py's operator
