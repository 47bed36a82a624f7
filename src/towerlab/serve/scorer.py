"""The model of a run directory, grading a batch of images in one forward pass; optionally swapped, without a
pause, for a newer checkpoint the run directory comes to point at."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from towerlab import checkpoint, infer
from towerlab.data.images import fit_to
from towerlab.data.fetch import sha256
from towerlab.errors import CheckpointError
from towerlab.recipes import require

log = logging.getLogger("towerlab.serve")


@dataclass
class Version:
    """One loaded checkpoint: the model and what names it in every outcome row."""

    loaded: infer.Loaded
    folder: Path
    step: int
    sha256: str  # of the weights file, as the outcome rows record it


class Scorer:
    """Grades with `current`. With reload=True a watcher thread checks the run's checkpoint pointer every check_s
    seconds; a newer checkpoint is verified against its manifest and loaded off the grading thread, and `swap()`,
    called between batches, puts it in place: a batch is graded by one version, and the versions switch at one
    batch boundary. A checkpoint that fails to verify or load is reported once and the old model keeps serving."""

    def __init__(self, run_dir: str | Path, which: str = "last", reload: bool = False, check_s: float = 2.0):
        self.run_dir, self.which = Path(run_dir), which
        self.run_id = self.run_dir.resolve().name
        folder = checkpoint.find(self.run_dir, which, quiet=True)
        self.current = self._load(folder)
        named = self._named()
        if named is not None and named != folder:
            log.warning("the checkpoint the run points at does not verify; serving the newest that does",
                        extra={"fields": {"named": named.name, "serving": folder.name}})
        require(self.current.loaded.recipe, "classify",
                command=f"the service (it grades whole images; {run_dir} is not)")
        self.class_names = self.current.loaded.recipe.class_names(self.current.loaded.cfg)
        self._next: Version | None = None
        self._lock = threading.Lock()
        self._refused: set[str] = set()  # checkpoint folders reported bad once already
        self.stop = threading.Event()
        if reload:
            threading.Thread(target=self._watch, args=(check_s,), daemon=True, name="towerlab-reload").start()

    @property
    def sha256(self) -> str:
        return self.current.sha256

    def _load(self, folder: Path) -> Version:
        loaded = infer.load(self.run_dir, self.which, folder=folder)
        return Version(loaded, folder, checkpoint.step_of(folder), sha256(loaded.weights))

    def _named(self) -> Path | None:
        try:
            return checkpoint.pointer(self.run_dir / "checkpoints", self.which)
        except CheckpointError:
            return None

    # -- hot swap -----------------------------------------------------------------------------------
    def _watch(self, check_s: float) -> None:
        while not self.stop.wait(check_s):
            self.check()

    def check(self) -> None:
        """One look at the pointer: a new, verified checkpoint is loaded and waits for the next batch."""
        folder = self._named()
        pending = self._next
        if folder is None or folder.name in self._refused or folder == self.current.folder \
                or (pending is not None and folder == pending.folder):
            return
        why = "is not there" if not folder.is_dir() else checkpoint.damage(folder)
        version = None
        if why is None:
            try:
                version = self._load(folder)
            except Exception as e:  # any failure to build or load: the old model keeps serving
                why = f"does not load ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        if version is None:
            self._refused.add(folder.name)
            log.warning("new checkpoint refused; the current model keeps serving",
                        extra={"fields": {"checkpoint": folder.name, "reason": why, "serving": self.current.folder.name,
                                          "model_sha256": self.sha256}})
            return
        with self._lock:
            self._next = version

    def swap(self) -> bool:
        """Between batches: put a loaded newer checkpoint in place. True when the version changed."""
        with self._lock:
            version, self._next = self._next, None
        if version is None:
            return False
        old, self.current = self.current, version
        log.info("model reloaded", extra={"fields": {"from": old.folder.name, "to": version.folder.name,
                                                     "step": version.step, "model_sha256": version.sha256}})
        return True

    # -- grading ------------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, images: list[np.ndarray]) -> list[dict]:
        """uint8 [1,H,W] images -> outcome fields (class, probability of it, all probabilities as JSON)."""
        loaded = self.current.loaded
        recipe, cfg = loaded.recipe, loaded.cfg
        batch = fit_to(torch.from_numpy(np.stack(images)), recipe.input_shape(cfg))
        probs = recipe.predict(loaded.model, recipe.prepare(cfg, batch))
        top = probs.argmax(1)
        out = []
        for row, k in zip(probs.tolist(), top.tolist()):
            out.append({"status": "ok", "class_index": k, "class_name": self.class_names[k], "probability": row[k],
                        "probabilities": json.dumps(dict(zip(self.class_names, [round(p, 6) for p in row]))),
                        "model_run": self.run_id, "model_sha256": self.sha256})
        return out
