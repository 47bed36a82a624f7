"""What molecule design maximises: a score per SMILES, computed by RDKit, GuacaMol or the user's own function.

    qed                      drug-likeness (Bickerton et al. 2012)
    plogp                    penalized logP: Crippen logP - SA score - long-ring penalty (max ring size - 6, if
                             positive), unnormalised, as ChemTS (Yang et al. 2017) and JT-VAE define it
    plogp-z                  the same three terms each standardised by ZINC 250k's mean and sd, then summed: the
                             scale ChemTS optimises and its tables (and Jensen 2019's) report
    logp                     Crippen logP
    similarity:SMILES        Tanimoto similarity (Morgan r=2, 2048 bits) to the given molecule
    guacamol:NAME            a GuacaMol goal-directed v2 benchmark's scoring function (celecoxib_rediscovery,
                             osimertinib_mpo, ...), or a PMO task by PMO's name (median1, isomers_c7h8n2o2, qed)
    package.module:function  your own: SMILES -> float

An invalid SMILES scores nothing (None) and is counted as invalid; a molecule on which the objective raises is
counted as failed (with the first errors kept for the report) and scores nothing: a search never ends because one
molecule broke a scoring function."""

from __future__ import annotations

import atexit
import importlib
import math
import multiprocessing as mp
from collections.abc import Callable
from dataclasses import dataclass, field

from rdkit.Chem import Crippen

from towerlab.chem import props
from towerlab.errors import ConfigError


def _plogp_terms(m) -> dict[str, float]:
    """Penalized logP's three terms: Crippen logP, SA score, and the long-ring penalty (largest ring - 6, if > 0)."""
    rings = [len(r) for r in m.GetRingInfo().AtomRings()]
    return {"logp": Crippen.MolLogP(m), "sa": props.sa_score(m), "ring": max(max(rings, default=0) - 6, 0)}


def penalized_logp(m) -> float:
    t = _plogp_terms(m)
    return t["logp"] - t["sa"] - t["ring"]


# mean and sd of logP, SA score and the long-ring penalty over ZINC 250k (250k_rndm_zinc_drugs_clean), the constants
# JT-VAE and ChemTS standardise penalized logP with
ZINC_STATS = {
    "logp": (2.4570953396190123, 1.434324401111988),
    "sa": (3.0525811293166134, 0.8335207024513095),
    "ring": (0.0485696876403053, 0.2860212110245455),
}


def penalized_logp_z(m) -> float:
    """Penalized logP on ChemTS's scale: each term standardised by ZINC 250k's statistics (ZINC_STATS)."""
    z = {k: (v - ZINC_STATS[k][0]) / ZINC_STATS[k][1] for k, v in _plogp_terms(m).items()}
    return z["logp"] - z["sa"] - z["ring"]


def _similarity(target: str) -> Callable:
    ref = props.mol(target)
    if ref is None:
        raise ConfigError(f"similarity target {target!r} is not a valid SMILES (RDKit cannot parse it)")
    fp = props.fingerprint(ref)
    from rdkit import DataStructs

    return lambda m: DataStructs.TanimotoSimilarity(fp, props.fingerprint(m))


def _user(spec: str) -> Callable:
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"objective {spec!r}: cannot load {name} from {module} ({e}); write package.module:function "
            f"(on PYTHONPATH) or one of qed, plogp, plogp-z, logp, similarity:SMILES, "
            f"guacamol:NAME"
        ) from None
    if not callable(fn):
        raise ConfigError(f"objective {spec!r} is not a function")
    return lambda m: fn(props.Chem.MolToSmiles(m))


_FORKED: Objective | None = None  # what a forked scoring process scores (inherited at the fork, never pickled)


def _score_in_worker(chunk: list[str]) -> tuple[list[float | None], int, int, list[str]]:
    obj = _FORKED
    obj.invalid, obj.failed, obj.errors = 0, 0, []
    values = obj.serial(chunk)
    return values, obj.invalid, obj.failed, obj.errors


