"""`--algo tpe` and `--algo random`: Optuna's samplers (the peers a user would pick instead of the GA) on the same
search space, executor, trial folders, outputs and resume.

Trials are asked for in batches of `population` (constant-liar TPE, so a batch spreads out) and run side by side;
`generations` batches in all, as many trainings as the GA's budget. Resume needs no pickled sampler: the study is
rebuilt from the seed and replayed, batch by batch, with the fitness of every genome already trained read from the
cache (search_state.json), so the sampler proposes exactly what it proposed before and the search goes on from the
first batch not finished, to the same end as an uninterrupted one.
"""

from __future__ import annotations

import math
from pathlib import Path

from towerlab.errors import ConfigError, missing_extra
from towerlab.search.base import BatchSearch, Fitness
from towerlab.search.space import Space


def _optuna():
    try:
        import optuna
    except ModuleNotFoundError as e:
        raise ConfigError(f"--algo tpe/random: {missing_extra(e) or e}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(space: Space) -> dict:
    """The space in Optuna's terms; what it cannot express is refused in one line."""
    d = _optuna().distributions
    out = {}
    for p in space.params:
        if p.kind == "choices":
            bad = [v for v in p.values if v is not None and not isinstance(v, (bool, int, float, str))]
            if bad:
                raise ConfigError(
                    f"search space field {p.name}: Optuna's samplers take choices of numbers, strings or "
                    f"booleans, not {bad[0]!r}; use --algo ga, or spell the choice as a string field"
                )
            out[p.name] = d.CategoricalDistribution(list(p.values))
        elif p.kind == "int":
            out[p.name] = d.IntDistribution(*p.values)
        else:
            out[p.name] = d.FloatDistribution(*map(float, p.values), log=p.kind == "logfloat")
    return out


class OptunaSearch(BatchSearch):
    OPTIONS = ("population", "generations", "seed")

    def __init__(
        self,
        space: Space,
        fitness: Fitness,
        *,
        sampler: str = "tpe",
        population: int = 20,
        generations: int = 10,
        seed: int = 0,
        maximize: bool = True,
        out: str | Path | None = None,
    ):
        optuna = _optuna()
        self.space, self.fitness, self.maximize = space, fitness, maximize
        self.batch, self.generations, self.seed, self.algo = population, generations, seed, sampler
        self.out = Path(out) if out else None
        self.dists = distributions(space)
        samplers = {
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        }
        self.study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=samplers[sampler]())
        self.cache: dict[str, float | None] = {}
        self.history: list[dict] = []

    def run(self) -> dict:
        self.load()
        for generation in range(self.generations):
            asked = [self.study.ask(self.dists) for _ in range(self.batch)]
            genomes = [self._genome(t) for t in asked]
            scores = self.evaluate(genomes)  # replayed batches of a resumed search train nothing
            for t, value in zip(asked, scores):
                failed = value is None or (isinstance(value, float) and math.isnan(value))
                self.study.tell(t, None if failed else value, state=self._fail() if failed else None)
            if generation >= len(self.history):
                self.record(generation, genomes, scores)
                self.save()
        return self.best()

    def _genome(self, trial) -> dict:
        """Optuna's params in the space's order and types (ints stay ints, floats floats)."""
        return {p.name: trial.params[p.name] for p in self.space.params}

    def _fail(self):
        return _optuna().trial.TrialState.FAIL

    # -- checkpoint: the fitness of every genome trained, and the history; the sampler is replayed -------------
    def state(self) -> dict:
        return {"seed": self.seed, "cache": self.cache, "history": self.history}

    def load(self) -> None:
        state = self.saved_state()
        if state is None:
            return
        if state.get("seed") != self.seed:
            raise ConfigError(
                f"the search in {self.out} ran with seed {state.get('seed')}; "
                f"continue it with --seed {state.get('seed')}, or choose another --out"
            )
        self.cache, self.history = state["cache"], state["history"]


class TPESearch(OptunaSearch):
    """Optuna's TPE sampler (constant liar, so a batch asked at once spreads out)."""

    def __init__(self, space: Space, fitness: Fitness, **options):
        super().__init__(space, fitness, sampler="tpe", **options)


class RandomSearch(OptunaSearch):
    """Optuna's random sampler: the baseline every search is compared with."""

    def __init__(self, space: Space, fitness: Fitness, **options):
        super().__init__(space, fitness, sampler="random", **options)
