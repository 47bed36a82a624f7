"""Put a trained run to work: rebuild its model from the run directory, evaluate it, predict on files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from towerlab import checkpoint
from towerlab.data.images import fit_to, read_image
from towerlab.dist import Dist, setup
from towerlab.errors import DataError
from towerlab.recipes import get, has, require
from towerlab.runs import RunRecord


@dataclass
class Loaded:
    recipe: object
    cfg: object
    model: nn.Module
    weights: Path  # the safetensors file the weights came from


def load(
    run_dir: str | Path,
    which: str = "last",
    device: torch.device | str = "cpu",
    folder: Path | None = None,
    **overrides,
) -> Loaded:
    """The run's model in eval mode, with the weights it evaluates with (the moving average if it keeps one), from
    the checkpoint `which` names, or from `folder` when given (a checkpoint the caller has verified)."""
    record = RunRecord.load(run_dir)
    recipe, cfg = record.build_config(overrides)
    if has(recipe, "artifacts"):  # files beside the weights that the model is built from (a vocabulary)
        cfg = recipe.with_artifacts(cfg, Path(run_dir))
    folder = folder or checkpoint.find(Path(run_dir), which)
    cfg = _with_threshold(cfg, record, checkpoint.step_of(folder))
    kind = "ema" if (folder / "ema.safetensors").is_file() else "model"
    model = recipe.build_model(cfg)
    checkpoint.load_into(model, checkpoint.load_weights(folder, kind), folder / f"{kind}.safetensors")
    return Loaded(recipe, cfg, model.to(device).eval(), folder / f"{kind}.safetensors")


def _with_threshold(cfg, record: RunRecord, step: int):
    """A two-class recipe's operating threshold made explicit: the one set (--threshold), else the best-F1 point
    its validation recorded at this checkpoint's step (0.5 when it recorded none): what predict, serve and export
    decide at."""
    if not hasattr(cfg, "threshold") or cfg.threshold > 0:
        return cfg
    found = record.validation_at(step).get("best_f1_threshold")
    return dataclasses.replace(cfg, threshold=float(found) if found and 0 < found < 1 else 0.5)


def evaluate(
    run_dir: str | Path, which: str = "last", dist: Dist | None = None, folder: Path | None = None, **overrides
) -> dict:
    """The run's metrics on its validation split, from the checkpoint `which` names (or `folder`, verified)."""
    dist = dist or setup()
    run = load(run_dir, which, dist.device, folder=folder, **overrides)
    val = run.recipe.build_data(run.cfg, dist).val
    with torch.no_grad():
        return run.recipe.evaluate(run.model, val, dist)


def load_inputs(recipe, cfg, paths: list[str], resize: bool = False) -> torch.Tensor:
    """Image files -> the recipe's model input. An image of another size than the model's input is refused unless
    resize is asked for: a 1250x500 photo squeezed into an 8x8 digit model gives a confident, meaningless answer."""
    require(recipe, "classify", command="classifying image files")
    shape = recipe.input_shape(cfg)
    c, h, w = shape
    images = []
    for p in paths:
        image = read_image(p, c, (h, w) if resize else None)
        if tuple(image.shape[-2:]) != (h, w):
            raise DataError(
                f"image {p} is {image.shape[-1]}x{image.shape[-2]} pixels but the model takes {w}x{h}; "
                f"pass --resize to resize it, or crop it to the model's input"
            )
        images.append(image)
    return recipe.prepare(cfg, fit_to(torch.stack(images), shape))


def predict(
    run_dir: str | Path, paths: list[str], which: str = "last", out_dir: str | None = None, resize: bool = False
) -> list[dict]:
    """For each file: its predicted class and the probability of every class; a recipe with outputs of its own
    (label maps, defect masks) writes them as PNGs via its predict_files."""
    name = RunRecord.load(run_dir).recipe
    if not has(name, "predict_files"):
        require(name, "classify", command="classifying image files")
    run = load(run_dir, which)
    with torch.no_grad():
        if has(run.recipe, "predict_files"):
            return run.recipe.predict_files(run.model, run.cfg, paths, out_dir)
        names = run.recipe.class_names(run.cfg)
        probs = run.recipe.predict(run.model, load_inputs(run.recipe, run.cfg, paths, resize))
    return [
        {
            "file": str(p),
            "class": names[int(row.argmax())],
            "probability": float(row.max()),
            "probabilities": {n: round(float(v), 6) for n, v in zip(names, row)},
        }
        for p, row in zip(paths, probs)
    ]


