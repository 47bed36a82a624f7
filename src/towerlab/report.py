"""`towerlab report PATH`: one self-contained report.html for a run or a search folder (pictures embedded as PNG
data, no network, opens from disk). What it shows follows what the recipe can do (its capabilities):

    every run       status, time, throughput, the config, training and validation curves, the checkpoints
    classify        confusion matrix, per-class accuracy, the most confident mistakes (validation split)
    generate        a grid of sampled molecules, QED and logP histograms against the training set, the metrics
    search          best and mean fitness per generation, genes against fitness, a sortable table of the trials
                    linking to their own reports

A first part of issue 16: the board, the automatic report at the end of train/search/jobs and the browser test
are still to come."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from towerlab.errors import DataError
from towerlab.runs import RunRecord

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4;cursor:pointer}img{max-width:100%}.kv td:first-child{color:#666}.figs img{margin:.3em}"""
SORT_JS = """for(const t of document.querySelectorAll('table.sortable'))t.querySelectorAll('th').forEach((h,i)=>
h.onclick=()=>{const b=t.tBodies[0],r=[...b.rows],d=h.dataset.d=h.dataset.d==='1'?'-1':'1';r.sort((x,y)=>{
const a=x.cells[i].innerText,c=y.cells[i].innerText,n=parseFloat(a)-parseFloat(c);
return (isNaN(n)?a.localeCompare(c):n)*d});r.forEach(e=>b.appendChild(e))});"""


# -- pieces of a page ------------------------------------------------------------------------------------------
def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _image(pil_image, alt: str = "image") -> str:
    buf = io.BytesIO()
    pil_image.save(buf, format="PNG")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _table(rows: list[dict], cls: str = "sortable", links: dict[int, str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = []
    for i, r in enumerate(rows):
        cells = "".join(f"<td>{_cell(r.get(k, ''))}</td>" for k in keys)
        if links and i in links:
            cells = cells.replace("<td>", f'<td><a href="{html.escape(links[i])}">', 1).replace("</td>", "</a></td>", 1)
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _kv(d: dict) -> str:
    return '<table class="kv">' + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_cell(v)}</td></tr>"
                                          for k, v in d.items()) + "</table>"


def _page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}<script>{SORT_JS}</script>"
            f"</body></html>")


# -- a run -----------------------------------------------------------------------------------------------------
def _curves(rows: list[dict]) -> str:
    plt = _plt()
    groups: dict[str, list[str]] = {}
    for r in rows:
        for k in r:
            if "/" in k and not k.endswith(("eval_items", "lr")):
                groups.setdefault(k.split("/", 1)[1], []).append(k)
    figs = []
    for name in sorted(groups):
        keys = sorted(set(groups[name]))
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if k in r and isinstance(r[k], (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o" if len(pts) < 30 else None, markersize=3, label=k.split("/")[0])
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        figs.append(_png(fig))
    return f'<div class="figs">{"".join(figs)}</div>' if figs else "<p>no metrics logged yet</p>"


def _checkpoints(rec: RunRecord) -> str:
    from towerlab import checkpoint

    rows = [{"step": step, "folder": folder.name, "verifies": "yes" if checkpoint.damage(folder) is None else
             f"no: {checkpoint.damage(folder)}"} for step, folder in rec.checkpoints]
    return _table(rows, "plain")


def _summary(rec: RunRecord) -> dict:
    final = rec.final or {}
    out = {"recipe": rec.recipe, "status": rec.status, "folder": str(rec.path)}
    best = final.get("best") or {}
    if best:
        out[f"best {best.get('metric')}"] = best.get("value")
        out["best at step"] = best.get("step")
    for k in ("step", "epoch", "wall_s", "images_per_s", "eval_s"):
        if k in final:
            out[k] = final[k]
    if rec.error:
        out["error"] = rec.error
    return out


def run_report(path: Path) -> str:
    from towerlab.recipes import has

    rec = RunRecord.load(path)
    sections = [("Run", _kv(_summary(rec))), ("Final metrics", _kv({k: v for k, v in (rec.final or {}).items()
                                                                    if not isinstance(v, dict)}))]
    sections.append(("Curves", _curves(rec.metrics())))
    if rec.checkpoints and has(rec.recipe, "classify"):
        sections.append(("Classification (validation split)", _classification(path)))
    if rec.checkpoints and has(rec.recipe, "generate"):
        sections.append(("Molecules", _molecules(path)))
    sections.append(("Checkpoints", _checkpoints(rec)))
    sections.append(("Config", _kv(rec.config)))
    return _page(f"{rec.recipe}: {path.name}", sections)


def _classification(path: Path) -> str:
    """Confusion matrix, per-class accuracy and the most confident mistakes, from the best weights."""
    import torch

    from towerlab import infer
    from towerlab.dist import Dist

    loaded = infer.load(path, "best")
    recipe, cfg = loaded.recipe, loaded.cfg
    val = recipe.build_data(cfg, Dist()).val
    names = recipe.class_names(cfg)
    probs, labels, inputs = [], [], []
    with torch.no_grad():
        for batch in val:
            x, y = batch[0], batch[-1]
            probs.append(recipe.predict(loaded.model, x).float())
            labels.append(y)
            inputs.append(x)
    p, y, x = torch.cat(probs), torch.cat(labels), torch.cat(inputs)
    pred = p.argmax(1)
    k = len(names)
    cm = torch.zeros(k, k, dtype=torch.long)
    cm.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    per_class = (cm.diag() / cm.sum(1).clamp_min(1)).tolist()
    accuracy = float((pred == y).float().mean())
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.45 * k + 2, 0.45 * k + 1.5))
    ax.imshow(cm.numpy(), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    matrix = _png(fig)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * k), 2.6))
    ax.bar(range(k), per_class)
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title("accuracy per class")
    bars = _png(fig)
    wrong = (pred != y).nonzero()[:, 0]
    top = wrong[p[wrong, pred[wrong]].argsort(descending=True)][:8].tolist()
    gallery = "".join(f"<div>{_image(_picture(x[i]), f'true {names[y[i]]}, predicted {names[pred[i]]}')}<br><small>"
                      f"true {html.escape(names[y[i]])}, predicted {html.escape(names[pred[i]])} "
                      f"({float(p[i, pred[i]]):.2f})</small></div>" for i in top)
    return (f'<p>accuracy <b id="accuracy">{accuracy:.4f}</b> on {len(y)} validation items (best weights)</p>'
            f'<div class="figs">{matrix}{bars}</div><h3>Most confident mistakes</h3>'
            f'<div style="display:flex;gap:1em;flex-wrap:wrap">{gallery}</div>')


