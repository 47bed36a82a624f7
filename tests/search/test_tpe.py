"""Optuna's TPE and random samplers behind `--algo tpe|random`: a seeded search, exact resume by replay, failed
trials, and the spaces Optuna cannot express."""

import json

import pytest
from test_ga import MLP_SPACE, OPTIMUM, synthetic

from towerlab.errors import ConfigError
from towerlab.search.space import Space, genome_key
from towerlab.search.tpe import OptunaSearch


def test_tpe_finds_the_optimum_of_the_synthetic_space_and_beats_random():
    found = {}
    for sampler in ("tpe", "random"):
        hits = 0
        for seed in range(5):
            s = OptunaSearch(
                Space.from_dict(MLP_SPACE), synthetic, sampler=sampler, population=8, generations=10, seed=seed
            )
            hits += s.run()["genome"] == OPTIMUM
        found[sampler] = hits
    assert found["tpe"] >= 3 and found["tpe"] > found["random"], found


def test_resume_replays_to_the_same_search(tmp_path):
    kwargs = dict(sampler="tpe", population=6, generations=5, seed=3)
    whole = OptunaSearch(Space.from_dict(MLP_SPACE), synthetic, out=tmp_path / "whole", **kwargs)
    whole.run()
    calls = []

    def dies_on_the_third_batch(genomes):
        calls.append(len(genomes))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return synthetic(genomes)

    with pytest.raises(KeyboardInterrupt):
        OptunaSearch(Space.from_dict(MLP_SPACE), dies_on_the_third_batch, out=tmp_path / "cut", **kwargs).run()
    trained = []

    def counting(genomes):
        trained.extend(genomes)
        return synthetic(genomes)

    resumed = OptunaSearch(Space.from_dict(MLP_SPACE), counting, out=tmp_path / "cut", **kwargs)
    resumed.run()
    assert resumed.history == whole.history and resumed.cache == whole.cache
    assert len(trained) == len(whole.cache) - sum(calls[:2])  # the first two batches were replayed, not retrained
    assert (tmp_path / "cut" / "best.json").read_text() == (tmp_path / "whole" / "best.json").read_text()


def test_failed_trials_are_told_as_failed_and_cached_once():
    seen = []

    def half_fail(genomes):
        seen.extend(genome_key(g) for g in genomes)
        return [None if g["units"] == 64 else s for g, s in zip(genomes, synthetic(genomes))]

    s = OptunaSearch(Space.from_dict(MLP_SPACE), half_fail, sampler="random", population=8, generations=4, seed=0)
    best = s.run()
    assert best["genome"]["units"] != 64 and len(seen) == len(set(seen))
    assert any(t.state.name == "FAIL" for t in s.study.trials)


def test_a_space_optuna_cannot_express_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="Optuna's samplers take choices of numbers, strings or booleans"):
        OptunaSearch(Space.from_dict({"layers": {"choices": [[64], [64, 64]]}}), synthetic)
    (tmp_path / "search_state.json").write_text(json.dumps({"algo": "ga", "cache": {}, "history": []}))
    with pytest.raises(ConfigError, match="continue it with --algo ga"):
        OptunaSearch(Space.from_dict(MLP_SPACE), synthetic, out=tmp_path).run()
