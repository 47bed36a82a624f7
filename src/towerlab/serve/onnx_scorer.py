"""An exported model file (`towerlab export RUN --format onnx`) graded by ONNX Runtime: no torch in the process,
which is what lets the one-file program leave torch out. With reload on, a new file moved into place (same path)
takes over between batches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from towerlab.data.fetch import sha256
from towerlab.errors import ConfigError, missing_extra
from towerlab.serve.model import Reloading, Version, fit_to, outcomes


class OnnxScorer(Reloading):
    def __init__(self, path: str | Path, reload: bool = False, check_s: float = 2.0):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"model: {self.path} is not a file; export one with `towerlab export RUN --format onnx`")
        try:
            current = self.open(self.candidate())
        except ValueError as e:
            raise ConfigError(
                f"model: {self.path} {e}; export it again with `towerlab export RUN --format onnx`"
            ) from None
        meta = current.model.get_modelmeta().custom_metadata_map
        self.run_id, self.class_names = meta["towerlab.run"], json.loads(meta["towerlab.classes"])
        self.input_shape = tuple(json.loads(meta["towerlab.input_shape"]))
        self.threshold = float(meta["towerlab.threshold"]) if meta.get("towerlab.threshold") else None
        super().__init__(current, reload, check_s)

    def candidate(self) -> tuple[int, int] | None:
        """The file as it is now (modification time and size): a new file moved into place is a new candidate."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def describe(self, key) -> str:
        return f"{self.path.name} ({key[1]} bytes)"

    def open(self, key) -> Version:
        try:
            import onnxruntime as ort
        except ModuleNotFoundError as e:
            raise ConfigError(f"model: {self.path} is an ONNX file: {missing_extra(e) or e}") from None
        try:
            session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own classes for a damaged file
            raise ValueError(f"does not load in ONNX Runtime ({str(e).splitlines()[0][:200]})") from None
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("towerlab.kind") != "classify":
            raise ValueError("is not a whole-image classifier exported by towerlab (towerlab.kind != classify)")
        return Version(self.path.name, int(meta["towerlab.step"]), sha256(self.path), session, key=key)

    def score(self, images: list[np.ndarray]) -> list[dict]:
        batch = fit_to(np.stack(images), self.input_shape)
        probs = self.current.model.run(None, {"images": batch})[0]
        return outcomes(probs, self.class_names, self.run_id, self.sha256, self.threshold)
