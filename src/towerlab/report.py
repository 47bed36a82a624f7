"""`towerlab report PATH`: one self-contained report.html for a run or a search folder (pictures embedded as PNG
data, no network, opens from disk). What it shows follows what the recipe can do (its capabilities):

    every run       status, time, throughput, the config, training and validation curves, the checkpoints, bars
                    for metrics kept per class (segmentation's IoU per class)
    classify        confusion matrix, per-class accuracy, the most confident mistakes (validation split)
    segment         the first validation images beside their label and the prediction
    generate        a grid of sampled molecules, QED and logP histograms against the training set, the metrics;
                    the score per round and best molecules of its hill-climbs and tree searches
    two classes     precision-recall and ROC curves with the 0.5 operating point; with a heat map (SegDecNet)
                    the mistakes are shown with it in red
    search          best and mean fitness per generation, genes against fitness, a sortable table of the trials
                    linking to their own reports
    jobs, ensemble  the members (and the ensemble) side by side, a bar per member on each metric they share

Written at the end of train, search, jobs run and ensemble; the board (board.py) renders the same pages on request."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from towerlab.errors import DataError
from towerlab.files import atomic_write
from towerlab.progress import bar
from towerlab.runs import GroupFolder, RunRecord, SearchFolder, kind
from towerlab.runs.best import Best

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4;cursor:pointer}img{max-width:100%}.kv td:first-child{color:#666}.figs img{margin:.3em}"""
SORT_JS = """for(const t of document.querySelectorAll('table.sortable'))t.querySelectorAll('th').forEach((h,i)=>
h.onclick=()=>{const b=t.tBodies[0],r=[...b.rows],d=h.dataset.d=h.dataset.d==='1'?'-1':'1';r.sort((x,y)=>{
const a=x.cells[i].innerText,c=y.cells[i].innerText,n=parseFloat(a)-parseFloat(c);
return (isNaN(n)?a.localeCompare(c):n)*d});r.forEach(e=>b.appendChild(e))});"""


# -- pieces of a page ------------------------------------------------------------------------------------------
def _png(fig, alt: str = "figure") -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _image(pil_image, alt: str = "image") -> str:
    buf = io.BytesIO()
    pil_image.save(buf, format="PNG")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plt():
    from towerlab.plots import pyplot

    return pyplot()


def _table(rows: list[dict], cls: str = "sortable", links: dict[int, str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = []
    for i, r in enumerate(rows):
        cells = "".join(f"<td>{_cell(r.get(k, ''))}</td>" for k in keys)
        if links and i in links:
            cells = cells.replace("<td>", f'<td><a href="{_href(links[i])}">', 1).replace("</td>", "</a></td>", 1)
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _href(rel: str) -> str:
    """A link to a file below the page's folder, percent-encoded segment by segment: a name can never turn it into
    another scheme (javascript:), an absolute address or a step up (..)."""
    from urllib.parse import quote

    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise DataError(f"refusing to link {rel!r} from a report: not a path below the report's folder")
    return html.escape("./" + "/".join(quote(p, safe="") for p in parts))


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _kv(d: dict) -> str:
    return (
        '<table class="kv">'
        + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_cell(v)}</td></tr>" for k, v in d.items())
        + "</table>"
    )


# a report is one file that fetches nothing: its pictures are data: URLs, its script and style inline. The policy
# says exactly that, so a name planted in a run (a class, a file) can never load or send anything.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'"


def _page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\"><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}<script>{SORT_JS}</script>"
        f"</body></html>"
    )


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


