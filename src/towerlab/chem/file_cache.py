"""What RDKit computes for a whole SMILES file (canonical forms, properties), cached on disk by the file's contents.
No torch here: the graph GA reads its start file through canonical_forms without loading a network."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from pathlib import Path

from towerlab.chem import props
from towerlab.data import smiles as smiles_data
from towerlab.errors import ConfigError
from towerlab.files import atomic_write, cache_dir
from towerlab.progress import bar


def _cache_path(path: Path, names: list[str]) -> Path:
    key = hashlib.sha256(path.read_bytes() + ",".join(names).encode()).hexdigest()[:16]
    root = cache_dir() / "properties"
    return root / f"{path.name}-{key}.json"


def columns(table: smiles_data.SmilesTable, names: list[str]) -> dict[str, list[float]]:
    """Property values per row: CSV columns as given, RDKit properties computed once and cached on disk."""
    unknown = [n for n in names if n not in table.columns and n not in props.PROPERTIES]
    if unknown:
        raise ConfigError(
            f"property {unknown[0]!r} is neither a column of {table.source} "
            f"({', '.join(table.columns) or 'none'}) nor one RDKit computes ({', '.join(props.PROPERTIES)})"
        )
    computed = [n for n in names if n not in table.columns]
    out = {n: table.columns[n] for n in names if n in table.columns}
    if computed:
        cache = _cache_path(table.source, computed)
        if cache.is_file():
            out.update(json.loads(cache.read_text()))
        else:
            rows = [
                props.properties(s)
                for s in bar(table.smiles, f"computing {', '.join(computed)} (once; cached)", unit="mol")
            ]
            values = {n: [r[n] if r else math.nan for r in rows] for n in computed}
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache, json.dumps(values))  # as canonical_forms: a planted link is replaced
            out.update(values)
    return out


def canonical_forms(table: smiles_data.SmilesTable) -> list[str]:
    """Each SMILES's canonical form by this RDKit ("" where RDKit cannot parse it). One pass over a large file costs
    ~1 min (250k molecules), so the forms are cached by the file's contents and the RDKit version: every later read
    of the same file (eval, report, sampling's novelty) is quick, and novelty needs no second pass."""
    from rdkit import __version__ as rdkit_version

    if len(table.smiles) < 20_000:
        return [props.canonical(s) or "" for s in table.smiles]
    cache = _cache_path(table.source, [f"canonical-by-rdkit-{rdkit_version}"]).with_suffix(".json.gz")
    if cache.is_file():
        forms = json.loads(gzip.decompress(cache.read_bytes()))
        if len(forms) == len(table.smiles):
            return forms
    forms = [
        props.canonical(s) or "" for s in bar(table.smiles, f"checking {table.source.name} with RDKit", unit="mol")
    ]
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, gzip.compress(json.dumps(forms).encode()))
    return forms
