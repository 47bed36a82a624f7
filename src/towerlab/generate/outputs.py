"""What a molecule search leaves in its folder (best.csv, calls.csv, per-round CSV, score.png, best.png,
outcome.json). No torch here: the graph GA, which trains nothing, writes its outputs without importing it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from towerlab.chem import props
from towerlab.files import atomic_write, json_text, write_png
from towerlab.generate.scoring import ranked, summary


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["smiles"]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())  # a link planted at best.csv is replaced, never written through


def write_grid(smiles: list[str], legends: list[str], path: Path, per_row: int = 4) -> Path:
    """A PNG grid of molecule drawings (RDKit); invalid SMILES are left out."""
    from rdkit.Chem import Draw

    pairs = [(props.mol(s), label) for s, label in zip(smiles, legends) if props.mol(s) is not None]
    image = Draw.MolsToGridImage(
        [p[0] for p in pairs], molsPerRow=per_row, subImgSize=(250, 200), legends=[p[1] for p in pairs]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(image, path)  # a link planted at best.png is replaced, never written through


def write_outputs(
    out: Path, seen: dict[str, float | None], history: list[dict], name: str, x: str = "round", max_calls: int = 0
) -> dict:
    """best.csv (every scored molecule, best first), calls.csv (the same in the order they were scored: the
    objective's calls), rounds.csv, score.png (per round), best.png (a grid), and
    outcome.json (calls, best, top-10 and top-100 means, PMO's area under the top-10 curve); returns the summary."""
    rows = [(c, seen[c]) for c in ranked(seen)]
    result = {"objective": name, **summary(seen, max_calls)}
    atomic_write(out / "outcome.json", json_text(result, indent=1).encode())
    write_csv([{"smiles": c, "score": v} for c, v in rows], out / "best.csv")
    write_csv([{"call": i, "smiles": c, "score": v} for i, (c, v) in enumerate(seen.items(), 1)], out / "calls.csv")
    write_csv(history, out / ("rounds.csv" if x == "round" else "progress.csv"))
    if rows:
        write_grid([c for c, _ in rows[:12]], [f"{v:.3f}" for _, v in rows[:12]], out / "best.png")
    plot(history, name, out / "score.png", x)
    return result


def plot(history: list[dict], name: str, path: Path, x: str = "round") -> None:
    from matplotlib.ticker import MaxNLocator

    from towerlab.plots import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs = [h[x] for h in history]
    for key, label in (("best", "best"), ("top10_mean", "top-10 mean"), ("mean_kept", "mean of kept")):
        if history and key in history[0]:
            ys = [float("nan") if h[key] is None else h[key] for h in history]  # a round with nothing: a gap
            ax.plot(xs, ys, marker="o" if len(xs) < 40 else None, label=label)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)
