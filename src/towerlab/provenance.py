"""What produced a result, recorded where the result is (a run's env.json, a service's start): the code (git commit
of the working directory's repository and of towerlab's own checkout, whether either tree was dirty and the SHA-256
of its diff), the installed packages, torch / CUDA / cuDNN / NCCL versions, the host, the full command line, the
environment variables that change behaviour, and the data files' sizes and SHA-256.

File hashes are cached by (path, size, mtime) under ~/.cache/towerlab/hashes.json, so a large folder is read once.
Everything here is best effort: a missing git, an unreadable file, never fails the run that asks.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from towerlab import secrets
from towerlab.files import cache_dir, walk_files

MAX_LISTED = 200  # a data folder with more files is summarised: count, total size, one digest over the file hashes


def git_state(folder: str | Path) -> dict | None:
    """{commit, dirty, diff_sha256} of the repository holding `folder`, or None outside one (or without git)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        diff = git("diff", "HEAD")
        untracked = git("ls-files", "--others", "--exclude-standard")
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = bool(diff.strip() or untracked.strip())
    return {
        "commit": commit,
        "dirty": dirty,
        **({"diff_sha256": hashlib.sha256((diff + untracked).encode()).hexdigest()} if dirty else {}),
    }


def packages() -> list[str]:
    """`pip freeze`, from the installed distributions' metadata (no subprocess)."""
    from importlib.metadata import distributions

    return sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"]}, key=str.lower)


def versions() -> dict:
    """python, torch, CUDA, cuDNN, NCCL (and ONNX Runtime where installed). torch is asked only when the process has
    imported it already: the ONNX Runtime service must run without loading it."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    out = {"python": platform.python_version(), "torch": installed("torch"), "onnxruntime": installed("onnxruntime")}
    torch = sys.modules.get("torch")
    if torch is not None:
        cuda = torch.cuda.is_available()
        nccl = torch.cuda.nccl.version() if cuda and hasattr(torch.cuda, "nccl") else None
        out.update(
            torch=torch.__version__,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version() if cuda else None,
            nccl=".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl,
        )
    return out


def _cache_file() -> Path:
    return cache_dir() / "hashes.json"


def file_sha256(path: Path, cache: dict) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key not in cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        cache[key] = h.hexdigest()
    return cache[key]


def _save_cache(cache: dict) -> bool:
    """Keep the hashes for the next run; an unwritable cache folder only means hashing again next time."""
    from towerlab.files import atomic_write

    try:
        _cache_file().parent.mkdir(parents=True, exist_ok=True)
        atomic_write(_cache_file(), json.dumps(cache), sync=False)
        return True
    except OSError:
        return False


def data_record(path: str | Path) -> dict | None:
    """Sizes and SHA-256 of a data file, or of every file under a data folder (summarised past MAX_LISTED)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        cache = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        cache = {}
    files = [path] if path.is_file() else walk_files(path)  # linked folders too: what training reads
    rows = [(str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, file_sha256(p, cache)) for p in files]
    _save_cache(cache)
    record = {
        "path": str(path.resolve()),
        "files": len(rows),
        "bytes": sum(r[1] for r in rows),
        "sha256": hashlib.sha256("".join(f"{n}\0{h}\n" for n, _, h in rows).encode()).hexdigest(),
    }
    if len(rows) <= MAX_LISTED:
        record["listing"] = [{"file": n, "bytes": b, "sha256": h} for n, b, h in rows]
    return record


def record(data: str | Path | None = None) -> dict:
    """The whole record (a run's env.json, a service's start)."""
    import towerlab

    here = Path.cwd()
    source = Path(towerlab.__file__).resolve().parent
    out = {
        "command": [Path(sys.argv[0]).name, *(secrets.mask(a) for a in sys.argv[1:])],
        "cwd": str(here),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "towerlab": towerlab.__version__,
        "git": git_state(here),
        "towerlab_git": git_state(source) if (source.parents[1] / ".git").exists() else None,
        **versions(),
        "environment": secrets.environment(os.environ),  # only variables known to be harmless, URLs masked
        "packages": packages(),
    }
    try:
        out["data"] = data_record(data) if data else None
    except OSError as e:  # unreadable data is the run's business to report, not the record's
        out["data"] = {"path": str(data), "error": str(e)}
    return out
