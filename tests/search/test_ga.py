"""The genetic algorithm: operators, a seeded search against random search, exact resume, failed trials."""

import json
import random

import pytest

from towerlab.errors import ConfigError
from towerlab.search import SEARCHERS
from towerlab.search.ga import GeneticSearch
from towerlab.search.grid import GridSearch
from towerlab.search.space import Space, genome_key

MLP_SPACE = {
    "hidden_layers": {"int": [1, 4]},
    "units": {"choices": [64, 128, 256, 512, 768, 1024]},
    "activation": {"choices": ["relu", "elu", "tanh", "sigmoid"]},
    "optimizer": {"choices": ["rmsprop", "adam", "sgd", "adagrad", "adadelta", "adamax", "nadam"]},
}
OPTIMUM = {"hidden_layers": 3, "units": 512, "activation": "elu", "optimizer": "adamax"}


def synthetic(genomes):
    """A cheap fitness with one optimum: each gene scores by its distance from the optimum's."""
    out = []
    for g in genomes:
        score = -abs(g["hidden_layers"] - 3) - abs([64, 128, 256, 512, 768, 1024].index(g["units"]) - 3)
        score += (g["activation"] == "elu") + 2 * (g["optimizer"] == "adamax")
        out.append(float(score))
    return out


def test_space_parsing_and_grid():
    space = Space.from_dict(MLP_SPACE)
    assert len(space.grid()) == 4 * 6 * 4 * 7
    with pytest.raises(ConfigError, match="lr.logfloat needs low > 0"):
        Space.from_dict({"lr": {"logfloat": [0, 1]}})
    with pytest.raises(ConfigError, match="units must be one of"):
        Space.from_dict({"units": [64, 128]})
    lr = Space.from_dict({"lr": {"logfloat": [1e-4, 1e-1]}}).params[0]
    assert lr.grid(4) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])


def test_breed_and_mutate():
    space = Space.from_dict(MLP_SPACE)
    ga = GeneticSearch(space, synthetic, mutate=0.0, seed=1)
    mother, father = space.sample(random.Random(1)), space.sample(random.Random(2))
    for child in ga.breed(mother, father):
        assert all(child[k] in (mother[k], father[k]) for k in mother)
    mutated = space.mutate(mother, random.Random(3))
    assert sum(mutated[k] != mother[k] for k in mother) <= 1


def test_evolve_keeps_the_fittest_first_and_the_size():
    space = Space.from_dict(MLP_SPACE)
    ga = GeneticSearch(space, synthetic, population=10, retain=0.4, random_select=0.0, seed=0)
    scored = list(zip(ga.population, synthetic(ga.population)))
    nxt = ga.evolve(scored)
    top = [g for g, _ in sorted(scored, key=lambda gf: gf[1], reverse=True)[:4]]
    assert nxt[:4] == top and len(nxt) == 10


def test_children_are_new_genomes_while_the_space_has_some():
    space = Space.from_dict(MLP_SPACE)
    ga = GeneticSearch(space, synthetic, population=20, retain=0.4, random_select=0.0, seed=0)
    ga.evaluate(ga.population)
    scored = list(zip(ga.population, synthetic(ga.population)))
    children = ga.evolve(scored)[8:]
    keys = [genome_key(c) for c in children]
    assert len(set(keys)) == len(keys) and not set(keys) & set(ga.cache)  # no slot spent on a known genome


def _random_search_finds(seed: int, budget: int) -> bool:
    rng, seen = random.Random(seed), set()
    space = Space.from_dict(MLP_SPACE)
    while len(seen) < budget:
        seen.add(json.dumps(space.sample(rng), sort_keys=True))
    return json.dumps(OPTIMUM, sort_keys=True) in seen


def test_seeded_ga_beats_random_search_with_the_same_budget():
    ga_hits = random_hits = 0
    for seed in range(20):
        ga = GeneticSearch(Space.from_dict(MLP_SPACE), synthetic, population=12, generations=8, seed=seed)
        best = ga.run()
        ga_hits += best["genome"] == OPTIMUM
        random_hits += _random_search_finds(seed, best["evaluations"])  # as many distinct trials as the GA ran
    assert ga_hits > random_hits and ga_hits >= 8, (ga_hits, random_hits)


def test_resume_after_interruption_ends_as_an_uninterrupted_search(tmp_path):
    kwargs = dict(population=8, generations=6, seed=7)
    whole = GeneticSearch(Space.from_dict(MLP_SPACE), synthetic, out=tmp_path / "whole", **kwargs)
    whole.run()
    calls = []

    def dies_on_the_fourth_batch(genomes):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return synthetic(genomes)

    with pytest.raises(KeyboardInterrupt):
        GeneticSearch(Space.from_dict(MLP_SPACE), dies_on_the_fourth_batch, out=tmp_path / "cut", **kwargs).run()
    assert 0 < json.loads((tmp_path / "cut" / "search_state.json").read_text())["generation"] < 6  # stopped midway
    resumed = GeneticSearch(Space.from_dict(MLP_SPACE), synthetic, out=tmp_path / "cut", **kwargs)
    resumed.run()
    assert resumed.state() == whole.state()
    assert (tmp_path / "cut" / "best.json").read_text() == (tmp_path / "whole" / "best.json").read_text()


def test_failed_trials_rank_last_and_are_cached_once():
    evaluated = []

    def half_fail(genomes):
        evaluated.extend(genome_key(g) for g in genomes)
        return [None if g["units"] >= 512 else s for g, s in zip(genomes, synthetic(genomes))]

    ga = GeneticSearch(Space.from_dict(MLP_SPACE), half_fail, population=10, generations=4, seed=3)
    best = ga.run()
    assert best["genome"]["units"] < 512 and best["fitness"] is not None
    assert len(evaluated) == len(set(evaluated))  # an identical genome is never trained twice
    assert any(h["failed"] for h in ga.history)


