"""A SMILES training corpus: the file read, every molecule checked by RDKit, a held-out split, the vocabulary, the
property columns. What every molecule recipe (chemvae, chemaae, smiles-lstm) trains on.

The data path is stored absolute in the run's config (config.build resolves it), so a run finds its training set
again from any folder: novelty is computed against it, and a missing file is an error, never an empty set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from towerlab.chem.file_cache import canonical_forms, columns
from towerlab.chem.tokens import Skipped, Vocab
from towerlab.data import smiles as smiles_data
from towerlab.dist import print0
from towerlab.errors import DataError


def data_file(cfg, default_file: str) -> Path:
    if cfg.data:
        return Path(cfg.data).expanduser()
    if os.environ.get("TOWERLAB_DATA"):
        return Path(os.environ["TOWERLAB_DATA"]) / default_file
    raise DataError(
        "no SMILES file: pass --data FILE (CSV with a SMILES column, or one SMILES per line) or set TOWERLAB_DATA"
    )


@dataclass
class Prepared:
    vocab: Vocab
    train: tuple[torch.Tensor, torch.Tensor]  # token indices [N, L] (compact: see `compact`), properties [N, P]
    val: tuple[torch.Tensor, torch.Tensor]
    binary: list[bool]  # per property: a 0/1 label (BCE) or a number (MSE on the standardised value)
    mean: torch.Tensor
    std: torch.Tensor
    train_smiles: list[str]
    val_smiles: list[str]
    canonical: dict[str, str]  # each valid SMILES of the files -> its canonical form (novelty without RDKit again)

    def train_canonical(self) -> set[str]:
        return {self.canonical[s] for s in self.train_smiles}


def valid_molecules(table: smiles_data.SmilesTable, names: list[str]) -> tuple[list[str], torch.Tensor, dict]:
    """The SMILES RDKit parses, their property values and canonical forms; the others reported in one line."""
    cols = columns(table, names)
    forms = canonical_forms(table)
    valid = [bool(c) for c in forms]
    keep = [i for i, ok in enumerate(valid) if ok]
    bad = len(table.smiles) - len(keep)
    if bad:
        examples = [s for s, ok in zip(table.smiles, valid) if not ok][:3]
        print0(f"{table.source}: {bad} invalid SMILES skipped (RDKit cannot parse them), e.g. {', '.join(examples)}")
    if not keep:
        raise DataError(
            f"{table.source}: no valid SMILES (RDKit parsed none of {len(table.smiles)}); check the SMILES column"
        )
    values = torch.tensor([[cols[n][i] for n in names] for i in keep], dtype=torch.float32).reshape(
        len(keep), len(names)
    )
    return [table.smiles[i] for i in keep], values, {table.smiles[i]: forms[i] for i in keep}


def _split(path: str, smiles: list[str], values: torch.Tensor, val_fraction: float, seed: int):
    order = torch.randperm(len(smiles), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(len(smiles) * val_fraction))
    if len(smiles) - n_val < 1:
        raise DataError(
            f"{path} has only {len(smiles)} valid molecule{'s' * (len(smiles) != 1)}: holding out "
            f"{n_val} for validation leaves none to train on; give a file with more valid SMILES "
            f"(or a separate --val-data)"
        )
    val_idx, train_idx = order[:n_val], order[n_val:]
    return ([smiles[i] for i in train_idx], values[train_idx]), ([smiles[i] for i in val_idx], values[val_idx])


def prepare(
    path: str,
    val_path: str,
    val_fraction: float,
    max_len: int,
    names: tuple[str, ...],
    seed: int,
    vocab_file: str,
    representation: str,
) -> Prepared:
    smiles, values, canonical = valid_molecules(smiles_data.read(path), list(names))
    if val_path:
        *val, more = valid_molecules(smiles_data.read(val_path), list(names))
        train, val, canonical = (smiles, values), tuple(val), {**canonical, **more}
    else:
        train, val = _split(path, smiles, values, val_fraction, seed)
    vocab = Vocab.load(Path(vocab_file)) if vocab_file else Vocab.build(train[0], max_len, representation)
    splits = []
    for name, (s, v) in (("training", train), ("validation", val)):
        skipped = Skipped()
        tokens, kept = vocab.encode(s, skipped, compact_dtype(len(vocab)))
        if skipped.counts:
            print0(f"{name} SMILES skipped: {skipped.report()}")
        if len(kept) == 0:
            raise DataError(
                f"none of the {len(s)} valid {name} molecules can be used: {skipped.report()}; "
                f"raise --max-len if they are too long"
            )
        splits.append((tokens, v[kept], [s[i] for i in kept]))
    (tr_tokens, tr_values, tr_smiles), (va_tokens, va_values, va_smiles) = splits
    binary = [bool(((col == 0) | (col == 1) | col.isnan()).all()) for col in tr_values.T]
    mean, std = _stats(tr_values, binary)
    return Prepared(
        vocab, (tr_tokens, tr_values), (va_tokens, va_values), binary, mean, std, tr_smiles, va_smiles, canonical
    )


def compact_dtype(vocab_size: int) -> torch.dtype:
    """Token indices are kept as uint8 when the vocabulary has at most 256 tokens (every SMILES vocabulary here has
    30-60): an eighth of int64's memory, the largest thing a corpus holds (MOSES: 1.6M molecules x 100 tokens, 1.3 GB
    as int64 in every process, 160 MB as uint8). `widen` gives the model its int64 indices batch by batch."""
    return torch.uint8 if vocab_size <= 256 else torch.int64


def widen(tokens: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A batch of compact token indices as the int64 an embedding takes (the loaders' transform of every molecule
    recipe)."""
    return (tokens.long(), *rest)


def _stats(values: torch.Tensor, binary: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = torch.zeros(values.shape[1]), torch.ones(values.shape[1])
    for j, is_binary in enumerate(binary):
        col = values[:, j][~values[:, j].isnan()]
        if not is_binary and len(col) > 1:
            mean[j], std[j] = col.mean(), col.std().clamp_min(1e-6)
    return mean, std


def prepared(cfg, names: list[str], default_file: str) -> Prepared:
    """The corpus a molecule recipe's config names (data, val_data, val_fraction, max_len, seed, vocab_file,
    representation)."""
    return prepare(
        str(data_file(cfg, default_file)),
        cfg.val_data,
        cfg.val_fraction,
        cfg.max_len,
        tuple(names),
        cfg.seed,
        cfg.vocab_file,
        cfg.representation,
    )


def save_vocab(cfg, data, run_dir: Path) -> None:
    """A molecule recipe's artifact: vocab.json beside the checkpoints, so sampling and decoding read the vocabulary
    the run was trained with."""
    data.meta["vocab"].save(run_dir / "vocab.json")


def with_vocab(cfg, run_dir: Path):
    vocab = Path(run_dir) / "vocab.json"
    if not vocab.is_file():
        raise DataError(f"{vocab} not found: the run's vocabulary is missing; retrain the run")
    return replace(cfg, vocab_file=str(vocab))
