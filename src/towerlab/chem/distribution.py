"""How close a generator's molecules are to a data distribution: the MOSES metrics (validity, unique@k, novelty),
novelty against a reference set beside the training set (with both sizes, so a reader can tell a 22k-molecule
split from MOSES's 1.6M), the Fréchet ChemNet Distance (fcd_torch; Preuer et al. 2018) and GuacaMol's KL score.

Reference statistics that cost minutes (canonical forms of 250k SMILES, ChemNet activations of 176k) are cached
under ~/.cache/towerlab by the file's SHA-256, as JSON and .npz (never pickles)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np

from towerlab.chem import props
from towerlab.data import smiles as smiles_data
from towerlab.errors import ConfigError
from towerlab.files import atomic_write, cache_dir
from towerlab.progress import bar


def _cache(path: Path, kind: str, suffix: str) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    root = cache_dir() / kind
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{path.name}-{digest}{suffix}"


def reference_set(path: str | Path) -> set[str]:
    """Canonical SMILES (by this RDKit) of a reference file, cached."""
    path = Path(path)
    return canonical_set(smiles_data.read(path).smiles, f"canonicalising {path.name}")  # the read names a bad file


def canonical_set(smiles: list[str], desc: str = "canonicalising") -> set[str]:
    """The distinct canonical forms of a list of SMILES; a large list (a training set) is cached on disk by the
    SHA-256 of its contents and the RDKit version, so it costs its ~1 min once, with a progress bar."""
    from rdkit import __version__ as rdkit_version

    if len(smiles) < 20_000:
        return {c for c in map(props.canonical, smiles) if c}
    digest = hashlib.sha256("\n".join([rdkit_version, *smiles]).encode()).hexdigest()[:24]
    root = cache_dir() / "canonical"
    cache = root / f"{digest}.json.gz"
    if cache.is_file():
        return set(json.loads(gzip.decompress(cache.read_bytes())))
    out = {c for c in map(props.canonical, bar(smiles, desc, unit="mol")) if c}
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, gzip.compress(json.dumps(sorted(out)).encode()))
    return out


def novelty(generated: list[str], reference: set[str]) -> float:
    unique = {c for c in map(props.canonical, generated) if c}
    return len(unique - reference) / max(len(unique), 1)


def _fcd():
    try:
        from fcd_torch import FCD
    except ImportError:
        raise ConfigError(
            "the FCD needs fcd_torch: pip install 'towerlab[generate]' (its ChemNet weights come inside the wheel)"
        ) from None
    return FCD(device="cpu", n_jobs=1)


def fcd_reference_stats(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    smiles = smiles_data.read(path).smiles
    cache = _cache(path, "fcd", ".npz")
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            return {"mu": f["mu"], "sigma": f["sigma"]}
    stats = _fcd_stats(smiles)
    np.savez(cache, mu=stats["mu"], sigma=stats["sigma"])
    return stats


def _fcd_stats(smiles: list[str], chunk: int = 5000) -> dict[str, np.ndarray]:
    """Mean and covariance of the ChemNet activations, accumulated chunk by chunk in float64: fcd_torch's own
    precalc over MOSES's 176k test molecules took 22 GB and was killed for memory here."""
    f = _fcd()
    n, total, outer = 0, np.zeros(512), np.zeros((512, 512))
    for start in range(0, len(smiles), chunk):
        acts = f.get_predictions(smiles[start : start + chunk]).astype(np.float64)
        n, total, outer = n + len(acts), total + acts.sum(0), outer + acts.T @ acts
    mu = total / n
    return {"mu": mu, "sigma": (outer - n * np.outer(mu, mu)) / (n - 1)}  # np.cov's unbiased estimate


def fcd(generated: list[str], reference: str | Path) -> float:
    """Fréchet ChemNet Distance of the valid generated molecules to a reference file (MOSES: its test set)."""
    valid = [c for c in map(props.canonical, generated) if c]
    if len(valid) < 2:
        return float("nan")
    return float(_fcd().metric(fcd_reference_stats(reference), _fcd_stats(valid)))


def report(
    generated: list[str],
    training: list[str],
    k: int = 10_000,
    reference: str | None = None,
    fcd_reference: str | None = None,
    kl: bool = False,
    train_canonical: set[str] | None = None,
) -> dict:
    """The generation metrics of `generated`, with the size of every set a figure was measured against."""
    train = (
        train_canonical
        if train_canonical is not None
        else canonical_set(training, "canonicalising the training set (once; cached)")
    )
    out = props.generation_metrics(generated, train, k=min(k, len(generated)))
    out["training_set_size"] = len(train)
    if reference:
        ref = reference_set(reference)
        out["novelty_vs_reference"] = novelty(generated, ref)
        out["reference_set_size"] = len(ref)
        out["reference"] = str(reference)
    if fcd_reference:
        out["fcd"] = fcd(generated, fcd_reference)
        out["fcd_reference"] = str(fcd_reference)
    if kl:
        from towerlab.chem.guacamol_adapter import kl_score

        out["kl_score"] = kl_score(generated, training)
    return out
