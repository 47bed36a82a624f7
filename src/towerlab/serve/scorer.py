"""The model of a run directory, grading a batch of images in one forward pass."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from towerlab import infer
from towerlab.data.images import fit_to
from towerlab.recipes import require


class Scorer:
    def __init__(self, run_dir: str | Path, which: str = "last"):
        self.run = infer.load(run_dir, which)  # CPU: the service grades rows where the database is
        self.run_id = Path(run_dir).resolve().name
        self.sha256 = hashlib.sha256(self.run.weights.read_bytes()).hexdigest()
        require(self.run.recipe, "classify", command=f"the service (it grades whole images; {run_dir} is not)")
        self.class_names = self.run.recipe.class_names(self.run.cfg)

    @torch.no_grad()
    def score(self, images: list[np.ndarray]) -> list[dict]:
        """uint8 [1,H,W] images -> outcome fields (class, probability of it, all probabilities as JSON)."""
        recipe, cfg = self.run.recipe, self.run.cfg
        batch = fit_to(torch.from_numpy(np.stack(images)), recipe.input_shape(cfg))
        probs = recipe.predict(self.run.model, recipe.prepare(cfg, batch))
        top = probs.argmax(1)
        out = []
        for row, k in zip(probs.tolist(), top.tolist()):
            out.append({"status": "ok", "class_index": k, "class_name": self.class_names[k], "probability": row[k],
                        "probabilities": json.dumps(dict(zip(self.class_names, [round(p, 6) for p in row]))),
                        "model_run": self.run_id, "model_sha256": self.sha256})
        return out
