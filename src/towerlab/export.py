"""`towerlab export RUN --format onnx|torchscript`: a trained image model as one file that grades without towerlab.

The file holds the whole path from pixels to probabilities, so whatever runs it needs only the pixels:
    classify recipes:  uint8 images [N, C, H, W] at the recipe's input shape -> class probabilities [N, classes]
    segment recipes:   uint8 images [N, C, H, W] of any size -> per-pixel class probabilities [N, classes, H, W]
and says what it is in its metadata (ONNX metadata_props; TorchScript extra file `towerlab.json`): the recipe,
the class names, the input shape, the run, the checkpoint step and the SHA-256 of the weights it came from.
After writing, the export is run against PyTorch on the same inputs and the largest difference is reported.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from towerlab import checkpoint, infer
from towerlab.errors import ConfigError, missing_extra
from towerlab.files import make_dir
from towerlab.recipes import has, require

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
OPSET = 17  # ONNX Runtime 1.14+ runs it


class Pixels(nn.Module):
    """uint8 pixels -> probabilities: the recipe's prepare and predict around its model, as one module."""

    def __init__(self, loaded: infer.Loaded):
        super().__init__()
        self.model, self.recipe, self.cfg = loaded.model, loaded.recipe, loaded.cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.recipe.predict(self.model, self.recipe.prepare(self.cfg, images)).float()


def _example(loaded: infer.Loaded, n: int = 4, seed: int = 0) -> torch.Tensor:
    """n uint8 images the model takes (its input shape; 64x96 for a recipe that takes any size)."""
    recipe, cfg = loaded.recipe, loaded.cfg
    shape = recipe.input_shape(cfg) if has(recipe, "classify") else (getattr(cfg, "channels", 3), 64, 96)
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def metadata(run_dir: Path, loaded: infer.Loaded, folder: Path) -> dict[str, str]:
    recipe, cfg = loaded.recipe, loaded.cfg
    kind = "classify" if has(recipe, "classify") else "segment"
    shape = list(recipe.input_shape(cfg)) if kind == "classify" else None
    return {
        "towerlab.kind": kind,
        "towerlab.recipe": recipe.NAME,
        "towerlab.run": run_dir.resolve().name,
        "towerlab.step": str(checkpoint.step_of(folder)),
        "towerlab.weights_sha256": checkpoint.recorded_sha256(loaded.weights),
        "towerlab.classes": json.dumps(list(recipe.class_names(cfg))),
        "towerlab.input_shape": json.dumps(shape),
        # a two-class run's operating threshold (infer.load made it explicit): the ONNX service decides at it
        **({"towerlab.threshold": repr(cfg.threshold)} if getattr(cfg, "threshold", 0) else {}),
    }


def export(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None, which: str = "last") -> dict:
    """Write the run's model as `fmt`; returns {path, format, max_abs_diff, inputs} (the parity check)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    folder = checkpoint.find(run_dir, which)
    loaded = infer.load(run_dir, which, folder=folder)
    require(loaded.recipe, "classify", "segment", command="export (it exports image models)")
    path = Path(out) if out else run_dir / f"model{FORMATS[fmt]}"
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; name the file to write, e.g. {path / ('model' + FORMATS[fmt])}")
    make_dir(path.parent, "--out's folder")  # made if it is not there, as `train --out` makes its run directory
    module = Pixels(loaded).eval()
    example = _example(loaded)
    meta = metadata(run_dir, loaded, folder)
    (_onnx if fmt == "onnx" else _torchscript)(module, example, meta, path)
    diff = parity(module, path, fmt, _example(loaded, n=8, seed=1))
    return {"path": str(path), "format": fmt, "max_abs_diff": diff, "inputs": 8, **meta}


def _onnx(module: Pixels, example: torch.Tensor, meta: dict, path: Path) -> None:
    try:
        import onnx
    except ModuleNotFoundError as e:
        raise ConfigError(f"export --format onnx: {missing_extra(e) or e}") from None
    spatial = {2: "height", 3: "width"} if meta["towerlab.kind"] == "segment" else {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        # dynamo=False: the TorchScript-based exporter traces these plain feed-forward models without onnxscript
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["probabilities"],
            dynamic_axes={"images": {0: "batch", **spatial}, "probabilities": {0: "batch", **spatial}},
        )
    model = onnx.load(str(path))
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    module.eval()  # the exporter restores the mode it found; make sure nothing left dropout on


def _torchscript(module: Pixels, example: torch.Tensor, meta: dict, path: Path) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(module, (example,), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"towerlab.json": json.dumps(meta)})


def parity(module: Pixels, path: Path, fmt: str, images: torch.Tensor) -> float:
    """Largest absolute difference of the exported file's probabilities from PyTorch's, on `images`."""
    with torch.no_grad():
        expected = module.eval()(images).numpy()
    if fmt == "onnx":
        got = run_onnx(path, images.numpy())
    else:
        got = torch.jit.load(str(path)).eval()(images).detach().numpy()
    return float(np.abs(got - expected).max())


def run_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as e:
        raise ConfigError(f"the parity check needs ONNX Runtime: {missing_extra(e) or e}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]
