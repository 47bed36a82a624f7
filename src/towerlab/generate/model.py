"""A trained molecule generator loaded for use: its network, vocabulary, config and recipe; sampling it and
describing what it wrote. Every molecule is judged by RDKit (validity, canonical form, properties), never by the
model's own opinion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from towerlab import infer
from towerlab.chem import props
from towerlab.chem.tokens import Vocab
from towerlab.data import smiles as smiles_data
from towerlab.errors import DataError
from towerlab.recipes import require
from towerlab.runs import RunRecord


@dataclass
class Model(infer.Loaded):
    """A loaded run (infer.Loaded: recipe, cfg, model, weights) that generates molecules: with its vocabulary."""

    vocab: Vocab | None = None
    run_dir: Path | None = None

    @property
    def net(self) -> torch.nn.Module:
        return self.model

    def strings(self, tokens: torch.Tensor) -> list[str]:
        return self.vocab.decode(tokens.cpu())


def load(run_dir: str | Path, which: str = "best", needs: str = "generate", command: str = "`towerlab chem`") -> Model:
    run_dir = Path(run_dir)
    require(RunRecord.load(run_dir).recipe, needs, command=f"{command} ({run_dir})")
    loaded = infer.load(run_dir, which)
    return Model(
        loaded.recipe, loaded.cfg, loaded.model, loaded.weights, Vocab.load(Path(loaded.cfg.vocab_file)), run_dir
    )


def data_file(
    m: Model,
    why: str = "the hill-climb starts from its best molecules: restore it, name another with "
    "--start FILE, or pass --start none",
) -> Path:
    """The SMILES file the run trained on (its config stores it absolute); a missing one is one line saying why."""
    file = m.recipe.data_file(m.cfg)
    if not file.is_file():
        raise DataError(f"the run's data file {file} is not found, and {why}")
    return file


def _corpus(m: Model, why: str):
    data_file(m, why)
    return m.recipe.prepared(m.cfg)


def training_smiles(m: Model, path: str | None = None) -> list[str]:
    """The SMILES the run trained on, read again from the file its config names (stored absolute), or from `path`.
    A missing file is an error: novelty against an empty set would read 1.0."""
    if path:
        return smiles_data.read(path).smiles
    return _corpus(m, "novelty is measured against it: restore it, or name it with --train-data FILE").train_smiles


def training_set(m: Model, path: str | None = None) -> tuple[list[str], set[str]]:
    """(the training SMILES, their canonical forms): from `path` (canonicalised here), or from the run's corpus,
    whose canonical forms were cached when the file was first read (no second RDKit pass over 245k molecules)."""
    if path:
        from towerlab.chem.distribution import canonical_set

        smiles = smiles_data.read(path).smiles
        return smiles, canonical_set(smiles, "canonicalising the training set (once; cached)")
    corpus = _corpus(m, "novelty is measured against it: restore it, or name it with --train-data FILE")
    return corpus.train_smiles, corpus.train_canonical()


def held_out_smiles(m: Model) -> list[str]:
    """The run's validation molecules (never trained on): where optimisation seeds are drawn from."""
    return _corpus(
        m, "seeds are drawn from its held-out molecules: restore it, or give seed SMILES as a file"
    ).val_smiles


@torch.no_grad()
def sample(m: Model, n: int, seed: int = 0, temperature: float | None = None, batch: int = 512) -> list[str]:
    """n SMILES from the model (seeded: the same seed gives the same molecules on any device)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    t = default_temperature(m) if temperature is None else temperature
    out = []
    for start in range(0, n, batch):
        out += m.strings(m.recipe.sample(m.net, min(batch, n - start), t, g))
    return out


def default_temperature(m: Model) -> float:
    """A language model is sampled at temperature 1 (its distribution); an autoencoder decodes its most probable
    tokens (temperature 0) from points of the prior."""
    from towerlab.recipes import has

    return 0.0 if has(m.recipe, "autoencode") else 1.0


def describe(smiles: str) -> dict:
    """A CSV row for one generated SMILES: validity, canonical form and properties, as RDKit sees them."""
    p = props.properties(smiles)
    return {"smiles": smiles, "valid": p is not None, "canonical": props.canonical(smiles) or "", **(p or {})}


def read_smiles(path: str | None, what: str = "encode|optimize") -> list[str]:
    if not path:
        raise DataError(f"name a SMILES file: towerlab chem {what} RUN_DIR FILE (CSV or one SMILES a line)")
    return smiles_data.read(path).smiles