def predict_folder(
    run_dir: str | Path,
    root: str | Path,
    out_csv: str | Path,
    which: str = "last",
    out_dir: str | None = None,
    batch_size: int = 64,
) -> dict:
    """Every image under `root` (recursively, sorted) through the run's model, one CSV row each: the file (relative to
    root), the class and its probability, every class's probability; for a recipe with outputs of its own (defect
    overlays, label maps) the files it wrote. Images are resized to the model's input, as training on an image
    folder does. An unreadable file is one line and is skipped; the count is returned with the rows written."""
    import csv
    import io
    import sys

    from towerlab.data import folder
    from towerlab.files import atomic_write, csv_cell, inside
    from towerlab.progress import bar

    root = Path(root)
    if out_dir and inside(out_dir, root):  # its pictures would be graded as inputs on the next run
        raise DataError(
            f"--out-dir {out_dir} is inside {root}, the folder being read: the outputs would become "
            f"inputs; write them elsewhere (the default is a folder beside the CSV)"
        )
    files = folder.image_files(root)
    if not files:
        raise DataError(f"{root} holds no images ({', '.join(folder.SUFFIXES)}); pass a folder of images")
    run = load(run_dir, which)
    rows, skipped = [], []
    for start in bar(
        range(0, len(files), batch_size), "predicting", total=-(-len(files) // batch_size), unit="batch", min_total=20
    ):
        good, found = _predict_batch(run, files[start : start + batch_size], out_dir)
        rows += good
        skipped += found
    for _, why in skipped:
        print(f"towerlab: skipped: {why}", file=sys.stderr)
    for r in rows:
        r["file"] = str(Path(r["file"]).relative_to(root))
    flat = [
        {csv_cell(k): csv_cell(v) for k, v in r.items() if k != "probabilities"}
        | {csv_cell(f"p_{n}"): v for n, v in r.get("probabilities", {}).items()}
        for r in rows
    ]
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in flat for k in r)) or ["file"])
    w.writeheader()
    w.writerows(flat)
    atomic_write(out_csv, text.getvalue())
    return {"rows": len(rows), "skipped": len(skipped), "csv": str(out_csv)}


def _predict_batch(run: Loaded, paths: list[Path], out_dir: str | None) -> tuple[list[dict], list[tuple[Path, str]]]:
    """(a row per readable file, (file, why) per file that is not)."""
    if has(run.recipe, "predict_files"):  # label maps, defect overlays: the recipe reads each file at its own size
        return _predict_files(run, paths, out_dir)
    readable, skipped, images = [], [], []
    c, h, w = run.recipe.input_shape(run.cfg)
    for p in paths:
        try:
            images.append(read_image(p, c, (h, w)))
            readable.append(p)
        except DataError as e:  # it names the file and what is wrong with it
            skipped.append((p, str(e)))
    if not readable:
        return [], skipped
    names = run.recipe.class_names(run.cfg)
    with torch.no_grad():
        probs = run.recipe.predict(run.model, run.recipe.prepare(run.cfg, torch.stack(images)))
    return [
        {
            "file": str(p),
            "class": names[int(row.argmax())],
            "probability": round(float(row.max()), 6),
            "probabilities": {n: round(float(v), 6) for n, v in zip(names, row)},
        }
        for p, row in zip(readable, probs)
    ], skipped


def _predict_files(run: Loaded, paths: list[Path], out_dir: str | None) -> tuple[list[dict], list[tuple[Path, str]]]:
    rows, skipped = [], []
    with torch.no_grad():
        for p in paths:
            try:
                rows += run.recipe.predict_files(run.model, run.cfg, [str(p)], out_dir)
            except DataError as e:
                skipped.append((p, str(e)))
    return rows, skipped


def export_validation(recipe_name: str, out: str | Path, n: int, data: str = "") -> list[Path]:
    """The first n validation images of a recipe's dataset as PNG files (named by class where there is one)."""
    from towerlab.config import build
    from towerlab.data.images import export_samples

    require(recipe_name, "classify", "segment", command="data export (it writes images)")
    recipe = get(recipe_name)
    cfg = build(recipe.Config, None, {"data": data, "data_on_device": False})
    val = recipe.build_data(cfg, Dist()).val
    first = val.first_items(n)
    return export_samples(first[0], first[-1], recipe.class_names(cfg), out, n)