@dataclass
class Objective:
    """Scores molecules and counts what could not be scored. With workers > 1, a list is scored in that many forked
    processes (for slow objectives: GuacaMol's hops take ~20 ms a molecule), with the same scores and counts in the
    same order as one process gives: the objective is inherited at the fork, so any function works, lambdas too."""

    name: str
    on_mol: Callable | None = None  # RDKit molecule -> float
    on_smiles: Callable | None = None  # list of SMILES -> list of floats (GuacaMol scores whole lists)
    calls: int = 0
    invalid: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    workers: int = 1
    _pool: object = field(default=None, repr=False, compare=False)

    def __call__(self, smiles: list[str]) -> list[float | None]:
        if self.workers > 1 and len(smiles) >= 4 * self.workers and "fork" in mp.get_all_start_methods():
            return self._parallel(smiles)
        return self.serial(smiles)

    def _parallel(self, smiles: list[str]) -> list[float | None]:
        global _FORKED
        if self._pool is None:  # forked once, with this objective as it is now
            _FORKED = self
            self._pool = mp.get_context("fork").Pool(self.workers)
            atexit.register(self._pool.terminate)  # before the interpreter tears down what the pool needs
        size = -(-len(smiles) // (4 * self.workers))  # a few chunks per process: uneven molecules even out
        out: list[float | None] = []
        for values, invalid, failed, errors in self._pool.map(
            _score_in_worker, [smiles[i : i + size] for i in range(0, len(smiles), size)]
        ):
            out += values
            self.invalid += invalid
            self.failed += failed
            self.errors += errors[: max(0, 3 - len(self.errors))]
        self.calls += len(smiles)
        return out

    def close(self) -> None:
        """Stop the forked scoring processes now rather than at exit (a program that scores many objectives in turn
        would otherwise keep every pool); a later parallel call forks them again."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Objective:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def serial(self, smiles: list[str]) -> list[float | None]:
        """The scores computed in this process."""
        self.calls += len(smiles)
        mols = [props.mol(s) for s in smiles]
        self.invalid += sum(m is None for m in mols)
        if self.on_smiles is not None:
            valid = [i for i, m in enumerate(mols) if m is not None]
            values = self._whole_list([smiles[i] for i in valid])
            if values is None:  # something in the list raised or was not finite: find it molecule by molecule
                return self._guarded(lambda i: self.on_smiles([smiles[i]])[0], mols, smiles)
            out = [None] * len(smiles)
            for i, v in zip(valid, values):
                out[i] = v
            return out
        return self._guarded(lambda i: self.on_mol(mols[i]), mols, smiles)

    def _whole_list(self, smiles: list[str]) -> list[float] | None:
        """All the scores in one call (GuacaMol scores lists); None when any of them fails, to be found one by one."""
        try:
            values = [float(v) for v in self.on_smiles(smiles)]
        except Exception:  # noqa: BLE001 -- the per-molecule pass that follows names and counts the culprit
            return None
        return values if all(math.isfinite(v) for v in values) else None

    def _guarded(self, score: Callable, mols: list, smiles: list[str]) -> list[float | None]:
        out = []
        for i, m in enumerate(mols):
            if m is None:
                out.append(None)
                continue
            try:
                value = float(score(i))
                if not math.isfinite(value):
                    raise ValueError(f"returned {value}")
                out.append(value)
            except Exception as e:  # noqa: BLE001 -- a user's function may raise anything; it is counted, never fatal
                self.failed += 1
                if len(self.errors) < 3:
                    self.errors.append(f"{smiles[i]}: {type(e).__name__}: {e}")
                out.append(None)
        return out

    def counts(self) -> dict:
        return {
            "objective": self.name,
            "scored": self.calls,
            "invalid": self.invalid,
            "failed": self.failed,
            **({"failed_examples": self.errors} if self.errors else {}),
        }

    def state(self) -> dict:
        return {"calls": self.calls, "invalid": self.invalid, "failed": self.failed, "errors": self.errors}

    def restore(self, state: dict) -> None:
        self.calls, self.invalid, self.failed, self.errors = (
            state["calls"],
            state["invalid"],
            state["failed"],
            list(state["errors"]),
        )


SPECS = "qed, plogp, plogp-z, logp, similarity:SMILES, guacamol:NAME or package.module:function"


def get(spec: str) -> Objective:
    from rdkit.Chem import QED

    if spec == "qed":
        return Objective(spec, on_mol=QED.qed)
    if spec == "plogp":
        return Objective(spec, on_mol=penalized_logp)
    if spec == "plogp-z":
        return Objective(spec, on_mol=penalized_logp_z)
    if spec == "logp":
        return Objective(spec, on_mol=Crippen.MolLogP)
    kind, sep, arg = spec.partition(":")
    if sep and kind == "similarity":
        return Objective(spec, on_mol=_similarity(arg))
    if sep and kind == "guacamol":
        from towerlab.chem.guacamol_adapter import benchmark

        return Objective(spec, on_smiles=benchmark(arg).objective.score_list)
    if sep and arg:
        return Objective(spec, on_mol=_user(spec))
    raise ConfigError(f"unknown objective {spec!r}; use {SPECS}")
