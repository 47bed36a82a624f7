"""An exported model file (`towerlab export RUN --format onnx`) graded by ONNX Runtime: no torch in the process,
which is what lets the one-file program leave torch out. With reload on, a new file moved into place (same path)
takes over between batches. RegistryScorer: the same, for a model in an MLflow registry (models:/NAME@ALIAS, the
alias followed as it moves; models:/NAME/VERSION), each outcome row naming the version that graded it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from towerlab.data.fetch import sha256
from towerlab.errors import ConfigError, missing_extra
from towerlab.serve.model import Reloading, Version, fit_to, log, outcomes


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
        self.adopt(current)
        super().__init__(current, reload, check_s)

    def adopt(self, version: Version) -> None:
        """What the model in service says of itself (its metadata): its run, classes, input and threshold."""
        meta = version.model.get_modelmeta().custom_metadata_map
        self.run_id, self.class_names = meta["towerlab.run"], json.loads(meta["towerlab.classes"])
        self.input_shape = tuple(json.loads(meta["towerlab.input_shape"]))
        self.threshold = float(meta["towerlab.threshold"]) if meta.get("towerlab.threshold") else None

    def swap(self) -> bool:
        if not super().swap():
            return False
        self.adopt(self.current)
        return True

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
        return load(self.path, self.path.name, key)

    def score(self, images: list[np.ndarray]) -> list[dict]:
        batch = fit_to(np.stack(images), self.input_shape)
        probs = self.current.model.run(None, {"images": batch})[0]
        return outcomes(probs, self.class_names, self.run_id, self.sha256, self.threshold)


def load(path: Path, name: str, key) -> Version:
    """An ONNX Runtime session of a towerlab image classifier; ValueError(reason) when it is not one."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as e:
        raise ConfigError(f"model: {path} is an ONNX file: {missing_extra(e) or e}") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # ONNX Runtime raises its own classes for a damaged file
        raise ValueError(f"does not load in ONNX Runtime ({str(e).splitlines()[0][:200]})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("towerlab.kind") != "classify":
        raise ValueError("is not a whole-image classifier exported by towerlab (towerlab.kind != classify)")
    return Version(name, int(meta["towerlab.step"]), sha256(path), session, key=key)


class RegistryScorer(OnnxScorer):
    """models:/NAME@ALIAS (the version the alias points at, looked up every check_s: a moved alias takes over between
    batches) or models:/NAME/VERSION; outcome rows name the version (model_run: models:/NAME/VERSION)."""

    def __init__(self, model: str, check_s: float = 2.0):
        from towerlab import registry

        self.ref, self.uri = registry.ModelRef.parse(model), registry.tracking_uri()
        version = registry.current_version(self.ref, self.uri)
        try:
            current = self.open(version)
        except ValueError as e:
            raise ConfigError(f"model: {self.describe(version)} {e}; register a towerlab ONNX export") from None
        self.adopt(current)
        self._unreachable = False
        Reloading.__init__(self, current, reload=self.ref.alias is not None, check_s=check_s)

    def adopt(self, version: Version) -> None:
        super().adopt(version)
        self.run_id = version.name  # which version graded each row

    def candidate(self) -> str | None:
        from towerlab import registry

        try:
            found = registry.current_version(self.ref, self.uri)
        except registry.RegistryError as e:  # the registry away: the version in service keeps grading
            if not self._unreachable:
                log.warning(
                    "model registry unreachable; the current version keeps serving", extra={"fields": {"error": str(e)}}
                )
            self._unreachable = True
            return None
        self._unreachable = False
        return found

    def describe(self, key) -> str:
        return f"models:/{self.ref.name}/{key}"

    def open(self, key) -> Version:
        from towerlab import registry

        return load(registry.download(self.ref, key, self.uri), self.describe(key), key)