def _per_class(final: dict) -> str:
    """Bars for every family of final metrics with a value per class (segmentation's iou/<class>)."""
    plt = _plt()
    families: dict[str, dict[str, float]] = {}
    for k, v in final.items():
        if "/" in k and isinstance(v, (int, float)):
            family, name = k.split("/", 1)
            families.setdefault(family, {})[name] = v
    figs = []
    for family, values in sorted(families.items()):
        if len(values) < 3:
            continue
        fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(values)), 2.8))
        ax.bar(range(len(values)), list(values.values()))
        ax.set_xticks(range(len(values)), list(values), rotation=90, fontsize=7)
        ax.set_title(f"{family} per class")
        figs.append(f"<p>{html.escape(family)} per class</p>" + _png(fig, f"{family} per class"))
    return f'<div class="figs">{"".join(figs)}</div>' if figs else ""


def _checkpoints(rec: RunRecord) -> str:
    from towerlab import checkpoint

    rows = [
        {
            "step": step,
            "folder": folder.name,
            "verifies": "yes" if checkpoint.damage(folder) is None else f"no: {checkpoint.damage(folder)}",
        }
        for step, folder in rec.checkpoints
    ]
    return _table(rows, "plain")


def _summary(rec: RunRecord) -> dict:
    final = rec.final or {}
    out = {"recipe": rec.recipe, "status": rec.status, "folder": str(rec.path)}
    best = Best.of(final)
    if best:
        out[f"best {best.metric}"] = best.value
        out["best at step"] = best.step
    for k in ("step", "epoch", "wall_s", "images_per_s", "molecules_per_s", "eval_s"):
        if k in final:
            out[k] = final[k]
    if rec.error:
        out["error"] = rec.error
    return out


def run_report(path: Path) -> str:
    from towerlab.recipes import has

    rec = RunRecord.load(path)
    sections = [
        ("Run", _kv(_summary(rec))),
        ("Final metrics", _kv({k: v for k, v in (rec.final or {}).items() if not isinstance(v, dict)})),
    ]
    sections.append(("Curves", _curves(rec.metrics())))
    per_class = _per_class(rec.final or {})
    if per_class:
        sections.append(("Per class", per_class))
    if rec.checkpoints and has(rec.recipe, "classify"):
        sections.append(("Classification (validation split)", _classification(path, rec.final or {})))
    if rec.checkpoints and has(rec.recipe, "segment"):
        sections.append(("Validation images: input, label, prediction", _segmentation(path)))
    if rec.checkpoints and has(rec.recipe, "generate"):
        sections.append(("Molecules", _molecules(path)))
    sections.append(("Checkpoints", _checkpoints(rec)))
    sections.append(("Config", _kv(rec.config)))
    if rec.env().get("provenance"):
        sections.append(("What produced it", _provenance(rec.env()["provenance"])))
    return _page(f"{rec.recipe}: {path.name}", sections)


def _provenance(p: dict) -> str:
    """The run's provenance record: the code, the command, versions, environment, data; the packages folded away."""

    def code(g: dict | None) -> str:
        return (
            "not a git checkout"
            if not g
            else g["commit"] + (f" + uncommitted changes (diff SHA-256 {g['diff_sha256'][:16]})" if g["dirty"] else "")
        )

    data = p.get("data") or {}
    shown = {
        "command": " ".join(p.get("command", [])),
        "working directory": p.get("cwd"),
        "code": code(p.get("git")),
        "towerlab": f"{p.get('towerlab')} ({code(p.get('towerlab_git'))})",
        "host": p.get("host"),
        "platform": p.get("platform"),
        **{k: p.get(k) for k in ("python", "torch", "cuda", "cudnn", "nccl")},
        **{f"${k}": v for k, v in (p.get("environment") or {}).items()},
        "data": f"{data.get('path')}: {data.get('files')} files, {data.get('bytes')} bytes, SHA-256 "
        f"{str(data.get('sha256'))[:16]}"
        if data.get("sha256")
        else data.get("path", "none"),
    }
    packages = "<details><summary>{} packages (pip freeze)</summary><pre>{}</pre></details>".format(
        len(p.get("packages", [])), html.escape("\n".join(p.get("packages", [])))
    )
    return _kv(shown) + packages


