"""A search space: recipe config fields, each with choices or a range.

    # SPACE.yaml
    hidden_layers: {int: [1, 4]}
    units: {choices: [64, 128, 256, 512, 768, 1024]}
    lr: {logfloat: [1.0e-4, 1.0e-1]}
    dropout: {float: [0.0, 0.5]}

A genome is a dict field -> value; its key (a hash of the sorted JSON) names it in caches and run folders.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from towerlab.config import load_yaml
from towerlab.errors import ConfigError

KINDS = ("choices", "int", "float", "logfloat")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    values: tuple  # the choices, or (low, high)

    def sample(self, rng: random.Random):
        if self.kind == "choices":
            return rng.choice(self.values)
        lo, hi = self.values
        if self.kind == "int":
            return rng.randint(lo, hi)
        if self.kind == "float":
            return rng.uniform(lo, hi)
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    def grid(self, points: int) -> list:
        """Every choice; for a range, `points` values spread evenly (log-evenly for logfloat)."""
        if self.kind == "choices":
            return list(self.values)
        lo, hi = self.values
        if self.kind == "int":  # every integer when there are no more than `points` of them
            return sorted({round(lo + (hi - lo) * i / max(points - 1, 1)) for i in range(min(points, hi - lo + 1))})
        if self.kind == "float":
            return [lo + (hi - lo) * i / max(points - 1, 1) for i in range(points)]
        return [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / max(points - 1, 1)) for i in range(points)]


class Space:
    def __init__(self, params: list[Param]):
        if not params:
            raise ConfigError("the search space is empty; name at least one config field")
        self.params = params

    @classmethod
    def from_dict(cls, data: dict, source: str = "search space") -> Space:
        params = []
        for name, spec in data.items():
            if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
                raise ConfigError(
                    f"{source}: {name} must be one of {{choices: [...]}}, {{int: [lo, hi]}}, "
                    f"{{float: [lo, hi]}}, {{logfloat: [lo, hi]}}"
                )
            kind, values = next(iter(spec.items()))
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{source}: {name}.{kind} needs a non-empty list")
            if kind != "choices" and (len(values) != 2 or not values[0] < values[1]):
                raise ConfigError(f"{source}: {name}.{kind} needs [low, high] with low < high")
            if kind == "logfloat" and values[0] <= 0:
                raise ConfigError(f"{source}: {name}.logfloat needs low > 0")
            params.append(Param(name, kind, tuple(values)))
        return cls(params)

    @classmethod
    def load(cls, path: str | Path) -> Space:
        return cls.from_dict(load_yaml(path), str(path))

    def check_fields(self, config_cls: type) -> None:
        """Every name must be a field of the recipe's Config."""
        fields = set(getattr(config_cls, "__dataclass_fields__", {}))
        for p in self.params:
            if p.name not in fields:
                raise ConfigError(
                    f"search space field {p.name!r} is not a field of this recipe's config; "
                    f"`towerlab train RECIPE --help` lists them"
                )

    def sample(self, rng: random.Random) -> dict:
        return {p.name: p.sample(rng) for p in self.params}

    def mutate(self, genome: dict, rng: random.Random) -> dict:
        """The genome with one gene, chosen at random, drawn afresh."""
        p = rng.choice(self.params)
        return {**genome, p.name: p.sample(rng)}

    def grid(self, points: int = 4) -> list[dict]:
        names = [p.name for p in self.params]
        return [dict(zip(names, combo)) for combo in itertools.product(*(p.grid(points) for p in self.params))]


def genome_key(genome: dict) -> str:
    return hashlib.sha256(json.dumps(genome, sort_keys=True).encode()).hexdigest()[:16]
