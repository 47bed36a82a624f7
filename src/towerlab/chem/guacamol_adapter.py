"""GuacaMol (Brown et al. 2019) as the referee: its goal-directed v2 benchmarks as objectives, its KL-divergence
score for distributions. An optional extra: `pip install --no-deps guacamol` (its declared dependency,
rdkit-pypi, would replace the current RDKit with a 2022 build; what it needs at run time, numpy, scipy, joblib,
tqdm and RDKit, towerlab already has).

GuacaMol 0.5.5 imports `histogram` from SciPy, which SciPy removed (it was NumPy's own histogram re-exported); the
adapter provides it before the import instead of pinning an old SciPy."""

from __future__ import annotations

import re
from functools import cache

from towerlab.errors import ConfigError


def guacamol():
    import numpy
    import scipy

    if not hasattr(scipy, "histogram"):
        scipy.histogram = numpy.histogram  # the same function SciPy used to re-export
    try:
        import guacamol.benchmark_suites
        import guacamol.distribution_learning_benchmark
    except ImportError as e:
        raise ConfigError(f"GuacaMol is not installed ({e}); install it with `pip install --no-deps guacamol` "
                          f"(README: Molecules)") from None
    return guacamol


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def goal_directed_v2() -> dict:
    """The 20 goal-directed v2 benchmarks by a forgiving name (lower case, letters and digits only):
    'celecoxibrediscovery', 'osimertinibmpo', 'c11h24' ... -> GuacaMol's GoalDirectedBenchmark."""
    return {_key(b.name): b for b in guacamol().benchmark_suites.goal_directed_suite_v2()}


def benchmark(name: str):
    table = goal_directed_v2()
    if _key(name) not in table:
        raise ConfigError(f"GuacaMol has no goal-directed v2 benchmark {name!r}; choose one of: "
                          f"{', '.join(b.name for b in table.values())}")
    return table[_key(name)]


class _Replay:
    """A DistributionMatchingGenerator that hands GuacaMol molecules already sampled, in order."""

    def __init__(self, smiles: list[str]):
        self.smiles, self.at = smiles, 0

    def generate(self, number_samples: int) -> list[str]:
        out = self.smiles[self.at:self.at + number_samples]
        self.at += number_samples
        return out


def kl_score(generated: list[str], training: list[str]) -> float:
    """GuacaMol's KL-divergence benchmark score (exp(-KL) averaged over nine physico-chemical descriptors, 1 =
    the training distribution) of `generated` against `training`, as many unique molecules as were sampled; nan
    when the molecules are too alike for GuacaMol's kernel density estimate (a descriptor with no spread)."""
    import numpy

    g = guacamol()
    n = len({s for s in generated if s})
    bench = g.distribution_learning_benchmark.KLDivBenchmark(number_samples=min(n, len(training)),
                                                             training_set=training)
    try:
        return float(bench.assess_model(_Replay(generated)).score)
    except (numpy.linalg.LinAlgError, ValueError):  # a descriptor without spread: no density to compare with
        return float("nan")
