"""Hyperparameter search: a search space over recipe config fields and the algorithms that walk it.

    base.py   what every algorithm shares (the fitness cache, batches, history, checkpoint)
    ga.py     the genetic algorithm;  tpe.py  Optuna's TPE and random samplers;  grid.py  every combination
    run.py    a search as `towerlab search` runs it (trials through an executor, outputs, Optuna storage, MLflow)
    workers.py  `--trials N`: one Optuna study shared by every worker (no barrier, heartbeats, retries);
              ga_sampler.py the GA as an Optuna sampler for it

SEARCHERS lists the algorithms by their --algo name; adding one is a module with a BatchSearch and one line here.
Imports nothing heavy: the command line reads the names to build its parser.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Searcher:
    name: str
    target: str  # module:class, imported when the algorithm is used
    summary: str

    def load(self):
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(f"towerlab.search.{module}"), cls)

    def build(self, space, fitness, *, maximize: bool, out, **options):
        """The algorithm over `space`, given only the options it takes (OPTIONS) of those passed."""
        cls = self.load()
        return cls(space, fitness, maximize=maximize, out=out, **{k: v for k, v in options.items() if k in cls.OPTIONS})


SEARCHERS = {
    s.name: s
    for s in (
        Searcher("ga", "ga:GeneticSearch", "the genetic algorithm (population, generations, retain, mutate)"),
        Searcher("tpe", "tpe:TPESearch", "Optuna's TPE: population trials per batch, generations batches"),
        Searcher("random", "tpe:RandomSearch", "Optuna's random sampler, the same budget"),
        Searcher("grid", "grid:GridSearch", "every combination, --points values per numeric range"),
    )
}