def test_grid_search_finds_the_optimum_with_every_combination(tmp_path):
    calls = []
    counting = lambda genomes: calls.append(len(genomes)) or synthetic(genomes)  # noqa: E731
    result = GridSearch(Space.from_dict(MLP_SPACE), counting, out=tmp_path / "g").run()
    assert result["genome"] == OPTIMUM and result["evaluations"] == 672 and calls == [672]
    again = GridSearch(Space.from_dict(MLP_SPACE), counting, out=tmp_path / "g").run()  # resumed: nothing trained
    assert again["genome"] == OPTIMUM and calls == [672]


def test_every_algorithm_is_one_registry_entry_given_only_its_own_options(tmp_path):
    """search/__init__.SEARCHERS is what --algo offers; each algorithm gets the options it declares, no others."""
    options = {
        "population": 6,
        "generations": 2,
        "seed": 1,
        "retain": 0.5,
        "random_select": 0.1,
        "mutate": 0.2,
        "points": 2,
    }
    for name, searcher in SEARCHERS.items():
        if name in ("tpe", "random"):
            pytest.importorskip("optuna")
        built = searcher.build(Space.from_dict(MLP_SPACE), synthetic, maximize=True, out=tmp_path / name, **options)
        assert built.algo == name and set(built.OPTIONS) <= set(options)
        assert built.run()["fitness"] is not None
    from towerlab.cli import _parser

    algo = next(a for a in _parser()._subparsers._group_actions[0].choices["search"]._actions if a.dest == "algo")
    assert tuple(algo.choices) == tuple(SEARCHERS)


def test_the_ga_mirrors_each_generation_into_an_optuna_storage(tmp_path):
    """--storage with --algo ga: every genome of every generation is a trial of the study, its generation an
    attribute; a second mirror on the same storage (a resumed search) adds nothing twice."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from towerlab.runs import SearchFolder
    from towerlab.search.storage import StudyMirror

    space = Space.from_dict(MLP_SPACE)
    fitness = lambda genomes: [g["hidden_layers"] / 4 + g["units"] / 2048 for g in genomes]  # noqa: E731
    spec = f"journal:{tmp_path / 's.journal'}"
    search = GeneticSearch(space, fitness, population=6, generations=3, seed=1, out=tmp_path / "s")
    mirror = StudyMirror(spec, "s", space, True, "accuracy", SearchFolder(tmp_path / "s"))
    search.on_batch = mirror.record_batch
    best = search.run()
    again = StudyMirror(spec, "s", space, True, "accuracy", SearchFolder(tmp_path / "s"))
    for h in search.history:
        again.record_batch(
            h["generation"], [p["genome"] for p in h["population"]], [p["fitness"] for p in h["population"]]
        )
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(tmp_path / "s.journal"))))
    assert len(study.trials) == 18 and sorted({t.user_attrs["generation"] for t in study.trials}) == [0, 1, 2]
    assert study.best_value == best["fitness"]


def test_the_fitness_plot_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    from towerlab.search.run import plot_generations

    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    (tmp_path / "fitness.png").symlink_to(victim)
    plot_generations(
        [{"generation": 0, "best": 0.9, "mean": 0.5}, {"generation": 1, "best": 0.95, "mean": 0.7}],
        tmp_path / "fitness.png",
        "accuracy",
    )
    assert victim.read_text() == "untouched\n" and not (tmp_path / "fitness.png").is_symlink()
    assert (tmp_path / "fitness.png").read_bytes().startswith(b"\x89PNG")


def test_a_storage_refuses_what_would_lose_or_leak_trials(tmp_path):
    """Issue 43: a second search folder whose study name is taken is refused (its trials used to be dropped as
    'already there'); a journal that is a link, a garbage line in the journal and a database password each end in
    one line, the password masked."""
    import pytest

    from towerlab.errors import ConfigError
    from towerlab.runs import SearchFolder
    from towerlab.search.storage import StudyMirror

    space = Space.from_dict(MLP_SPACE)
    spec = f"journal:{tmp_path / 's.journal'}"
    StudyMirror(spec, "exp", space, True, "accuracy", SearchFolder(tmp_path / "a" / "exp"))
    StudyMirror(spec, "exp", space, True, "accuracy", SearchFolder(tmp_path / "a" / "exp"))  # itself: resumes
    with pytest.raises(ConfigError, match="already holds the trials of another search .*--study"):
        StudyMirror(spec, "exp", space, True, "accuracy", SearchFolder(tmp_path / "b" / "exp"))
    (tmp_path / "link.journal").symlink_to(tmp_path / "s.journal")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        StudyMirror(f"journal:{tmp_path / 'link.journal'}", "x", space, True, "accuracy", SearchFolder(tmp_path / "x"))
    mirror = StudyMirror(spec, "exp2", space, True, "accuracy", SearchFolder(tmp_path / "c"))
    with open(tmp_path / "s.journal", "a") as f:
        f.write("this is not a journal line\n")
    with pytest.raises(ConfigError, match="cannot add the finished trials .*fix the storage and resume"):
        mirror.record_batch(0, [space.grid(2)[0]], [0.5])
    with pytest.raises(ConfigError) as refused:
        StudyMirror(
            "postgresql+psycopg://grader:hunter2@127.0.0.1:1/none",
            "y",
            space,
            True,
            "accuracy",
            SearchFolder(tmp_path / "y"),
        )
    assert "hunter2" not in str(refused.value) and "grader:***@127.0.0.1" in str(refused.value)
