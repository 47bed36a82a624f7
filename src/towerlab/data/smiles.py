"""SMILES files -> lists of SMILES and property columns.

    CSV (.csv or .csv.gz) with a header holding a SMILES column (any case): Tox21, MOSES. Other numeric columns are
    properties; an empty cell is a missing value (Tox21's 12 assays have many). TSV (.tsv, .tsv.gz) the same.
    Text (.txt, .smi, .gz of those): one SMILES per line, optionally followed by whitespace and a number (ZINC / JT-VAE)
    or a name (a .smi file's title, ignored); a first line `smiles ...` is a header.
    SDF (.sdf, .sdf.gz): RDKit's reader; each record's SMILES (RDKit's canonical form) and its numeric data fields
    as properties; a record RDKit cannot read is counted and said, not fatal.

Invalid SMILES (RDKit cannot parse them) are counted and reported, not fatal.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path

from towerlab.errors import DataError


@dataclass
class SmilesTable:
    smiles: list[str]
    columns: dict[str, list[float]]  # property name -> one value per row (nan = missing)
    source: Path


def _bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it ends in .gz."""
    if not path.is_file():
        raise DataError(
            f"SMILES file {path} not found; pass a CSV with a SMILES column, a .txt with one per line or an SD file"
        )
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path} is not a valid gzip file ({e}); download it again") from None
    return raw


def _text(path: Path) -> str:
    raw = _bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; SMILES files are plain text") from None


def _number(value: str, path: Path, column: str, line: int) -> float:
    if value.strip() == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{path} line {line}: column {column!r} holds {value!r}, not a number") from None


def read_csv(path: Path, text: str, delimiter: str = ",") -> SmilesTable:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise DataError(f"{path} is empty; it needs a header line with a SMILES column and one molecule per line")
    names = [h.strip() for h in header]
    lower = [h.lower() for h in names]
    if "smiles" not in lower:
        hint = " (is it separated by ';' or tabs? towerlab reads comma-separated files)" if len(names) == 1 else ""
        raise DataError(f"{path} has no SMILES column (header: {', '.join(names)[:80]}){hint}; name the column SMILES")
    col = lower.index("smiles")
    smiles, values = [], {n: [] for i, n in enumerate(names) if i != col and n.lower() not in ("mol_id", "id", "name")}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(names):
            raise DataError(f"{path} line {line} has {len(row)} fields, the header {len(names)}; fix the row")
        smiles.append(row[col].strip())
        for i, n in enumerate(names):
            if n in values:
                values[n].append(_number(row[i], path, n, line))
    if not smiles:
        raise DataError(f"{path} has a header but no molecules")
    return SmilesTable(smiles, values, path)


def read_lines(path: Path, text: str) -> SmilesTable:
    smiles, scores = [], []
    for i, line in enumerate(text.splitlines()):
        parts = line.split()
        if not parts or (i == 0 and parts[0].lower() == "smiles"):
            continue
        smiles.append(parts[0])
        scores.append(_maybe_number(parts[1]) if len(parts) > 1 else math.nan)
    if not smiles:
        raise DataError(f"{path} is empty; it needs one SMILES per line")
    return SmilesTable(smiles, {"score": scores} if any(not math.isnan(s) for s in scores) else {}, path)


def _maybe_number(text: str) -> float:
    """The number after a SMILES (a score), or nan when it is a name."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_sdf(path: Path) -> SmilesTable:
    """An SD file through RDKit: SMILES and the numeric data fields of the readable records."""
    import sys

    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    smiles, fields, unreadable = [], [], 0
    for mol in Chem.ForwardSDMolSupplier(io.BytesIO(_bytes(path))):
        if mol is None:
            unreadable += 1
            continue
        smiles.append(Chem.MolToSmiles(mol))
        fields.append({k: _maybe_number(str(v)) for k, v in mol.GetPropsAsDict().items()})
    if not smiles:
        raise DataError(f"{path} holds no molecule RDKit can read (an SD file: molblocks separated by $$$$)")
    if unreadable:
        print(f"towerlab: {path}: {unreadable} SD records RDKit cannot read were skipped", file=sys.stderr)
    # numeric fields are properties (a record without one: a missing value); text fields (names, ids) are not
    names = [
        n
        for n in dict.fromkeys(k for f in fields for k in f)
        if any(not math.isnan(f.get(n, math.nan)) for f in fields)
    ]
    return SmilesTable(smiles, {n: [f.get(n, math.nan) for f in fields] for n in names}, path)


def read(path: str | Path) -> SmilesTable:
    path = Path(path)
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    if stem.endswith(".sdf"):
        return read_sdf(path)
    text = _text(path)
    if stem.endswith(".tsv"):
        return read_csv(path, text, "\t")
    return read_csv(path, text) if stem.endswith(".csv") else read_lines(path, text)
