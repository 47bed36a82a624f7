"""Files on disk -> tensors. One module per on-disk format; loaders and batch augmentations beside them."""

from __future__ import annotations

import os
from pathlib import Path

from towerlab.errors import DataError


def resolve_dir(data: str, dataset: str) -> Path:
    """The folder to read: --data if given, else $TOWERLAB_DATA/<dataset>."""
    if data:
        path = Path(data).expanduser()
    elif os.environ.get("TOWERLAB_DATA"):
        path = Path(os.environ["TOWERLAB_DATA"]).expanduser() / dataset
    else:
        raise DataError(
            f"no {dataset} data folder: pass --data DIR, set TOWERLAB_DATA, "
            f"or download it with `towerlab data fetch {dataset} DIR`"
        )
    if path.is_file():  # the user named one of its files: say so, and name the folder (not a fetch into a file)
        raise DataError(f"--data {path} is a file; pass the folder that holds the {dataset} data ({path.parent}?)")
    if not path.is_dir():
        raise DataError(
            f"{dataset} data folder {path} does not exist; "
            f"download it with `towerlab data fetch {dataset} {path}` or pass --data DIR"
        )
    return path
