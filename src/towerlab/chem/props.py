"""Everything chemical goes through RDKit: parsing, canonical SMILES, properties, similarity, generation metrics."""

from __future__ import annotations

import gzip
import io
import os
import pickle

from rdkit import Chem, RDLogger
from rdkit.Chem import QED, Crippen, DataStructs, Descriptors, rdFingerprintGenerator

RDLogger.DisableLog("rdApp.*")  # an invalid SMILES is counted and reported, not printed to stderr

PROPERTIES = ("qed", "logp", "mw", "sa")
_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def mol(smiles: str):
    """RDKit molecule, or None when the SMILES is not a valid molecule."""
    return Chem.MolFromSmiles(smiles) if smiles else None


def canonical(smiles: str) -> str | None:
    m = mol(smiles)
    return Chem.MolToSmiles(m) if m is not None else None


class _ListsOnly(pickle.Unpickler):
    """The SA-score fragment table is a pickle of plain lists: load it without admitting any class or function."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing {module}.{name} in the SA-score table")


def random_smiles(smiles: list[str], seed: int) -> list[str]:
    """Each molecule written from a random atom order (SMILES enumeration; RDKit, seeded: the same strings for the
    same seed). A string RDKit cannot parse comes back as it was."""
    out = []
    for i, s in enumerate(smiles):
        m = mol(s)
        out.append(Chem.MolToRandomSmilesVect(m, 1, randomSeed=(seed + i) % 2**31)[0] if m is not None else s)
    return out


def _sa_scorer():
    """RDKit Contrib's sascorer (Ertl & Schuffenhauer), its fragment table read with the lists-only unpickler."""
    from rdkit.Chem import RDConfig

    folder = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if not os.path.isfile(os.path.join(folder, "sascorer.py")):
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location("towerlab_sascorer", os.path.join(folder, "sascorer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with gzip.open(os.path.join(folder, "fpscores.pkl.gz"), "rb") as f:
        table = _ListsOnly(io.BytesIO(f.read())).load()
    module._fscores = {frag: float(row[0]) for row in table for frag in row[1:]}
    return module


_SA = None


def sa_score(m) -> float:
    """Synthetic accessibility, 1 (easy) .. 10 (hard); nan where RDKit's Contrib is not installed."""
    global _SA
    if _SA is None:
        _SA = _sa_scorer() or False
    return float(_SA.calculateScore(m)) if _SA else float("nan")


def properties(smiles: str) -> dict[str, float] | None:
    """QED, Crippen logP, molecular weight, SA score of a valid molecule; None for an invalid one."""
    m = mol(smiles)
    if m is None:
        return None
    return {"qed": QED.qed(m), "logp": Crippen.MolLogP(m), "mw": Descriptors.MolWt(m), "sa": sa_score(m)}


def fingerprint(m):
    return _MORGAN.GetFingerprint(m)


def tanimoto(a: str, b: str) -> float:
    """Tanimoto similarity of Morgan fingerprints (radius 2, 2048 bits)."""
    ma, mb = mol(a), mol(b)
    if ma is None or mb is None:
        return float("nan")
    return DataStructs.TanimotoSimilarity(fingerprint(ma), fingerprint(mb))


def generation_metrics(generated: list[str], training: set[str], k: int = 10_000) -> dict[str, float]:
    """The MOSES definitions: validity = valid / generated; unique@k = distinct canonical SMILES among the first k
    valid; novelty = share of the distinct valid molecules that are not in the (canonical) training set."""
    valid = [c for c in map(canonical, generated) if c]
    first = valid[:k]
    unique = set(valid)
    return {
        "validity": len(valid) / max(len(generated), 1),
        f"unique@{k}": len(set(first)) / max(len(first), 1),
        "novelty": len(unique - training) / max(len(unique), 1),
        "valid": len(valid),
        "generated": len(generated),
    }
