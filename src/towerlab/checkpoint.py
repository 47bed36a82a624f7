"""Atomic, checksummed checkpoints that a crash can never leave half-written.

A checkpoint is a folder checkpoints/step-<N>-<nonce>/ holding
  model.safetensors  the weights (loaded without any code execution)
  ema.safetensors    the moving-average weights, when the run keeps them
  state.pt           optimizer, scheduler, scaler, step, RNG states of every rank, data position:
                     only tensors and plain containers, read back with torch.load(weights_only=True)
  manifest.json      the step, the world size and the SHA-256 of every file above
or, under --checkpoint sharded (FSDP), in place of model.safetensors and the optimizer in state.pt:
  shards/            torch.distributed.checkpoint's files: each rank writes its own shards (__R_0.distcp, at once,
                     no gather on rank 0) and rank 0 the .metadata; read back at any world size (resharded), and
                     consolidated on demand for eval, predict and export (load_weights)
Each file is written to a temporary folder and fsynced; the folder is renamed into place; then a small
pointer file (last.json / best.json) is replaced atomically. A crash at any moment leaves the pointer
naming the previous complete checkpoint, which is what --resume loads.

A file damaged later (a full disk, a bad copy, bit rot) fails its checksum when the checkpoint is opened: the
newest checkpoint that verifies is used instead, with one line saying so. The newest `keep` checkpoints (and the
best) stay on disk, so there is one to fall back to; a lost or damaged pointer file is found again by scanning.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from towerlab.data.fetch import sha256
from towerlab.errors import CheckpointError
from towerlab.files import atomic_write, fsync_dir

MANIFEST = "manifest.json"
_FOLDER = re.compile(r"step-(\d{8})-[0-9a-f]{6}")
SHARDS = "shards"
# a file a manifest may name: one of the folder's own (no path, no hidden file), or a shard torch's writer names
_FILE = re.compile(r"[^/.][^/]*|shards/(\.metadata|__\d+_\d+\.distcp)")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def weights_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    # safetensors wants contiguous CPU tensors (channels_last weights are not contiguous)
    return st_save({k: v.detach().contiguous().cpu() for k, v in state_dict.items()})


def save(ckpt_dir: Path, step: int, weights: dict[str, dict], state: dict, pointers: list[str], keep: int = 1) -> Path:
    """Write a checkpoint and point each of `pointers` ('last', 'best') at it; keep the newest `keep` and the
    best. Returns its folder."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}-{uuid.uuid4().hex[:6]}"
    tmp = ckpt_dir / f".tmp-{name}"
    tmp.mkdir()
    files = {f"{fname}.safetensors": weights_bytes(sd) for fname, sd in weights.items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    files["state.pt"] = buf.getvalue()
    for fname, data in files.items():
        _write_synced(tmp / fname, data)
    manifest = {
        "step": step,
        "world_size": state.get("world_size", 1),
        "sha256": {f: hashlib.sha256(data).hexdigest() for f, data in files.items()},
    }
    _write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
    fsync_dir(tmp)
    final = ckpt_dir / name
    os.replace(tmp, final)
    fsync_dir(ckpt_dir)
    for p in pointers:
        atomic_write(ckpt_dir / f"{p}.json", json.dumps({"dir": name, "step": step}).encode())
    prune(ckpt_dir, keep, newest=final)
    return final


@dataclass
class PendingShards:
    """A sharded checkpoint whose shards are being written (by a background thread when async): it becomes a
    checkpoint in `finish_sharded`, until then it is a .tmp- folder a resume never reads."""

    name: str
    step: int
    tmp: Path
    final: Path
    written: object = None  # the writer's Future (async); None: written already

    @property
    def ckpt_dir(self) -> Path:
        return self.final.parent


def begin_sharded(ckpt_dir: Path, step: int, shards: dict, dist, background: bool = False, group=None) -> PendingShards:
    """Start writing `shards` (model and optimizer state dicts of sharded tensors): every rank its own part, at
    once (torch.distributed.checkpoint). background: written by a thread while this returns, its collectives on
    `group`, a process group of their own (on the default one they would interleave with training's). A
    collective."""
    import torch.distributed.checkpoint as dcp

    from towerlab.dist import barrier, broadcast_object

    name = broadcast_object(f"step-{step:08d}-{uuid.uuid4().hex[:6]}" if dist.is_main else None, dist)
    pending = PendingShards(name, step, ckpt_dir / f".tmp-{name}", ckpt_dir / name)
    if dist.is_main:
        (pending.tmp / SHARDS).mkdir(parents=True)
    barrier(dist)
    if not background:
        dcp.save(shards, checkpoint_id=str(pending.tmp / SHARDS))
    else:  # the shards are copied before this returns (DCP's stager): training may change the weights at once
        pending.written = dcp.async_save(shards, checkpoint_id=str(pending.tmp / SHARDS), process_group=group)
    return pending


def finish_sharded(pending: PendingShards, state: dict, pointers: list[str], keep: int, dist) -> Path:
    """Wait for the shards, hash every rank's files for the manifest, write rank 0's state.pt beside them and
    rename the folder into place (rank 0). A collective: every rank calls it. Returns the folder."""
    from towerlab.dist import all_gather_object, barrier

    if pending.written is not None:
        pending.written.result()
    tmp, step, ckpt_dir = pending.tmp, pending.step, pending.ckpt_dir
    mine = [f for f in (tmp / SHARDS).iterdir() if f.name.startswith(f"__{dist.rank}_")]
    if dist.is_main:
        mine.append(tmp / SHARDS / ".metadata")
    for f in mine:
        fsync_dir(f)  # (any path: here a shard file's data)
    digests = {f"{SHARDS}/{f.name}": sha256(f) for f in mine}
    everyone = all_gather_object(digests, dist)
    if dist.is_main:
        buf = io.BytesIO()
        torch.save(state, buf)
        _write_synced(tmp / "state.pt", buf.getvalue())
        sums = {k: v for d in everyone for k, v in d.items()} | {"state.pt": hashlib.sha256(buf.getvalue()).hexdigest()}
        record = {"step": step, "world_size": state.get("world_size", 1), "sharded": True, "sha256": sums}
        _write_synced(tmp / MANIFEST, json.dumps(record, indent=1).encode())
        fsync_dir(tmp / SHARDS)
        fsync_dir(tmp)
        os.replace(tmp, pending.final)
        fsync_dir(ckpt_dir)
        for p in pointers:
            atomic_write(ckpt_dir / f"{p}.json", json.dumps({"dir": pending.name, "step": step}).encode())
        prune(ckpt_dir, keep, newest=pending.final)
    barrier(dist)
    return pending.final


def save_sharded(ckpt_dir: Path, step: int, shards: dict, state: dict, pointers: list[str], keep: int, dist) -> Path:
    """A sharded checkpoint written now (begin_sharded, then finish_sharded). A collective."""
    return finish_sharded(begin_sharded(ckpt_dir, step, shards, dist), state, pointers, keep, dist)


def is_sharded(folder: Path) -> bool:
    return (folder / SHARDS).is_dir()


def load_shards(folder: Path, shards: dict) -> None:
    """Fill `shards` (state dicts shaped like the ones saved, sharded for this world size) from the folder's shards:
    torch.distributed.checkpoint reshards what another world size wrote. A collective."""
    import torch.distributed.checkpoint as dcp

    try:
        dcp.load(shards, checkpoint_id=str(folder / SHARDS))
    except Exception as e:  # noqa: BLE001 -- any failure reading the shards: one line naming the folder
        raise CheckpointError(
            f"{folder / SHARDS} cannot be read ({type(e).__name__}); delete its folder to fall back to an older "
            f"checkpoint, or retrain"
        ) from None


def _consolidated(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """The full tensors of `name` (model) from a sharded checkpoint, in this one process (eval, export)."""
    import warnings

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = FileSystemReader(str(folder / SHARDS)).read_metadata().state_dict_metadata
    prefix = f"{name}."
    template = {
        k: torch.empty(v.size, dtype=v.properties.dtype)
        for k, v in meta.items()
        if k.startswith(prefix) and isinstance(v, TensorStorageMetadata)
    }
    if not template:
        raise CheckpointError(f"{folder / SHARDS} holds no {name} weights")
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(template, checkpoint_id=str(folder / SHARDS), no_dist=True)
    return dict(sorted((k[len(prefix) :], v) for k, v in template.items()))


def pointer(ckpt_dir: Path, which: str) -> Path | None:
    """The checkpoint folder that `which` ('last' or 'best') names, or None if there is none yet."""
    p = ckpt_dir / f"{which}.json"
    if not p.is_file():
        return None
    try:
        name = json.loads(p.read_text())["dir"]
    except (ValueError, KeyError, TypeError):
        name = None
    # a pointer names a checkpoint folder of this run by its own name: never a path ("/elsewhere", "../x", 5)
    if not isinstance(name, str) or not _FOLDER.fullmatch(name):
        raise CheckpointError(
            f"{p} is damaged or names no checkpoint folder of this run; delete it to fall back to "
            f"the newest checkpoint that verifies"
        ) from None
    return ckpt_dir / name


def step_of(folder: Path) -> int:
    return int(_FOLDER.fullmatch(folder.name).group(1))


def folders(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoint folders, newest step first (temporary folders of interrupted saves are not)."""
    if not ckpt_dir.is_dir():
        return []
    found = [d for d in ckpt_dir.iterdir() if d.is_dir() and _FOLDER.fullmatch(d.name)]
    return sorted(found, key=lambda d: (step_of(d), d.stat().st_mtime_ns), reverse=True)


def of_run(run_dir: str | Path) -> list[Path]:
    """A run directory's complete checkpoint folders, newest first: [] for a run that has none yet."""
    return folders(Path(run_dir) / "checkpoints")


def prune(ckpt_dir: Path, keep: int = 1, newest: Path | None = None) -> None:
    """Keep the newest `keep` checkpoints and those a pointer names; remove the rest, temporary folders of
    interrupted saves, and any checkpoint at or after the step of `newest` (a resumed run has just redone those
    steps: the old folders belong to the interrupted run's abandoned future)."""
    named = set()
    for which in ("last", "best"):
        try:
            named.add(pointer(ckpt_dir, which))
        except CheckpointError:
            pass
    kept = [d for d in folders(ckpt_dir) if newest is None or d == newest or step_of(d) < step_of(newest)]
    keep_set = set(kept[: max(1, keep)]) | (named & set(kept))
    for d in ckpt_dir.iterdir():
        if d.is_dir() and d not in keep_set:
            shutil.rmtree(d, ignore_errors=True)


def load_weights(folder: Path, name: str = "model") -> dict[str, torch.Tensor]:
    if is_sharded(folder):
        return _consolidated(folder, name)
    path = folder / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path} not found; the run directory has no {name} weights")
    try:
        tensors = st_load(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - any decoding failure: a truncated or overwritten file
        raise CheckpointError(
            f"{path} is damaged ({type(e).__name__}); delete its folder to fall back to an older checkpoint, or retrain"
        ) from None
    # safetensors hands the tensors back in the order of a hash map seeded per process: ranks that scatter them in
    # that order (FSDP's set_state_dict) would disagree on every collective. Sorted, every process agrees.
    return dict(sorted(tensors.items()))


def load_state(folder: Path) -> dict:
    path = folder / "state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; the checkpoint is incomplete") from None
    except Exception as e:
        if "Weights only load failed" in str(e) or "Unsupported global" in str(e):
            # something other than plain tensors and containers: refused, never loaded (one line, not a traceback)
            raise CheckpointError(
                f"{path} holds objects other than tensors and plain containers, which towerlab never "
                f"unpickles (torch.load weights_only refused it); delete its folder to fall back "
                f"to an older checkpoint, or retrain"
            ) from None
        raise CheckpointError(
            f"{path} is damaged ({type(e).__name__}); delete its folder to fall back to an older checkpoint, or retrain"
        ) from None


def manifest(folder: Path) -> dict:
    """The manifest of a checkpoint folder ({} for one written before manifests existed, or a damaged one)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def recorded_sha256(path: Path) -> str:
    """The SHA-256 of a file in a checkpoint folder as its manifest records it (the folder was verified by `find`
    or `damage` before: no second read of a large file), computed for a checkpoint written before manifests."""
    recorded = manifest(path.parent).get("sha256")
    return recorded.get(path.name) if isinstance(recorded, dict) and recorded.get(path.name) else sha256(path)


def damage(folder: Path) -> str | None:
    """Why the checkpoint in `folder` cannot be trusted (its manifest missing or empty, a file missing or not in
    the manifest, a checksum mismatch), or None. A checkpoint is verified or refused: nothing loads unchecked."""
    if not (folder / MANIFEST).is_file():
        return f"{MANIFEST} missing"
    expected = manifest(folder).get("sha256")
    if (
        not isinstance(expected, dict)
        or "state.pt" not in expected
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in expected.items())
    ):
        return f"{MANIFEST} is damaged (no SHA-256 for state.pt)"
    present = [f.name for f in folder.iterdir() if f.name not in (MANIFEST, SHARDS)]
    if (folder / SHARDS).is_dir():
        present += [f"{SHARDS}/{f.name}" for f in (folder / SHARDS).iterdir()]
    unlisted = sorted(name for name in present if name not in expected)
    if unlisted:
        return f"{unlisted[0]} is not in {MANIFEST}"
    for fname, digest in expected.items():
        if not _FILE.fullmatch(fname):
            return f"{MANIFEST} names {fname!r}, which is not a file of the checkpoint"
        if not (folder / fname).is_file():
            return f"{fname} missing"
        if sha256(folder / fname) != digest:
            return f"{fname} fails its SHA-256 check"
    return None


def find(run_dir: Path, which: str = "last", verify: bool = True, quiet: bool = False) -> Path:
    """The checkpoint folder of a run directory: the one `which` ('last' or 'best') names, checked against its
    manifest. A damaged one, or a pointer file that is lost or damaged while checkpoints exist, is reported in
    one line on stderr and the newest checkpoint that verifies is used instead. None usable: CheckpointError."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    why = None
    try:
        named = pointer(ckpt_dir, which)
    except CheckpointError:
        named, why = None, f"checkpoints/{which}.json is damaged"
    if named is not None and not named.is_dir():
        named, why = None, f"checkpoints/{which}.json names {named.name}, which is not there"
    if named is not None:
        bad = damage(named) if verify else None
        if bad is None:
            return named
        why = f"checkpoint {named.name} is damaged ({bad})"
    elif why is None and folders(ckpt_dir):
        why = f"checkpoints/{which}.json is missing"
    for folder in folders(ckpt_dir):
        if folder != named and (not verify or damage(folder) is None):
            if not quiet:
                print(
                    f"towerlab: warning: {run_dir}: {why}; using {folder.name} (step {step_of(folder)}), the newest "
                    f"checkpoint that verifies",
                    file=sys.stderr,
                    flush=True,
                )
            return folder
    if why:
        raise CheckpointError(f"{run_dir}: {why}, and no other checkpoint verifies; retrain the run")
    raise CheckpointError(
        f"{run_dir} has no {which} checkpoint (checkpoints/{which}.json); "
        f"train it first, or pass the right run directory"
    )


def folder_world_size(folder: Path) -> int:
    """How many processes wrote the checkpoint in `folder` (its manifest; state.pt for one written before those)."""
    return manifest(folder).get("world_size") or load_state(folder).get("world_size", 1)


def world_size(run_dir: Path) -> int | None:
    """How many processes trained the run's newest checkpoint (read without verifying: a cheap look before a
    launch), or None when the run has no checkpoint."""
    try:
        return folder_world_size(find(run_dir, verify=False, quiet=True))
    except CheckpointError:
        return None


def load_into(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: Path) -> None:
    """model.load_state_dict, with one clear line when the saved tensors do not fit the model that the run's
    config.yaml builds today (a run trained by another version of a recipe)."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
        raise CheckpointError(
            f"the weights in {source} do not fit the model its config builds ({detail[:160]}); "
            f"retrain, or use the towerlab version that trained it"
        ) from None


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
        raise CheckpointError(
            f"weights file {path} cannot be read as a state dict ({e.__class__.__name__}); "
            f"pass a safetensors file or a torch.save'd dict of tensors"
        ) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"weights file {path} does not hold a dict of tensors; pass a state dict")
    return sd


def run_weights(run_dir: Path, which: str = "best") -> dict[str, torch.Tensor]:
    """The weights a run evaluates with: its moving average if it keeps one, else the model."""
    folder = find(run_dir, which)
    return load_weights(folder, "ema" if (folder / "ema.safetensors").is_file() else "model")


def init_from(model: torch.nn.Module, run_dir: Path, which: str = "best") -> tuple[list[str], list[str]]:
    """Copy every tensor of another run's best (or last) weights whose name and shape match (staged training:
    FCN-16s from FCN-32s). Returns (copied, left as initialised). Nothing matching is an error."""
    theirs = run_weights(run_dir, which)
    own = model.state_dict()
    copied = [k for k, v in own.items() if k in theirs and theirs[k].shape == v.shape]
    if not copied:
        raise CheckpointError(
            f"no weights of {run_dir} match this model by name and shape; --init-from needs a run of a related recipe"
        )
    # a staged recipe (FCN-16s from FCN-32s, SegDec's decision stage) shares names and shapes and adds tensors of its
    # own; the same names in other shapes are a network of another width, which would train afresh in silence
    reshaped = [k for k in own if k in theirs and theirs[k].shape != own[k].shape]
    if len(reshaped) > len(copied):
        k = reshaped[0]
        raise CheckpointError(
            f"--init-from {run_dir}: only {len(copied)} of the {len(copied) + len(reshaped)} tensors "
            f"both networks name have the same shape ({k}: {tuple(theirs[k].shape)} there, "
            f"{tuple(own[k].shape)} here): the runs differ in size; give this run the earlier run's "
            f"settings (its config.yaml) or start without --init-from"
        )
    with torch.no_grad():
        for k in copied:
            own[k].copy_(theirs[k])
    return copied, [k for k in own if k not in copied]
