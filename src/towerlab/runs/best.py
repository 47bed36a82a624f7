"""Which value is better, and the best evaluation of a run, decided in one place.

`Metric` is a recipe's main metric with its direction (accuracy up, a loss down): the engine keeps its best
checkpoint by it, `--stop-at` stops on it, a search ranks its trials by it. `Best` is the record of the best
evaluation as final_metrics.json holds it (`best: {metric, value, step[, test]}`), read back the same way by every
command that shows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Metric:
    name: str
    mode: str = "max"  # "max" (accuracy, AP) or "min" (a loss)

    @classmethod
    def of(cls, recipe) -> Metric:
        """The recipe's MAIN_METRIC = (name, "max" | "min")."""
        name, mode = recipe.MAIN_METRIC
        return cls(name, mode)

    @property
    def maximize(self) -> bool:
        return self.mode == "max"

    def better(self, a: float | None, b: float | None) -> bool:
        """a is better than b (a number beats none; nothing beats a number with NaN)."""
        if a is None or (isinstance(a, float) and math.isnan(a)):
            return False
        if b is None or (isinstance(b, float) and math.isnan(b)):
            return True
        return a > b if self.maximize else a < b

    def reached(self, value: float | None, target: float) -> bool:
        """value is at the target or past it, in the metric's direction (--stop-at)."""
        return value is not None and (value >= target if self.maximize else value <= target)

    def best_of(self, values: dict) -> object:
        """The key of the best value of a {key: value} dict."""
        return (max if self.maximize else min)(values, key=values.get)

    def order(self, values: list[float]) -> list[float]:
        """The values best first."""
        return sorted(values, reverse=self.maximize)


@dataclass
class Best:
    """The best evaluation of a run: final_metrics.json's `best`."""

    metric: str = ""
    value: float | None = None
    step: int | None = None
    test: dict = field(default_factory=dict)  # the test split scored with these weights (--val-fraction)

    @classmethod
    def of(cls, final: dict | None) -> Best:
        """From a run's final metrics (or a trial's result metrics); empty before there is one."""
        best = (final or {}).get("best") or {}
        return cls(best.get("metric", ""), best.get("value"), best.get("step"), best.get("test") or {})

    def __bool__(self) -> bool:
        return self.value is not None

    def as_dict(self) -> dict:
        """As final_metrics.json holds it (no `test` when there is none)."""
        out = {"metric": self.metric, "value": self.value, "step": self.step}
        return {**out, "test": self.test} if self.test else out
