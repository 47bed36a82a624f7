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
        raise ConfigError(
            f"GuacaMol is not installed ({e}); install it with `pip install --no-deps guacamol` (README: Molecules)"
        ) from None
    return guacamol


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def goal_directed_v2() -> dict:
    """The 20 goal-directed v2 benchmarks by a forgiving name (lower case, letters and digits only):
    'celecoxibrediscovery', 'osimertinibmpo', 'c11h24' ... -> GuacaMol's GoalDirectedBenchmark."""
    return {_key(b.name): b for b in guacamol().benchmark_suites.goal_directed_suite_v2()}


# PMO (Gao et al. 2022) names 23 tasks; 20 are GuacaMol scoring functions that run offline (drd2, gsk3b and jnk3
# need classifier files that cannot be downloaded here). Each PMO name -> the GuacaMol v2 benchmark of that name, or
# the GuacaMol benchmark outside v2 that PMO took (isomers C7H8N2O2, QED).
PMO_FROM_V2 = {
    "albuterol_similarity": "Albuterol similarity",
    "amlodipine_mpo": "Amlodipine MPO",
    "celecoxib_rediscovery": "Celecoxib rediscovery",
    "deco_hop": "Deco Hop",
    "fexofenadine_mpo": "Fexofenadine MPO",
    "isomers_c9h10n2o2pf2cl": "C9H10N2O2PF2Cl",
    "median1": "Median molecules 1",
    "median2": "Median molecules 2",
    "mestranol_similarity": "Mestranol similarity",
    "osimertinib_mpo": "Osimertinib MPO",
    "perindopril_mpo": "Perindopril MPO",
    "ranolazine_mpo": "Ranolazine MPO",
    "scaffold_hop": "Scaffold Hop",
    "sitagliptin_mpo": "Sitagliptin MPO",
    "thiothixene_rediscovery": "Thiothixene rediscovery",
    "troglitazone_rediscovery": "Troglitazone rediscovery",
    "valsartan_smarts": "Valsartan SMARTS",
    "zaleplon_mpo": "Zaleplon MPO",
}


@cache
def pmo_offline() -> dict:
    """The 20 PMO tasks that run here, by PMO's name, in PMO's (alphabetical) order -> GuacaMol benchmark."""
    v2 = goal_directed_v2()
    sb = guacamol().standard_benchmarks
    table = {name: v2[_key(v2_name)] for name, v2_name in PMO_FROM_V2.items()}
    table.update({"isomers_c7h8n2o2": sb.isomers_c7h8n2o2(), "qed": sb.qed_benchmark()})
    return dict(sorted(table.items()))


def benchmark(name: str):
    """A goal-directed benchmark by its GuacaMol v2 name (forgiving) or its PMO name."""
    table = goal_directed_v2()
    if _key(name) in table:
        return table[_key(name)]
    pmo = pmo_offline()
    if name in pmo:
        return pmo[name]
    raise ConfigError(
        f"GuacaMol has no goal-directed v2 benchmark {name!r}; choose one of: "
        f"{', '.join(b.name for b in table.values())} (or a PMO task name: {', '.join(pmo)})"
    )


class _Replay:
    """A DistributionMatchingGenerator that hands GuacaMol molecules already sampled, in order."""

    def __init__(self, smiles: list[str]):
        self.smiles, self.at = smiles, 0

    def generate(self, number_samples: int) -> list[str]:
        out = self.smiles[self.at : self.at + number_samples]
        self.at += number_samples
        return out


def kl_score(generated: list[str], training: list[str]) -> float:
    """GuacaMol's KL-divergence benchmark score (exp(-KL) averaged over nine physico-chemical descriptors, 1 =
    the training distribution) of `generated` against `training`, as many unique molecules as were sampled; nan
    when the molecules are too alike for GuacaMol's kernel density estimate (a descriptor with no spread)."""
    import numpy

    g = guacamol()
    n = len({s for s in generated if s})
    bench = g.distribution_learning_benchmark.KLDivBenchmark(
        number_samples=min(n, len(training)), training_set=training
    )
    try:
        return float(bench.assess_model(_Replay(generated)).score)
    except (numpy.linalg.LinAlgError, ValueError):  # a descriptor without spread: no density to compare with
        return float("nan")
