"""What grades rows, whichever engine runs it (imports no torch: the ONNX one-file program has none).

A scorer holds the model in service (`current`, a Version) and, with reload on, a watcher thread that checks for a
newer one every check_s seconds, verifies and loads it off the grading thread; `swap()`, called between batches,
puts it in place, so a batch is graded by one version and the versions switch at one batch boundary. One that
fails its checks or does not load is reported once and the model in service keeps grading.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from towerlab.decide import decide

log = logging.getLogger("towerlab.serve")


@dataclass
class Version:
    """One loaded model: what names it in every outcome row, and the model itself."""

    name: str  # a checkpoint folder, or a file
    step: int
    sha256: str
    model: Any
    key: Hashable = None  # what the watcher compares to notice a newer one


class Scorer(Protocol):
    """What the service grades with, whichever engine runs the model (a backend of serve/run.py builds one)."""

    run_id: str  # names the model in every outcome row
    current: Version  # the model in service
    class_names: list[str]

    @property
    def sha256(self) -> str: ...

    @property
    def input_shape(self) -> tuple[int, int, int]: ...

    def score(self, images: list[np.ndarray]) -> list[dict]:
        """One outcome per image (class, probability, every class's probability; a heat map where drawn)."""

    def swap(self) -> bool:
        """Between batches: put a newer verified model in service; True when one took over."""


class Reloading:
    """The hot-swap mechanism; a subclass says what the newest candidate is, and how to verify and load it."""

    def __init__(self, current: Version, reload: bool, check_s: float):
        self.current = current
        self._next: Version | None = None
        self._lock = threading.Lock()
        self._refused: set = set()  # candidates reported bad once already
        self.stop = threading.Event()
        if reload:
            threading.Thread(target=self._watch, args=(check_s,), daemon=True, name="towerlab-reload").start()

    @property
    def sha256(self) -> str:
        return self.current.sha256

    # -- what a subclass provides -------------------------------------------------------------------
    def candidate(self) -> Hashable | None:
        """The newest model on offer now (None: none readable)."""
        raise NotImplementedError

    def open(self, key: Hashable) -> Version:
        """Verify and load `key`; raise ValueError(reason) when it cannot serve."""
        raise NotImplementedError

    def describe(self, key: Hashable) -> str:
        return str(getattr(key, "name", key))

    # -- the mechanism ------------------------------------------------------------------------------
    def _watch(self, check_s: float) -> None:
        while not self.stop.wait(check_s):
            self.check()

    def check(self) -> None:
        """One look: a new candidate that verifies and loads waits for the next batch."""
        key, pending = self.candidate(), self._next
        if key is None or key in self._refused or key == self.current.key or (pending and key == pending.key):
            return
        try:
            version = self.open(key)
        except Exception as e:  # any failure to verify, build or load: the old model keeps serving
            self._refused.add(key)
            log.warning(
                "new checkpoint refused; the current model keeps serving",
                extra={
                    "fields": {
                        "checkpoint": self.describe(key),
                        "reason": str(e).splitlines()[0] if str(e) else type(e).__name__,
                        "serving": self.current.name,
                        "model_sha256": self.sha256,
                    }
                },
            )
            return
        with self._lock:
            self._next = version

    def swap(self) -> bool:
        """Between batches: put a loaded newer model in place. True when the version changed."""
        with self._lock:
            version, self._next = self._next, None
        if version is None:
            return False
        old, self.current = self.current, version
        log.info(
            "model reloaded",
            extra={
                "fields": {"from": old.name, "to": version.name, "step": version.step, "model_sha256": version.sha256}
            },
        )
        return True


def outcomes(
    probs: np.ndarray, class_names: list[str], run_id: str, sha256: str, threshold: float | None = None
) -> list[dict]:
    """[N, classes] probabilities -> outcome fields (class, its probability, all of them as JSON). With a threshold
    (a two-class run's operating point) the class is the second one when its probability reaches it."""
    out = []
    for row in probs.tolist():
        k = int(decide(np.asarray([row]), threshold)[0])
        out.append(
            {
                "status": "ok",
                "class_index": k,
                "class_name": class_names[k],
                "probability": row[k],
                "probabilities": json.dumps(dict(zip(class_names, [round(p, 6) for p in row]))),
                "model_run": run_id,
                "model_sha256": sha256,
            }
        )
    return out


def fit_to(images: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 [N,C,H,W] -> uint8 [N,*shape], as towerlab.data.images.fit_to does it in torch: channels matched
    (gray <-> RGB), then resized bilinearly with antialiasing (Pillow's, which torch's antialias follows)."""
    from PIL import Image

    c, h, w = shape
    if images.shape[1] != c:
        images = (
            np.repeat(images, c, 1)
            if images.shape[1] == 1
            else images.astype(np.float32).mean(1, keepdims=True).astype(np.uint8)
        )
    if images.shape[-2:] != (h, w):
        resize = lambda m: np.asarray(Image.fromarray(m.astype(np.float32), "F").resize((w, h), Image.BILINEAR))  # noqa: E731
        images = np.stack([[resize(ch) for ch in im] for im in images])
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images)