def _picture(t):
    """A model input [C, H, W] (normalised) as a picture: stretched to 0..255, enlarged to at least 64 pixels."""
    from PIL import Image

    t = t.float().cpu()
    t = (t - t.min()) / (t.max() - t.min()).clamp_min(1e-6) * 255
    a = t.byte().permute(1, 2, 0).numpy()
    im = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a[..., :3])
    scale = max(1, 64 // max(im.size))
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST)


def _molecules(path: Path) -> str:
    from towerlab.chem import props
    from towerlab.errors import DataError as _DataError
    from towerlab.generate import model as gen

    m = gen.load(path, "best")
    smiles = gen.sample(m, 200, seed=0)
    try:
        training = gen.training_smiles(m)
    except _DataError as e:
        training, note = [], f"<p>{html.escape(str(e))}</p>"
    else:
        note = ""
    metrics = props.generation_metrics(smiles, gen.canonical_set(training), k=len(smiles))
    valid = [s for s in smiles if props.mol(s) is not None]
    from rdkit.Chem import Draw

    grid = Draw.MolsToGridImage([props.mol(s) for s in valid[:12]], molsPerRow=4, subImgSize=(220, 170))
    plt = _plt()
    figs = []
    sample_props = [props.properties(s) for s in valid]
    train_props = [props.properties(s) for s in training[:1000]]
    for key in ("qed", "logp"):
        fig, ax = plt.subplots(figsize=(4, 2.6))
        ax.hist([q[key] for q in train_props if q], bins=30, alpha=0.5, density=True, label="training")
        ax.hist([q[key] for q in sample_props if q], bins=30, alpha=0.5, density=True, label="sampled")
        ax.set_title(key)
        ax.legend(fontsize=7)
        figs.append(_png(fig))
    return (note + _kv({**metrics, "training set size": len(gen.canonical_set(training))}) +
            f'<div class="figs">{_image(grid, "sampled molecules")}{"".join(figs)}</div>')


# -- a search --------------------------------------------------------------------------------------------------
def search_report(path: Path) -> str:
    import csv

    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    gens = json.loads((path / "generations.json").read_text())
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([g["generation"] for g in gens], [g["best"] for g in gens], marker="o", label="best")
    ax.plot([g["generation"] for g in gens], [g["mean"] for g in gens], marker="o", label="mean")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.legend()
    ax.grid(alpha=0.3)
    fitness = _png(fig)
    trials = list(csv.DictReader(open(path / "trials.csv"))) if (path / "trials.csv").is_file() else []
    links = {}
    for i, t in enumerate(trials):
        run = path / "trials" / t["trial"]
        if (run / "report.html").is_file():
            links[i] = f"trials/{t['trial']}/report.html"
    return _page(f"search: {path.name}", [
        ("Best", _kv(json.loads((path / "best.json").read_text()))),
        ("Fitness per generation", fitness),
        ("Genes against fitness", _parallel(trials)),
        ("Trials", _table(trials, links=links))])


def _parallel(trials: list[dict]) -> str:
    """Parallel coordinates: one axis per gene (categories in order of appearance), lines coloured by fitness."""
    if not trials:
        return "<p>no trials yet</p>"
    plt = _plt()
    skip = {"trial", "status", "seconds"}
    keys = [k for k in trials[0] if k not in skip]
    metric = keys[-1]
    done = [t for t in trials if t.get(metric) not in ("", None)]
    cols = []
    for k in keys:
        vals = [t[k] for t in done]
        try:
            nums = [float(v) for v in vals]
        except ValueError:
            cats = list(dict.fromkeys(vals))
            nums = [cats.index(v) / max(len(cats) - 1, 1) for v in vals]
        lo, hi = min(nums, default=0), max(nums, default=1)
        cols.append([(v - lo) / (hi - lo) if hi > lo else 0.5 for v in nums])
    fit = [float(t[metric]) for t in done]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    cmap = plt.get_cmap("viridis")
    lo, hi = min(fit, default=0), max(fit, default=1)
    for i in range(len(done)):
        ax.plot(range(len(keys)), [c[i] for c in cols], color=cmap((fit[i] - lo) / ((hi - lo) or 1)), alpha=0.6)
    ax.set_xticks(range(len(keys)), keys)
    ax.set_yticks([])
    return _png(fig)


# -- entry -----------------------------------------------------------------------------------------------------
def write(path: str | Path) -> Path:
    path = Path(path)
    if (path / "generations.json").is_file():
        text = search_report(path)
    elif (path / "config.yaml").is_file():
        text = run_report(path)
    else:
        raise DataError(f"{path} is neither a run directory (config.yaml) nor a search folder (generations.json); "
                        f"pass the folder `towerlab train` or `towerlab search` wrote")
    out = path / "report.html"
    out.write_text(text)
    return out
