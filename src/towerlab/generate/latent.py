"""An autoencoder run's latent space put to work (chemvae, chemaae): encode and decode SMILES, and optimise a
predicted property by gradient ascent from seed molecules. Every result is judged by RDKit."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import torch

from towerlab.chem import props
from towerlab.chem.distribution import canonical_set
from towerlab.chem.tokens import Skipped
from towerlab.errors import ConfigError, DataError
from towerlab.generate.model import Model, describe, sample


def decode(m: Model, z: torch.Tensor, temperature: float = 0.0) -> list[str]:
    return m.strings(m.recipe.decode(m.net, z, temperature, None))


def tokens_of(m: Model, smiles: list[str], skipped: Skipped) -> tuple[torch.Tensor, list[int]]:
    """Token indices of the SMILES that are molecules (RDKit parses them) and that the vocabulary can express; the
    rest are counted in `skipped` with their reason. A string RDKit refuses (C1CC: an unclosed ring) is never
    encoded as if it were a molecule."""
    valid = []
    for i, s in enumerate(smiles):
        if props.mol(s) is None:
            skipped.add("not valid molecules (RDKit cannot parse them)", s)
        else:
            valid.append(i)
    tokens, kept = m.vocab.encode([smiles[i] for i in valid], skipped)
    return tokens, [valid[k] for k in kept]


@torch.no_grad()
def encode(m: Model, smiles: list[str]) -> tuple[torch.Tensor, list[int], Skipped]:
    """Latent vectors of the valid SMILES the vocabulary can express; their positions; what was refused and why."""
    skipped = Skipped()
    tokens, kept = tokens_of(m, smiles, skipped)
    if not kept:
        raise DataError(f"none of the {len(smiles)} SMILES can be encoded ({skipped.report()})")
    return m.recipe.encode(m.net, tokens), kept, skipped


def encode_file(m: Model, smiles: list[str]) -> tuple[list[dict], dict]:
    """SMILES -> rows (smiles, z0..zK) and the reconstruction report, encoding each molecule once."""
    z, kept, skipped = encode(m, smiles)
    rows = [
        {"smiles": smiles[i], **{f"z{j}": round(float(v), 6) for j, v in enumerate(row)}} for i, row in zip(kept, z)
    ]
    return rows, reconstruction(m, smiles, z, kept, skipped)


def decode_file(m: Model, path: str) -> list[dict]:
    """A latents CSV (z0..zK columns, as encode_file writes) -> one described SMILES per row."""
    if not Path(path).is_file():
        raise DataError(f"latents file {path} not found; write one with `towerlab chem encode RUN_DIR SMILES_FILE`")
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    cols = [k for k in (table[0] if table else {}) if k.startswith("z") and k[1:].isdigit()]
    size = m.recipe.latent_size(m.net)
    if len(cols) != size:
        raise DataError(
            f"{path} has {len(cols)} z columns; this run's latent space has {size} "
            f"(write them with `towerlab chem encode`)"
        )
    try:
        z = torch.tensor([[float(r[c]) for c in cols] for r in table])
    except ValueError as e:
        raise DataError(f"{path}: a z value is not a number ({e})") from None
    return [describe(s) for s in decode(m, z)]


def reconstruction(m: Model, smiles: list[str], z: torch.Tensor, kept: list[int], skipped: Skipped) -> dict:
    """Share of molecules decoded (from their latent vector z) back to the same molecule."""
    decoded = decode(m, z)
    same_string = sum(d == smiles[i] for d, i in zip(decoded, kept))
    same_mol = sum(props.canonical(d) == props.canonical(smiles[i]) for d, i in zip(decoded, kept))
    report = {
        "molecules": len(kept),
        "refused": sum(skipped.counts.values()),
        "exact_smiles": same_string / len(kept),
        "same_molecule": same_mol / len(kept),
    }
    if skipped.counts:
        report["refused_why"] = skipped.report()
    return report


def draw_seeds(pool: list[str], n: int, seed: int) -> list[str]:
    """n seeds drawn at random (seeded) from the held-out molecules: not the first in sort order, not trained on."""
    g = torch.Generator().manual_seed(seed)
    return [pool[i] for i in torch.randperm(len(pool), generator=g)[:n].tolist()]


def optimize(m: Model, seeds: list[str], prop: str, steps: int, lr: float) -> list[dict]:
    """Gradient ascent on the property head from each seed's latent vector; every step is decoded and kept when
    RDKit says it is a valid molecule whose computed property beats the seed's."""
    names = list(getattr(m.net, "property_names", []))
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
                found[c] = {
                    "smiles": c,
                    prop: p[prop],
                    "seed": seeds[kept[i]],
                    "seed_" + prop: base[i],
                    "step": step,
                    "similarity_to_seed": props.tanimoto(c, seeds[kept[i]]),
                }
    return sorted(found.values(), key=lambda r: -r[prop])


def optimisation_report(m: Model, found: list[dict], seeds: list[str], prop: str, steps: int, seed: int) -> dict:
    """What the optimisation is worth: the mean similarity of its molecules to their seeds, and its gain over
    sampling the prior with the same budget (as many decoded molecules as the optimisation decoded)."""
    budget = len(seeds) * steps
    prior = [p[prop] for s in canonical_set(sample(m, budget, seed)) if (p := props.properties(s))]
    top = lambda values, k: statistics.mean(sorted(values, reverse=True)[:k]) if values else float("nan")  # noqa: E731
    k = min(10, len(found), len(prior)) or 1
    opt_values = [r[prop] for r in found]
    return {
        "property": prop,
        "seeds": len(seeds),
        "decoded": budget,
        "improved": len(found),
        f"best_{prop}": max(opt_values, default=float("nan")),
        f"prior_best_{prop}": max(prior, default=float("nan")),
        f"top{k}_mean_{prop}": top(opt_values, k),
        f"prior_top{k}_mean_{prop}": top(prior, k),
        "gain_over_prior": top(opt_values, k) - top(prior, k),
        "mean_similarity_to_seed": statistics.mean([r["similarity_to_seed"] for r in found]) if found else float("nan"),
    }