def _classification(path: Path, final: dict) -> str:
    """Confusion matrix, per-class accuracy and the most confident mistakes, from the best weights."""
    import torch

    from towerlab import infer
    from towerlab.data.loader import limited
    from towerlab.dist import Dist
    from towerlab.metrics import ConfusionMatrix, decide
    from towerlab.recipes import has

    loaded = infer.load(path, "best")
    recipe, cfg = loaded.recipe, loaded.cfg
    val = recipe.build_data(cfg, Dist()).val
    names = recipe.class_names(cfg)
    rec = RunRecord.load(path)
    kept = rec.predictions(rec.best.get("step", -1))  # the best evaluation's own predictions: no second pass
    if kept is not None and len(kept[1]) <= val.num_items:
        p, y = kept[0].float(), kept[1].long()
        val = limited(val, len(y))  # (an --eval-limit run evaluated the first items only)
    else:
        p, y = _predict_split(loaded, val)
    threshold = getattr(cfg, "threshold", None) if len(names) == 2 else None  # what predict and serve decide at
    pred = decide(p, threshold)
    k = len(names)
    confusion = ConfusionMatrix(k, torch.device("cpu"))
    confusion.update(pred, y)
    cm = confusion.counts
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
    points = {"threshold 0.5": 0.5}
    if threshold and threshold != 0.5:  # the run's operating point: the matrix above and predict decide there
        points[f"operating point ({threshold:.3f})"] = threshold
    curves = (
        (
            "<p>Precision-recall and ROC curves (class 1 positive), the operating points marked:</p>"
            + _pr_roc(p[:, 1], y, points)
        )
        if k == 2
        else ""
    )
    wrong = (pred != y).nonzero()[:, 0]
    top = wrong[p[wrong, pred[wrong]].argsort(descending=True)][:8].tolist()
    shown = val.items_at(torch.tensor(top, dtype=torch.long))[0].cpu() if top else None  # only these are read
    pictures = {i: _picture(shown[j]) for j, i in enumerate(top)}
    if top and has(recipe, "heatmap"):  # where the model sees the defect, in red over the mistaken image
        from towerlab.data.segmentation import red_overlay

        with torch.no_grad():
            heat = recipe.heatmaps(loaded.model, shown)
        for j, i in enumerate(top):
            pictures[i] = _picture(red_overlay(_to_uint8(shown[j]), heat[j].cpu()))
    gallery = "".join(
        f"<div>{_image(pictures[i], f'true {names[y[i]]}, predicted {names[pred[i]]}')}<br><small>"
        f"true {html.escape(names[y[i]])}, predicted {html.escape(names[pred[i]])} "
        f"({float(p[i, pred[i]]):.2f})</small></div>"
        for i in top
    )
    decided = f", class 1 from probability {threshold:.3f} (the run's operating point)" if threshold else ""
    return (
        f'<p>accuracy <b id="accuracy">{accuracy:.4f}</b> on {len(y)} validation items (best weights{decided})</p>'
        f'<div class="figs">{matrix}{bars}{curves}</div><h3>Most confident mistakes</h3>'
        f'<div style="display:flex;gap:1em;flex-wrap:wrap">{gallery}</div>'
    )


def _predict_split(loaded, val):
    """(probabilities, labels) of the whole validation split: for a run that kept no predictions of its best step."""
    import torch

    probs, labels = [], []
    with torch.no_grad():
        for batch in bar(val, "report: the validation split", total=len(val), unit="batch", min_total=4):
            probs.append(loaded.recipe.predict(loaded.model, batch[0]).float().cpu())
            labels.append(batch[-1].cpu())
    return torch.cat(probs), torch.cat(labels).long()


