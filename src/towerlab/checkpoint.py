"""Atomic checkpoints that a crash can never leave half-written.

A checkpoint is a folder checkpoints/step-<N>-<nonce>/ holding
  model.safetensors  the weights (loaded without any code execution)
  ema.safetensors    the moving-average weights, when the run keeps them
  state.pt           optimizer, scheduler, scaler, step, RNG states of every rank, data position:
                     only tensors and plain containers, read back with torch.load(weights_only=True)
Each file is written to a temporary folder and fsynced; the folder is renamed into place; then a small
pointer file (last.json / best.json) is replaced atomically. A crash at any moment leaves the pointer
naming the previous complete checkpoint, which is what --resume loads.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from towerlab.errors import CheckpointError


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes so that path holds either the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def weights_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    # safetensors wants contiguous CPU tensors (channels_last weights are not contiguous)
    return st_save({k: v.detach().contiguous().cpu() for k, v in state_dict.items()})


def save(ckpt_dir: Path, step: int, weights: dict[str, dict], state: dict, pointers: list[str]) -> Path:
    """Write a checkpoint and point each of `pointers` ('last', 'best') at it. Returns its folder."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}-{uuid.uuid4().hex[:6]}"
    tmp = ckpt_dir / f".tmp-{name}"
    tmp.mkdir()
    for fname, sd in weights.items():
        _write_synced(tmp / f"{fname}.safetensors", weights_bytes(sd))
    buf = io.BytesIO()
    torch.save(state, buf)
    _write_synced(tmp / "state.pt", buf.getvalue())
    _fsync_dir(tmp)
    final = ckpt_dir / name
    os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    for p in pointers:
        atomic_write(ckpt_dir / f"{p}.json", json.dumps({"dir": name, "step": step}).encode())
    prune(ckpt_dir)
    return final


def pointer(ckpt_dir: Path, which: str) -> Path | None:
    """The checkpoint folder that `which` ('last' or 'best') names, or None if there is none yet."""
    p = ckpt_dir / f"{which}.json"
    if not p.is_file():
        return None
    try:
        name = json.loads(p.read_text())["dir"]
    except (ValueError, KeyError):
        raise CheckpointError(f"{p} is damaged; delete it to fall back to an older checkpoint") from None
    return ckpt_dir / name


def pointer_step(ckpt_dir: Path, which: str = "last") -> int | None:
    """The step of the checkpoint `which` names (read from the small pointer file), or None."""
    p = ckpt_dir / f"{which}.json"
    return json.loads(p.read_text())["step"] if p.is_file() and pointer(ckpt_dir, which) else None


def prune(ckpt_dir: Path) -> None:
    """Remove checkpoint folders that no pointer names, and temporary folders of interrupted saves."""
    keep = {pointer(ckpt_dir, w) for w in ("last", "best")}
    for d in ckpt_dir.iterdir():
        if d.is_dir() and d not in keep:
            shutil.rmtree(d, ignore_errors=True)


def load_weights(folder: Path, name: str = "model") -> dict[str, torch.Tensor]:
    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path} not found; the run directory has no {name} weights")
    return st_load(path.read_bytes())


def load_state(folder: Path) -> dict:
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=True)


def find(run_dir: Path, which: str = "last") -> Path:
    """The checkpoint folder of a run directory, with a clear error when there is none."""
    folder = pointer(Path(run_dir) / "checkpoints", which)
    if folder is None or not folder.is_dir():
        raise CheckpointError(f"{run_dir} has no {which} checkpoint (checkpoints/{which}.json); "
                              f"train it first, or pass the right run directory")
    return folder


def load_into(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: Path) -> None:
    """model.load_state_dict, with one clear line when the saved tensors do not fit the model that the run's
    config.yaml builds today (a run trained by another version of a recipe)."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
        raise CheckpointError(f"the weights in {source} do not fit the model its config builds ({detail[:160]}); "
                              f"retrain, or use the towerlab version that trained it") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a PyTorch file of plain tensors (weights_only=True: no code runs)."""
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found; pass an existing .pth or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            sd = st_load(path.read_bytes())
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure means the same thing to the user
        raise CheckpointError(f"weights file {path} cannot be read as a state dict ({e.__class__.__name__}); "
                              f"pass a safetensors file or a torch.save'd dict of tensors") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"weights file {path} does not hold a dict of tensors; pass a state dict")
    return sd


def run_weights(run_dir: Path, which: str = "best") -> dict[str, torch.Tensor]:
    """The weights a run evaluates with: its moving average if it keeps one, else the model."""
    folder = find(run_dir, which)
    return load_weights(folder, "ema" if (folder / "ema.safetensors").is_file() else "model")


def init_from(model: torch.nn.Module, run_dir: Path) -> tuple[list[str], list[str]]:
    """Copy every tensor of another run's best weights whose name and shape match (staged training:
    FCN-16s from FCN-32s). Returns (copied, left as initialised). Nothing matching is an error."""
    theirs = run_weights(run_dir, "best")
    own = model.state_dict()
    copied = [k for k, v in own.items() if k in theirs and theirs[k].shape == v.shape]
    if not copied:
        raise CheckpointError(f"no weights of {run_dir} match this model by name and shape; "
                              f"--init-from needs a run of a related recipe")
    with torch.no_grad():
        for k in copied:
            own[k].copy_(theirs[k])
    return copied, [k for k in own if k not in copied]
