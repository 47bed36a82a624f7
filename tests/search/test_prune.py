"""The pruning rules, judged against earlier trials only."""

import math

import pytest

from towerlab.errors import ConfigError
from towerlab.search.prune import Pruner


def test_median_waits_for_enough_earlier_trials_then_stops_the_worse_half():
    p = Pruner("median", "accuracy", maximize=True, startup=3)
    p.reference = [[0.5, 0.6], [0.6, 0.7]]
    assert p.decide([0.1, 0.1]) is None  # two earlier trials: too few to judge
    p.reference.append([0.7, 0.8])
    assert p.decide([0.55, 0.9]) == 1 and p.decide([0.65, 0.65]) == 2 and p.decide([0.6, 0.7]) is None
    assert p.decide([float("nan")]) == 1  # a diverged trial stops at once


def test_median_for_a_metric_to_minimise():
    p = Pruner("median", "loss", maximize=False, startup=1)
    p.reference = [[1.0, 0.5]]
    assert p.decide([1.2]) == 1 and p.decide([0.9, 0.4]) is None


def test_asha_keeps_the_best_third_at_its_rungs():
    p = Pruner("asha", "accuracy", maximize=True, eta=3)
    p.reference = [[0.1, 0.2, 0.3], [0.2, 0.3, 0.4], [0.3, 0.4, 0.5], [0.4, 0.5, 0.6], [0.5, 0.6, 0.7]]
    # rung 1 (k=1): 5 earlier + itself -> the best 2 go on; rung 2 is k=3
    assert p.decide([0.35]) == 1 and p.decide([0.45]) is None and p.decide([0.6, 0.0, 0.8]) is None
    assert p.decide([0.6, 0.0, 0.55]) == 3  # k=2 is no rung: never judged there
    assert not p.prunes_at(2, 0.0) and math.isclose(3 ** round(math.log(9, 3)), 9)


def test_unknown_rule_is_one_line():
    with pytest.raises(ConfigError, match="choose one of median, asha"):
        Pruner("hyperband", "accuracy", True)
