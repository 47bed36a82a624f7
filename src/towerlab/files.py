"""Writing and reading files that others may have planted links in: atomic replacement, never through a link.

Torch-free: the board, reports and the service's image writer use it as well as checkpoints.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import math
import os
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

from towerlab.errors import ConfigError


def fsync_dir(path: Path) -> None:
    """fsync a folder (its entries) or a file (its data): whatever `path` is, opened read-only."""
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
    return atomic_write(path, _signed(buf.getvalue()), sync=False)


# every PNG towerlab writes says so (a tEXt chunk "Software: towerlab"), so that an output it would write again can
# be told from a user's own file of the same name, which it must never overwrite
_SIGNATURE = b"Software\0towerlab"


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _signed(png: bytes) -> bytes:
    ihdr_end = 8 + 8 + 13 + 4  # signature, then IHDR's length, type, 13 bytes of data and CRC
    return png[:ihdr_end] + _chunk(b"tEXt", _SIGNATURE) + png[ihdr_end:]


def written_by_towerlab(path: str | Path) -> bool:
    """Whether the file at path is a PNG that towerlab wrote (its signature chunk follows the header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8 + 25 + 12 + len(_SIGNATURE))
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and head[33:].startswith(
        _chunk(b"tEXt", _SIGNATURE)[: 8 + len(_SIGNATURE)]
    )


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
        raise ConfigError(
            f"{what} {path} cannot be written ({e.strerror or type(e).__name__}); choose a folder you can write to"
        ) from None
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
        if _lock(fd, exclusive=True) == "posix":
            _POSIX_HELD[str(path / ".lock")] = fd
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"{path} is being {doing} by process {holder(path) or '?'}; wait for it to finish or stop "
            f"it, then run again"
        ) from None
    except OSError as e:  # neither flock nor POSIX locks here: say so once, and work on unguarded
        print(
            f"towerlab: warning: the file system of {path} refuses file locks ({e.strerror or e}); nothing stops a "
            f"second process from working in this folder at the same time",
            file=sys.stderr,
        )
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


# what a file system that does not lock says (NFS without lockd, Lustre mounted without -o flock, some FUSE)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


# lock files this process holds by a POSIX record lock (the fallback) -> the fd: such a lock is dropped when the
# process closes ANY fd of the file, so holder() must not open the file to test it
_POSIX_HELD: dict[str, int] = {}


def _lock(fd: int, exclusive: bool) -> str:
    """flock, or where the file system refuses it, a POSIX record lock (fcntl F_SETLK: what NFS and Lustre
    implement across machines); which one it took. BlockingIOError when another process holds it, OSError when
    neither exists."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return "flock"
    except BlockingIOError:
        raise
    except OSError as e:
        if e.errno not in _NO_LOCKS:
            raise
    try:
        fcntl.lockf(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return "posix"
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):  # held by another process
            raise BlockingIOError(e.errno, e.strerror) from None
        raise


def _held_here(lock: Path) -> bool:
    """Whether this process holds `lock` by a POSIX record lock through an fd still open on that very file."""
    fd = _POSIX_HELD.get(str(lock))
    if fd is None:
        return False
    try:
        same = os.fstat(fd).st_ino == os.stat(lock).st_ino
    except OSError:
        same = False
    if not same:  # closed (released) since, or the fd number reused for another file
        _POSIX_HELD.pop(str(lock), None)
    return same


@contextmanager
def held(path: Path, doing: str):
    """The folder's lock for the duration of a with block (a search's output folder: see acquire_lock)."""
    fd = acquire_lock(path, doing)
    try:
        yield
    finally:
        os.close(fd)


@contextmanager
def in_turn(path: Path):
    """Wait for, then hold for the block, an exclusive lock on the file `path`: outputs that several processes
    write (the workers of one search, as each ends) are written by one at a time, each whole."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise
            fcntl.lockf(fd, fcntl.LOCK_EX)  # NFS, Lustre: a POSIX record lock
        yield
    finally:
        os.close(fd)


