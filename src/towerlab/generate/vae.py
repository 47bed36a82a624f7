"""Put a trained chemvae run to work: sample the prior, encode and decode SMILES, optimise a property in latent space.

Every molecule is judged by RDKit (validity, canonical form, properties), never by the model's own opinion.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from towerlab import infer
from towerlab.chem import props
from towerlab.chem.tokens import Skipped, Vocab
from towerlab.data import smiles as smiles_data
from towerlab.errors import ConfigError, DataError
from towerlab.recipes import chemvae, require
from towerlab.runs import RunRecord


@dataclass
class Model:
    net: torch.nn.Module
    vocab: Vocab
    cfg: object
    run_dir: Path


def load(run_dir: str | Path, which: str = "best") -> Model:
    run_dir = Path(run_dir)
    require(RunRecord.load(run_dir).recipe, "generate", command=f"`towerlab chem` ({run_dir})")
    loaded = infer.load(run_dir, which)
    return Model(loaded.model, Vocab.load(Path(loaded.cfg.vocab_file)), loaded.cfg, run_dir)


def training_set(m: Model) -> set[str]:
    """Canonical SMILES of the run's training data (for novelty), read again from the file it was trained on."""
    try:
        return {c for c in map(props.canonical, chemvae.prepared(m.cfg).train_smiles) if c}
    except DataError:
        return set()


@torch.no_grad()
def decode(m: Model, z: torch.Tensor, sample: bool = False) -> list[str]:
    return m.vocab.decode(m.net.generate(z, sample))


@torch.no_grad()
def encode(m: Model, smiles: list[str]) -> tuple[torch.Tensor, list[int], Skipped]:
    """Mean latent vectors of the SMILES the vocabulary can express; their positions; what was skipped."""
    skipped = Skipped()
    tokens, kept = m.vocab.encode(smiles, skipped)
    if not kept:
        raise DataError(f"none of the {len(smiles)} SMILES can be expressed in this run's vocabulary "
                        f"({skipped.report()})")
    return m.net.encode(tokens)[0], kept, skipped


def sample(m: Model, n: int, seed: int = 0, sample_tokens: bool = False) -> tuple[list[dict], dict]:
    """n molecules from the prior N(0, I): rows (SMILES, validity, canonical form, properties) and MOSES metrics."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    z = torch.randn(n, m.net.mu.out_features, generator=g)
    out = []
    for chunk in z.split(256):
        out += decode(m, chunk, sample_tokens)
    rows = [describe(s) for s in out]
    return rows, props.generation_metrics(out, training_set(m), k=min(10_000, n))


def describe(smiles: str) -> dict:
    """A CSV row for one generated SMILES: validity, canonical form and properties, as RDKit sees them."""
    p = props.properties(smiles)
    return {"smiles": smiles, "valid": p is not None, "canonical": props.canonical(smiles) or "", **(p or {})}


def encode_file(m: Model, path: str) -> tuple[list[dict], dict]:
    """A SMILES file -> rows (smiles, z0..zK) and the reconstruction report, encoding each molecule once."""
    smiles = read_smiles(path)
    z, kept, skipped = encode(m, smiles)
    rows = [{"smiles": smiles[i], **{f"z{j}": round(float(v), 6) for j, v in enumerate(row)}}
            for i, row in zip(kept, z)]
    return rows, reconstruction(m, smiles, z, kept, skipped)


def decode_file(m: Model, path: str) -> list[dict]:
    """A latents CSV (z0..zK columns, as encode_file writes) -> one described SMILES per row."""
    if not Path(path).is_file():
        raise DataError(f"latents file {path} not found; write one with `towerlab chem encode RUN_DIR SMILES_FILE`")
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    cols = [k for k in (table[0] if table else {}) if k.startswith("z") and k[1:].isdigit()]
    size = m.net.mu.out_features
    if len(cols) != size:
        raise DataError(f"{path} has {len(cols)} z columns; this run's latent space has {size} "
                        f"(write them with `towerlab chem encode`)")
    try:
        z = torch.tensor([[float(r[c]) for c in cols] for r in table])
    except ValueError as e:
        raise DataError(f"{path}: a z value is not a number ({e})") from None
    return [describe(s) for s in decode(m, z)]


def reconstruction(m: Model, smiles: list[str], z: torch.Tensor, kept: list[int], skipped: Skipped) -> dict:
    """Share of molecules decoded (from their mean latent vector z) back to the same molecule."""
    decoded = decode(m, z)
    same_string = sum(d == smiles[i] for d, i in zip(decoded, kept))
    same_mol = sum(props.canonical(d) == props.canonical(smiles[i]) for d, i in zip(decoded, kept))
    report = {"molecules": len(kept), "skipped": sum(skipped.counts.values()),
              "exact_smiles": same_string / len(kept), "same_molecule": same_mol / len(kept)}
    if skipped.counts:
        report["skipped_why"] = skipped.report()
    return report


def optimize(m: Model, seeds: list[str], prop: str, steps: int, lr: float) -> list[dict]:
    """Gradient ascent on the property head from each seed's latent vector; every step is decoded and kept when
    RDKit says it is a valid molecule whose computed property beats the seed's."""
    names = m.net.property_names
    if prop not in names:
        raise ConfigError(f"the run predicts {', '.join(names) or 'no properties'}; --property must be one of them")
    if prop not in props.PROPERTIES:
        raise ConfigError(f"{prop!r} is a CSV column: RDKit cannot check it; optimise qed, logp, mw or sa")
    j = names.index(prop)
    z0, kept, _ = encode(m, seeds)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    found = {}
    base = {i: props.properties(seeds[k])[prop] for i, k in enumerate(kept)}
    for step in range(1, steps + 1):
        opt.zero_grad()
        (-m.net.properties(z)[:, j].sum()).backward()
        opt.step()
        for i, s in enumerate(decode(m, z.detach())):
            p = props.properties(s)
            c = props.canonical(s)
            if p and p[prop] > base[i] and c not in found:
                found[c] = {"smiles": c, prop: p[prop], "seed": seeds[kept[i]], "seed_" + prop: base[i],
                            "step": step, "similarity_to_seed": props.tanimoto(c, seeds[kept[i]])}
    return sorted(found.values(), key=lambda r: -r[prop])


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["smiles"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def write_grid(smiles: list[str], legends: list[str], path: Path, per_row: int = 4) -> None:
    """A PNG grid of molecule drawings (RDKit)."""
    from rdkit.Chem import Draw

    mols = [props.mol(s) for s in smiles]
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(250, 200), legends=legends)
    image.save(str(path))


def read_smiles(path: str | None) -> list[str]:
    if not path:
        raise DataError("name a SMILES file: towerlab chem encode|optimize RUN_DIR FILE (CSV or one SMILES a line)")
    return smiles_data.read(path).smiles