def _segmentation(path: Path, n: int = 3) -> str:
    """The first n validation images, each beside its label and the prediction (class colours; ignored pixels
    black)."""
    import torch

    from towerlab import infer
    from towerlab.dist import Dist

    loaded = infer.load(path, "best")
    recipe, cfg = loaded.recipe, loaded.cfg
    names = recipe.class_names(cfg)
    palette = _palette(len(names))
    rows, shown = [], 0
    with torch.no_grad():
        for batch in recipe.build_data(cfg, Dist()).val:
            x, y = batch[0], batch[-1]
            pred = recipe.predict(loaded.model, x).argmax(1)
            for i in range(len(x)):
                if shown == n:
                    break
                label = palette[y[i].long().clamp(max=len(names))]
                pictures = [
                    _picture(x[i]),
                    _picture(label.permute(2, 0, 1)),
                    _picture(palette[pred[i]].permute(2, 0, 1)),
                ]
                rows.append(
                    "<div>"
                    + "".join(_image(p, a) for p, a in zip(pictures, ("input", "label", "prediction")))
                    + "</div>"
                )
                shown += 1
            if shown == n:
                break
    legend = " ".join(
        f'<span style="background:rgb{tuple(palette[i].tolist())};padding:0 .6em">&nbsp;</span> {html.escape(name)}'
        for i, name in enumerate(names)
    )
    return f"<p><small>{legend}</small></p>" + "".join(rows)


def _palette(k: int):
    """k class colours (matplotlib's tab20), then black for the ignore label."""
    import torch

    cmap = _plt().get_cmap("tab20")
    colours = [[int(255 * c) for c in cmap(i % 20)[:3]] for i in range(k)] + [[0, 0, 0]]
    return torch.tensor(colours, dtype=torch.uint8)


def _pr_roc(score, y, points: dict[str, float]) -> str:
    """Precision-recall and ROC curves of a two-class model (class 1 positive), the operating points marked."""
    import torch

    order = score.argsort(descending=True)
    hits = (y[order] == 1).double()
    tp, fp = hits.cumsum(0), (1 - hits).cumsum(0)
    pos, neg = max(float(hits.sum()), 1.0), max(float((1 - hits).sum()), 1.0)
    precision, recall, fpr = tp / (tp + fp), tp / pos, fp / neg
    marks = {name: int((score >= th).sum()) - 1 for name, th in points.items()}  # the last item called positive
    plt = _plt()
    figs = []
    for xs, ys, xl, yl, title in (
        (recall, precision, "recall", "precision", "precision-recall"),
        (fpr, recall, "false positive rate", "true positive rate", "ROC"),
    ):
        fig, ax = plt.subplots(figsize=(3.4, 3))
        ax.plot(
            torch.cat([torch.zeros(1, dtype=xs.dtype), xs]).numpy(),
            torch.cat([ys[:1] if title != "ROC" else torch.zeros(1, dtype=ys.dtype), ys]).numpy(),
        )
        for (name, at), colour in zip(marks.items(), ("#e07b39", "#2ca02c")):
            if at >= 0:
                ax.plot([float(xs[at])], [float(ys[at])], "o", color=colour, label=name)
        if any(at >= 0 for at in marks.values()):
            ax.legend(fontsize=7)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title)
        figs.append(_png(fig))
    return "".join(figs)


def _to_uint8(t):
    t = t.float().cpu()
    return ((t - t.min()) / (t.max() - t.min()).clamp_min(1e-6) * 255).byte()


def _picture(t):
    """A model input [C, H, W] (normalised) as a picture: stretched to 0..255, enlarged to at least 64 pixels."""
    import torch
    from PIL import Image

    a = (t if t.dtype == torch.uint8 else _to_uint8(t)).permute(1, 2, 0).numpy()
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
        training, known = gen.training_set(m)
    except _DataError as e:
        training, known, note = [], set(), f"<p>{html.escape(str(e))}</p>"
    else:
        note = ""
    metrics = props.generation_metrics(smiles, known, k=len(smiles))
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
    searches = ""
    for folder in sorted(
        p for p in path.iterdir() if p.is_dir() and p.name.startswith(("hillclimb-", "mcts-", "reinvent-", "graph-ga-"))
    ):
        pngs = [folder / f for f in ("score.png", "best.png") if (folder / f).is_file()]
        if pngs:
            from PIL import Image

            searches += f"<h3>{html.escape(folder.name)}</h3>" + "".join(_image(Image.open(f), f.stem) for f in pngs)
    return (
        note
        + _kv({**metrics, "training set size": len(known)})
        + f'<div class="figs">{_image(grid, "sampled molecules")}{"".join(figs)}</div>'
        + searches
    )


