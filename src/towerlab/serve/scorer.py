"""The model of a run directory (PyTorch), grading a batch of images in one forward pass; with reload on, a newer
checkpoint the run directory comes to point at takes over between batches (serve/model.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from towerlab import checkpoint, infer
from towerlab.data.images import fit_to
from towerlab.data.segmentation import red_overlay
from towerlab.errors import CheckpointError
from towerlab.recipes import has, require
from towerlab.serve.model import Reloading, Version, log, outcomes


class TorchScorer(Reloading):
    def __init__(
        self,
        run_dir: str | Path,
        which: str = "last",
        reload: bool = False,
        check_s: float = 2.0,
        heatmaps: bool = False,
    ):
        """heatmaps: also return, for a recipe that has them (segdec), where in each image its grade comes from,
        drawn in red over the image at the model's input size."""
        self.run_dir, self.which, self.heatmaps = Path(run_dir), which, heatmaps
        self.run_id = self.run_dir.resolve().name
        folder = checkpoint.find(self.run_dir, which, quiet=True)
        try:
            named = checkpoint.pointer(self.run_dir / "checkpoints", which)
        except CheckpointError:  # a pointer that names a number, a path outside the run: said, never followed
            named = self.run_dir / "checkpoints" / f"{which}.json (damaged)"
        if named is not None and named != folder:
            log.warning(
                "the checkpoint the run points at does not verify; serving the newest that does",
                extra={"fields": {"named": named.name, "serving": folder.name}},
            )
        current = self._load(folder)
        require(current.model.recipe, "classify", command=f"the service (it grades whole images; {run_dir} is not)")
        self.class_names = current.model.recipe.class_names(current.model.cfg)
        super().__init__(current, reload, check_s)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model being served: what a payload must match unless the config allows resizing."""
        loaded = self.current.model
        return tuple(loaded.recipe.input_shape(loaded.cfg))

    def _load(self, folder: Path) -> Version:
        loaded = infer.load(self.run_dir, self.which, folder=folder)
        return Version(
            folder.name, checkpoint.step_of(folder), checkpoint.recorded_sha256(loaded.weights), loaded, key=folder
        )

    def candidate(self) -> Path | None:
        """The checkpoint folder the run's pointer (last.json / best.json) names now."""
        try:
            return checkpoint.pointer(self.run_dir / "checkpoints", self.which)
        except CheckpointError:
            return None

    def open(self, folder: Path) -> Version:
        why = "it is not there" if not folder.is_dir() else checkpoint.damage(folder)
        if why:
            raise ValueError(why)
        return self._load(folder)

    @torch.no_grad()
    def score(self, images: list[np.ndarray]) -> list[dict]:
        """uint8 [1,H,W] images -> outcome fields (class, probability of it, all probabilities as JSON)."""
        loaded = self.current.model
        recipe, cfg = loaded.recipe, loaded.cfg
        batch = fit_to(torch.from_numpy(np.stack(images)), recipe.input_shape(cfg))
        x = recipe.prepare(cfg, batch)
        out = outcomes(
            recipe.predict(loaded.model, x).float().numpy(),
            self.class_names,
            self.run_id,
            self.sha256,
            getattr(cfg, "threshold", None),
        )
        if self.heatmaps and has(recipe, "heatmap"):  # the heat in red over the image the model saw
            for o, image, heat in zip(out, batch, recipe.heatmaps(loaded.model, x)):
                o["overlay"] = red_overlay(image, heat).permute(1, 2, 0).numpy()  # the worker writes it, then drops it
        return out
