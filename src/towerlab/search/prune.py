"""`--prune median|asha`: stop a trial whose validation metric is hopeless at its k-th evaluation.

A trial is judged at each of its evaluations (the k-th, counted from 1, so trials of different batch sizes compare
epoch for epoch) against the trials of the search that finished in *earlier* batches, never against those running
beside it: the decision then depends only on the trial's own curve and on what came before it, so a search that is
interrupted and resumed prunes the same trials at the same evaluations and ends where an uninterrupted one ends.
  median  (Optuna's MedianPruner): pruned when worse than the median of the earlier trials at that evaluation,
          once at least `startup` of them got that far;
  asha    (successive halving, as Ray Tune's ASHA): at rungs k = 1, eta, eta^2, ... a trial goes on only when it is
          among the best 1/eta of the earlier trials that reached the rung (with itself counted).
A pruned trial is recorded as pruned (pruned.json in its folder, its value at that evaluation is its fitness), not
as failed, and is never resumed.
"""

from __future__ import annotations

import math
import statistics

from towerlab.errors import ConfigError

RULES = ("median", "asha")


class Pruner:
    def __init__(self, rule: str, metric: str, maximize: bool, startup: int = 5, eta: int = 3):
        if rule not in RULES:
            raise ConfigError(f"--prune {rule!r}: choose one of {', '.join(RULES)}")
        self.rule, self.metric, self.maximize, self.startup, self.eta = rule, metric, maximize, startup, eta
        self.reference: list[list[float]] = []  # curves of the trials finished in earlier batches

    def _worse(self, a: float, b: float) -> bool:
        return a < b if self.maximize else a > b

    def _rank(self, v: float) -> float:
        return v if self.maximize else -v

    def prunes_at(self, k: int, value: float) -> bool:
        """Whether a trial whose k-th evaluation gave `value` stops there."""
        if math.isnan(value):
            return True
        earlier = [c[k - 1] for c in self.reference if len(c) >= k and not math.isnan(c[k - 1])]
        if self.rule == "median":
            return len(earlier) >= self.startup and self._worse(value, statistics.median(earlier))
        rung = round(math.log(k, self.eta)) if k >= 1 else -1
        if self.eta**rung != k or len(earlier) < self.eta - 1:
            return False  # not a rung, or too few trials reached it to judge
        keep = max(1, (len(earlier) + 1) // self.eta)
        better = sum(self._rank(v) > self._rank(value) for v in earlier)
        return better >= keep

    def decide(self, curve: list[float]) -> int | None:
        """The evaluation (1-based) at which this curve is pruned, or None."""
        for k, value in enumerate(curve, start=1):
            if self.prunes_at(k, value):
                return k
        return None