# -- a search --------------------------------------------------------------------------------------------------
def search_report(path: Path) -> str:
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    search = SearchFolder(path)
    fitness = "<p>a grid search: every point of the grid, no generations</p>"
    gens = search.generations()
    if gens and search.algo() != "grid":
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([g["generation"] for g in gens], [g["best"] for g in gens], marker="o", label="best")
        ax.plot([g["generation"] for g in gens], [g["mean"] for g in gens], marker="o", label="mean")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("generation")
        ax.legend()
        ax.grid(alpha=0.3)
        fitness = _png(fig)
    trials = search.trials()
    links = {}
    for i, t in enumerate(trials):
        if (search.trial(t["trial"]).out / "report.html").is_file():
            links[i] = f"trials/{t['trial']}/report.html"
    return _page(
        f"search: {path.name}",
        [
            ("Best", _kv(search.best() or {})),
            ("Fitness per generation", fitness),
            ("Genes against fitness", _parallel(trials)),
            ("Trials", _table(trials, links=links)),
        ],
    )


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


# -- jobs and ensembles ----------------------------------------------------------------------------------------
def group_report(path: Path) -> str:
    """Members side by side: each one's final metrics (and the ensemble's, for an ensemble), a bar per member on
    every metric they share, links to the members' reports."""
    group = GroupFolder(path)
    key, rows = group.rows()
    title = f"{group.kind}: {path.name}"
    links = {i: f"{r[key]}/report.html" for i, r in enumerate(rows) if (path / str(r[key]) / "report.html").is_file()}
    plt = _plt()
    figs = []
    numeric = [
        k
        for k in dict.fromkeys(k for r in rows for k in r)
        if k not in (key, "seconds", "wall_s", "step", "epoch", "eval_s", "world_size", "replica_max_abs_diff")
        and all(isinstance(r.get(k), (int, float)) for r in rows)
    ]
    for k in numeric[:6]:
        fig, ax = plt.subplots(figsize=(max(3.5, 0.6 * len(rows)), 2.6))
        ax.bar(
            range(len(rows)),
            [r[k] for r in rows],
            color=["#e07b39" if r[key] == "ensemble" else "#4a7ebb" for r in rows],
        )
        ax.set_xticks(range(len(rows)), [str(r[key]) for r in rows], rotation=45, fontsize=8)
        ax.set_title(k)
        figs.append(_png(fig))
    return _page(
        title, [("Side by side", _table(rows, links=links)), ("Metrics", f'<div class="figs">{"".join(figs)}</div>')]
    )


# -- entry -----------------------------------------------------------------------------------------------------
def render(path: str | Path) -> str:
    """The report page of a run, search, jobs or ensemble folder, as text (the board keeps it in memory)."""
    path = Path(path)
    what = kind(path)
    if what is None:
        raise DataError(
            f"{path} is neither a run directory (config.yaml) nor a search, jobs or ensemble folder; "
            f"pass the folder `towerlab train`, `search`, `jobs run` or `ensemble` wrote"
        )
    return {"search": search_report, "run": run_report}.get(what, group_report)(path)


def write(path: str | Path) -> Path:
    """report.html in the folder."""
    path = Path(path)
    text = render(path)
    # temp file + rename in the run folder: a report.html planted as a link is replaced, never written through
    return atomic_write(path / "report.html", text, sync=False)
