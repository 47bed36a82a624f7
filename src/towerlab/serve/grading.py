"""Grading one batch of rows: every row turned into the model's input by its payload kind (kinds.py), the good ones
through the model in one call, images written under image_dir. Whatever turning one row into an input raises is
that row's error outcome; only the database and the model may stop the service."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from towerlab.files import write_png
from towerlab.serve.model import Scorer
from towerlab.serve.payload import RowError, to_input
from towerlab.serve.settings import Source

log = logging.getLogger("towerlab.serve")


@dataclass
class Grader:
    scorer: Scorer
    image_dir: str | None = None

    def grade(self, src: Source, rows: list[dict]) -> list[dict]:
        """Outcomes in key order: bad rows as error outcomes, good ones graded by the model in one batch."""
        images, good, outcomes = [], [], []
        for row in rows:
            key = row[src.key_column]  # an integer: the read takes no other
            try:
                images.append(to_input(row, src.payload, src.normalize, self.scorer.input_shape))
                good.append(key)
            except Exception as e:  # noqa: BLE001 -- whatever turning this row into an input raised is this row's
                # error (a decoder's NotImplementedError, a path too long); only the database and the model stop us
                outcomes.append(self.error(key, e))
        if images:
            for key, image, result in zip(good, images, self.scorer.score(images)):
                drawn = result.pop("overlay", None)
                outcomes.append({"row_key": key, **result, "image_path": self.save_image(src, key, image, drawn)})
        return sorted(outcomes, key=lambda o: o["row_key"])

    def error(self, key: int, e: Exception) -> dict:
        return {
            "row_key": key,
            "status": "error",
            "error": row_error(e),
            "model_run": self.scorer.run_id,
            "model_sha256": self.scorer.sha256,
        }

    def save_image(self, src: Source, key: int, image: np.ndarray, drawn: np.ndarray | None = None) -> str | None:
        """Atomically (temp file + rename) write image_dir/<source>/<key>.png, and <key>_defect.png (the model's heat
        map in red over the image, uint8 [H,W,3]) when the scorer drew one; a retry rewrites the same files."""
        if not self.image_dir:
            return None
        folder = Path(self.image_dir) / src.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key}.png"
        _write_png(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), path)
        if drawn is not None:
            _write_png(drawn, folder / f"{key}_defect.png")
        return str(path)


def row_error(e: Exception) -> str:
    """The outcome's error text: a RowError says it already; anything else is named by its type and first line."""
    if isinstance(e, RowError):
        return str(e)
    from towerlab.imagefile import reason

    log.warning(
        "a row's payload raised an unexpected error; graded as an error outcome", extra={"fields": {"error": reason(e)}}
    )
    return f"payload could not be read ({reason(e)})"


def _write_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    write_png(Image.fromarray(array), path)  # temp + rename; a planted link is replaced, not written through
