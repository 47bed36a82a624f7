"""PMO's area under the top-10 curve (generate/scoring.auc_top), on curves whose area is known by hand."""

import pytest

from towerlab.generate.scoring import auc_top


def test_a_perfect_first_molecule_costs_only_the_first_stretch():
    # 1.0 from call 1: the curve rises from 0 at call 0 to 1.0 at call 10 (read every 10), then stays: 95 of 100
    assert auc_top([1.0] * 100, k=1, budget=100, every=10) == pytest.approx(0.95)


def test_the_top_k_mean_counts_what_there_is_and_failures_score_zero():
    # k=2: after call 1 the mean of one score (0.4); after call 2 the mean of 0.4 and 0 (a failed call)
    scores = [0.4, None, 1.0, 0.0]
    # read every call: 0 -> 0.4 -> 0.2 -> 0.7 -> 0.7; trapezoids 0.2 + 0.3 + 0.45 + 0.7 = 1.65 over 4 calls
    assert auc_top(scores, k=2, budget=4, every=1) == pytest.approx(1.65 / 4)


def test_a_run_that_stops_early_keeps_its_last_value_and_calls_past_the_budget_do_not_count():
    # 50 calls at 0.5 in a budget of 100, read every 10: 2.5 + 40 * 0.5 + 50 * 0.5 = 47.5
    assert auc_top([0.5] * 50, k=10, budget=100, every=10) == pytest.approx(0.475)
    assert auc_top([0.5] * 50 + [1.0] * 50, k=1, budget=50, every=10) == pytest.approx(0.45)
    assert auc_top([], budget=0) == 0.0