def holder(path: Path) -> int | None:
    """The pid of the live process that holds the folder's lock, or None when nobody does (or .lock is no file)."""
    lock = Path(path) / ".lock"
    if _held_here(lock):
        return os.getpid()
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        _lock(fd, exclusive=False)
        return None
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    except OSError:  # no locks on this file system: nobody can be said to hold it
        return None
    finally:
        os.close(fd)


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A text cell as a spreadsheet will not run it: text starting with = + - @ (or a tab, a carriage return) gets a
    leading ' (OWASP's CSV injection advice), so a file named '=HYPERLINK(...).png' stays a name. Numbers pass."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def cache_dir() -> Path:
    """towerlab's cache folder ($XDG_CACHE_HOME/towerlab, else ~/.cache/towerlab): what can be made again."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "towerlab"


def walk_files(root: str | Path) -> list[Path]:
    """Every file under root, links to folders followed (a class folder may be a link to where the images live:
    what training reads, the data hash must cover), each real folder once (a loop of links ends), hidden names
    skipped; sorted by path. The listing is kept in the cache with the modification time of every folder walked and
    read back while none has changed (a file added, removed or renamed changes its folder's time): a folder of a
    million files on a cluster file system is walked once, with a progress bar, not at every start."""
    root = Path(root)
    kept = _kept_listing(root)
    if kept is not None:
        return kept
    found, folders = _walk(root)
    _keep_listing(root, found, folders)
    return found


def _walk(root: Path) -> tuple[list[Path], dict[str, int]]:
    """The files, and the modification time (ns) of each folder walked, by its path relative to root."""
    from tqdm import tqdm

    found, seen, folders = [], set(), {}
    with tqdm(desc=f"listing {root}", unit=" files", disable=None, leave=False) as bar:  # a terminal only
        for here, dirs, names in os.walk(root, followlinks=True):
            real = os.path.realpath(here)
            if real in seen:
                dirs[:] = []
                continue
            seen.add(real)
            folders[os.path.relpath(here, root)] = os.stat(here).st_mtime_ns
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            got = [Path(here) / f for f in names if not f.startswith(".") and os.path.isfile(os.path.join(here, f))]
            found += got
            bar.update(len(got))
    return sorted(found), folders


def _listing_file(root: Path) -> Path:
    import hashlib

    return cache_dir() / "listings" / f"{hashlib.sha256(str(root.absolute()).encode()).hexdigest()[:24]}.json"


def _kept_listing(root: Path) -> list[Path] | None:
    """The cached listing of root, None when there is none, a folder in it changed since, or it names a path
    that is not a plain relative one (a cache file edited to reach outside root is walked again, never read)."""
    try:
        kept = json.loads(_listing_file(root).read_text())
        if kept["root"] != str(root.absolute()) or not kept["folders"]:
            return None
        if not all(map(_inside, [*kept["folders"], *kept["files"]])):
            return None
        for rel, mtime in kept["folders"].items():
            if os.stat(root / rel).st_mtime_ns != mtime:
                return None
        return [root / rel for rel in kept["files"]]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, unreadable, or a folder gone: walk again
        return None


def _inside(rel: str) -> bool:
    """A path relative to the listed root that stays under it (what _walk records: no absolute path, no '..')."""
    return isinstance(rel, str) and not os.path.isabs(rel) and ".." not in Path(rel).parts


RACY_S = 2.0  # a folder changed this recently may change again within its clock's tick, unseen: not kept


def _keep_listing(root: Path, found: list[Path], folders: dict[str, int]) -> None:
    """Keep the listing for the next start; an unwritable cache only means walking again. A folder modified in the
    last RACY_S seconds is not trusted (file times come from a coarse clock: git's "racy" index entries)."""
    import time

    if not folders or time.time() - max(folders.values()) / 1e9 < RACY_S:
        return
    record = {"root": str(root.absolute()), "folders": folders, "files": [str(p.relative_to(root)) for p in found]}
    where = _listing_file(root)
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(where, json.dumps(record), sync=False)
    except OSError:
        pass


def finite(obj):
    """obj with every NaN or infinity (in dicts, lists, tuples) as None: JSON has no NaN, and a file holding one is
    not JSON to any other reader (jq, JavaScript, a database's JSON type)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(obj, **kwargs) -> str:
    """json.dumps of obj whose non-finite numbers are null: what every metrics file and JSON line towerlab writes
    or prints goes through."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
