"""Writing and reading files that others may have planted links in: atomic replacement, never through a link.

Torch-free: the board, reports and the service's image writer use it as well as checkpoints.
"""

from __future__ import annotations

import errno
import io
import fcntl
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from towerlab.errors import ConfigError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str, sync: bool = True) -> Path:
    """path holds the old content or the new, never a mix. The new file is made beside it and renamed over it, so
    a symlink at path is replaced, never written through (a link to /etc/passwd stays pointing at an untouched
    file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    # O_EXCL | O_NOFOLLOW: a link planted at the temporary name cannot redirect the write either
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)
    return path


def write_png(image, path: str | Path) -> Path:
    """A PIL image (anything with PIL's `save(file, format=)`) as a PNG at path, through atomic_write: a link planted
    at path is replaced, not written through, and a reader never sees half a file. Not synced: a picture is
    redrawn, not a record to lose. PIL is the caller's (this module imports none of it)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return atomic_write(path, buf.getvalue(), sync=False)


def inside(path: str | Path, root: str | Path) -> bool:
    """path, with every link in it followed, is root or lies under it."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def link_leaving(folder: str | Path, root: str | Path) -> Path | None:
    """The first symbolic link under folder (itself included) whose target lies outside root, or None.
    Links are not followed while walking, so a link to / costs one check, not a walk of the disk."""
    folder, root = Path(folder), Path(root).resolve()
    if folder.is_symlink() and not inside(folder, root):
        return folder
    for here, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            p = Path(here, name)
            if p.is_symlink() and not inside(p, root):
                return p
    return None


def make_dir(path: str | Path, what: str) -> Path:
    """mkdir -p, with a folder that cannot be made or written (under a file, read-only, no permission) one line
    naming the flag it came from."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".towerlab-probe-{uuid.uuid4().hex[:8]}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{what} {path} cannot be written ({e.strerror or type(e).__name__}); choose a folder you "
                          f"can write to") from None
    return path


def acquire_lock(path: Path, doing: str = "trained") -> int:
    """Hold path/.lock for as long as this process lives (the kernel lets go when it dies, however it dies): a
    second process that would work in the same folder (a run being trained, a search being continued) is refused
    in one line naming the holder. O_NOFOLLOW: a link planted at .lock would have its target cut to our pid."""
    try:
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        why = "it is a link" if e.errno == errno.ELOOP else e.strerror or type(e).__name__
        raise ConfigError(f"{path / '.lock'} cannot be taken ({why}); delete it, then run again") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{path} is being {doing} by process {holder(path) or '?'}; wait for it to finish or stop "
                          f"it, then run again") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextmanager
def held(path: Path, doing: str):
    """The folder's lock for the duration of a with block (a search's output folder: see acquire_lock)."""
    fd = acquire_lock(path, doing)
    try:
        yield
    finally:
        os.close(fd)


def holder(path: Path) -> int | None:
    """The pid of the live process that holds the folder's lock, or None when nobody does (or .lock is no file)."""
    lock = Path(path) / ".lock"
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
