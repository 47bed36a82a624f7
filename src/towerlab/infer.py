"""Put a trained run to work: rebuild its model from the run directory, evaluate it, predict on files."""

from __future__ import annotations

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


def load(run_dir: str | Path, which: str = "last", device: torch.device | str = "cpu", folder: Path | None = None,
         **overrides) -> Loaded:
    """The run's model in eval mode, with the weights it evaluates with (the moving average if it keeps one), from
    the checkpoint `which` names, or from `folder` when given (a checkpoint the caller has verified)."""
    recipe, cfg = RunRecord.load(run_dir).build_config(overrides)
    if has(recipe, "artifacts"):  # files beside the weights that the model is built from (a vocabulary)
        cfg = recipe.with_artifacts(cfg, Path(run_dir))
    folder = folder or checkpoint.find(Path(run_dir), which)
    kind = "ema" if (folder / "ema.safetensors").is_file() else "model"
    model = recipe.build_model(cfg)
    checkpoint.load_into(model, checkpoint.load_weights(folder, kind), folder / f"{kind}.safetensors")
    return Loaded(recipe, cfg, model.to(device).eval(), folder / f"{kind}.safetensors")


def evaluate(run_dir: str | Path, which: str = "last", dist: Dist | None = None, folder: Path | None = None,
             **overrides) -> dict:
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
            raise DataError(f"image {p} is {image.shape[-1]}x{image.shape[-2]} pixels but the model takes {w}x{h}; "
                            f"pass --resize to resize it, or crop it to the model's input")
        images.append(image)
    return recipe.prepare(cfg, fit_to(torch.stack(images), shape))


def predict(run_dir: str | Path, paths: list[str], which: str = "last", out_dir: str | None = None,
            resize: bool = False) -> list[dict]:
    """For each file: its predicted class and the probability of every class; a recipe with outputs of its own
    (label maps, defect masks) writes them as PNGs via its predict_files."""
    name = RunRecord.load(run_dir).recipe
    if not has(name, "predict_files"):
        require(name, "classify", command="classifying image files")
    run = load(run_dir, which)
    if has(run.recipe, "predict_files"):
        return run.recipe.predict_files(run.model, run.cfg, paths, out_dir)
    names = run.recipe.class_names(run.cfg)
    probs = run.recipe.predict(run.model, load_inputs(run.recipe, run.cfg, paths, resize))
    return [{"file": str(p), "class": names[int(row.argmax())], "probability": float(row.max()),
             "probabilities": {n: round(float(v), 6) for n, v in zip(names, row)}} for p, row in zip(paths, probs)]


def export_validation(recipe_name: str, out: str | Path, n: int, data: str = "") -> list[Path]:
    """The first n validation images of a recipe's dataset as PNG files (named by class where there is one)."""
    from towerlab.config import build
    from towerlab.data.images import export_samples

    require(recipe_name, "classify", "segment", command="data export (it writes images)")
    recipe = get(recipe_name)
    cfg = build(recipe.Config, None, {"data": data, "data_on_device": False})
    val = recipe.build_data(cfg, Dist()).val
    return export_samples(val.tensors[0], val.tensors[-1], recipe.class_names(cfg), out, n)
