"""SMILES files -> lists of SMILES and property columns.

    CSV (.csv or .csv.gz) with a header holding a SMILES column (any case): Tox21, MOSES. Other numeric columns are
    properties; an empty cell is a missing value (Tox21's 12 assays have many).
    Text (.txt, .smi, .gz of those): one SMILES per line, optionally followed by whitespace and a number (ZINC / JT-VAE).

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


def _text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"SMILES file {path} not found; pass a CSV with a SMILES column or a .txt with one per line")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path} is not a valid gzip file ({e}); download it again") from None
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


def read_csv(path: Path, text: str) -> SmilesTable:
    reader = csv.reader(io.StringIO(text))
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
    for line in text.splitlines():
        parts = line.split()
        if parts:
            smiles.append(parts[0])
            scores.append(float(parts[1]) if len(parts) > 1 else math.nan)
    if not smiles:
        raise DataError(f"{path} is empty; it needs one SMILES per line")
    return SmilesTable(smiles, {"score": scores} if any(not math.isnan(s) for s in scores) else {}, path)


def read(path: str | Path) -> SmilesTable:
    path = Path(path)
    text = _text(path)
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    return read_csv(path, text) if stem.endswith(".csv") else read_lines(path, text)
