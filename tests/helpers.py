"""Helpers shared by the tests: data in the real on-disk formats, the CLI in a process of its own."""

from __future__ import annotations

import atexit
import functools
import gzip
import io
import multiprocessing
import os
import pickle
import runpy
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from multiprocessing import forkserver
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def missing(msg: str, require_var: str) -> None:
    """A prerequisite (real data, a PostgreSQL server) is absent: fail in CI (CI=true or require_var=1), where a
    skip would let the suite pass without running these tests; skip with the reason on a developer's machine."""
    import pytest

    if os.environ.get(require_var) == "1" or os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def cifar_records(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, (n, 1), dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1).tobytes()


def write_cifar_python_batch(path: Path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """A batch as the official Python version stores it: a protocol-2 pickle of a dict with bytes keys."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    path.write_bytes(pickle.dumps({b"batch_label": b"x", b"labels": labels, b"data": data}, protocol=2))
    return data, labels


def run_cli(
    *args: str,
    cwd: Path | None = None,
    check: bool = True,
    env: dict | None = None,
    timeout: float = 300,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """`towerlab ARGS` in a process of its own, as a user would run it: its own pid, environment, working folder,
    exit code and output. By default the process is forked from a warm interpreter (`_warm`) instead of starting
    Python afresh; `fresh=True` runs `python -m towerlab` from scratch, for a test about what a command imports."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if fresh or _starts_python_otherwise(full_env) or _cuda():
        proc = subprocess.run(
            [sys.executable, "-m", "towerlab", *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    else:
        proc = _warm_run(list(args), cwd, full_env, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"towerlab {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


# -- the warm interpreter ---------------------------------------------------------------------------------------
# A fresh `python -m towerlab train ...` spends ~3 CPU s before its first step: 1.5 s importing torch and 1.3 s in
# torch._dynamo (every torch optimizer's constructor imports it), and a test starts a few hundred such processes:
# a third of the suite's CPU time. The standard library's forkserver imports these modules once per test worker,
# before any thread or computation starts, and forks each command from it. What the preload holds is only imported
# code: the towerlab modules read their environment and files when a command runs, never at import (the child sets
# its own environment and folder before `main` runs), so a forked command behaves as a fresh one.
_PRELOAD = [
    "torch",
    "torch._dynamo",
    "towerlab.cli",
    "towerlab.train",
    "torch.utils.tensorboard",
    "matplotlib.pyplot",
    "rdkit.Chem",
    "towerlab.serve.worker",
]  # the chem commands (RDKit 0.4 s), serve (SQLAlchemy 0.3 s)
_context = None


def _python_env(env) -> dict:
    return {k: v for k, v in env.items() if k.startswith("PYTHON") and k != "PYTHONUNBUFFERED"}


_STARTED_WITH = _python_env(os.environ)  # as this worker started, before a test could change os.environ


def _starts_python_otherwise(env: dict) -> bool:
    """Whether ENV sets a variable that Python reads as it starts (PYTHONPATH, PYTHONHASHSEED, ...) other than the
    test worker's: a warm fork has started already, so such a command runs fresh. (The hash seed is the warm
    interpreter's in every fork: a test comparing two runs for equality runs one of them fresh, so that a result
    that hangs on set order would still differ between them.)"""
    return _python_env(env) != _STARTED_WITH


@functools.cache
def _cuda() -> bool:
    """A machine with a CUDA device starts every command fresh: whether an import in the warm interpreter touches
    CUDA (a child forked after that cannot use it) is not something this CPU-only suite can check."""
    import torch

    return torch.cuda.is_available()


def _warm():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(_PRELOAD)
        # the forkserver starts with the worker's PYTHON* variables as they were, whatever a test has set since
        as_started = {**{k: v for k, v in os.environ.items() if k not in _python_env(os.environ)}, **_STARTED_WITH}
        with mock.patch.dict(os.environ, as_started, clear=True):
            forkserver.ensure_running()
    return _context


def _warm_run(argv: list[str], cwd: Path | None, env: dict, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="towerlab-cli-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        proc = _warm().Process(target=_command, args=(argv, str(cwd or os.getcwd()), env, str(out), str(err)))
        proc.start()
        proc.join(timeout)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(["towerlab", *argv], timeout, out.read_text(), err.read_text())
        return subprocess.CompletedProcess(
            ["towerlab", *argv], proc.exitcode, out.read_text(errors="replace"), err.read_text(errors="replace")
        )


def _command(argv: list[str], cwd: str, env: dict, out: str, err: str) -> None:
    """In the forked process: become `python -m towerlab ARGV` (environment, folder, argv, stdout and stderr as
    O_APPEND files that the command's own children inherit), run it, run its exit handlers, leave with its code."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), errors="backslashreplace", write_through=True)
    sys.argv = ["towerlab", *argv]  # run_module puts the path of towerlab/__main__.py first, as `python -m` does
    try:
        runpy.run_module("towerlab", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:  # as the interpreter treats it: None is 0, an int the code, anything else printed, 1
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    os._exit(code)


def rank_pid(run: Path, rank: int) -> int | None:
    """The training process of `rank` for run directory `run`, found in /proc (Linux); None when there is none.
    (bench/kill_resume.py uses it too.)"""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run).encode() in cmd and b"-u" in cmd and f"RANK={rank}".encode() in env:
            return int(pid)
    return None


def zinc_file(shared_data: Path, folder: Path, n: int) -> Path:
    """The first n molecules of the real ZINC test split, one SMILES a line. (Here, not in conftest.py: a test
    module that imports from `conftest` gets whichever conftest.py pytest put on the path first, tests/serve's
    when a run names that folder first.)"""
    path = folder / "zinc.txt"
    path.write_text("\n".join((shared_data / "zinc250k_jtvae" / "test.txt").read_text().split()[:n]) + "\n")
    return path


REAL_SMILES = [  # real molecules (the first rows of Tox21 and MOSES), for tiny fixture files
    "CCOc1ccc2nc(S(N)(=O)=O)sc2c1",
    "CCN1C(=O)NC(c2ccccc2)C1=O",
    "CC[C@]1(O)C[C@H]2C[N@@](C1)CCc1c([nH]c3ccccc13)[C@@](C(=O)OC)(c1cc3c(cc1OC)N(C)[C@H]1[C@@](O)(C(=O)OC)[C@H](OC(C)=O)[C@]4(CC)C=CCN5CC[C@]31[C@@H]54)C2",
    "CCCCCCCCCCOCC(O)CN",
    "CCCCCCCCCCCCCCCCCCCC",
    "CC(O)(P(=O)(O)O)P(=O)(O)O",
    "CC(C)(C)OOC(C)(C)CCC(C)(C)OOC(C)(C)C",
    "O=C(O)Cc1cc(I)c(Oc2ccc(O)c(I)c2)c(I)c1",
    "OC[C@H](O)[C@@H](O)[C@H](O)CO",
    "CCCCCCCC/C=C\\CCCCCCCC(=O)OCC",
    "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1",
    "COc1ccc(-c2cc(=O)c3c(O)c(OC)c(OC)cc3o2)cc1O",
    "CC(C)(C)c1ccc2occ(CC(=O)Nc3ccccc3F)c2c1",
    "C[C@@H]1CC(Nc2cncc(-c3nncn3C)c2)C[C@@H](C)C1",
    "N#Cc1ccc(-c2ccc(O[C@@H](C(=O)N3CCCC3)c3ccccc3)cc2)cc1",
    "CCOC(=O)[C@@H]1CCCN(C(=O)c2nc(C(=O)OC)c[nH]2)C1",
    "Clc1ccc(Br)cc1",
    "c1ccc2[nH]ccc2c1",
    "CC(=O)Oc1ccccc1C(=O)O",
    "CN1CCC[C@H]1c1cccnc1",
]


def tiff_with_a_rational_strip_offset() -> bytes:
    """A real 390-byte TIFF (found by fuzzing) whose StripOffsets tag is typed RATIONAL: Pillow's decoder raises
    TypeError, which no image reader expects."""
    import io
    import struct

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        at = ifd + 2 + 12 * i
        if struct.unpack("<H", data[at : at + 2])[0] == 273:
            data[at + 2 : at + 4] = struct.pack("<H", 5)
    return bytes(data)


def hostile_pictures() -> dict[str, bytes]:
    """Small real files that no image reader may let through: a decoder's unexpected exception, formats off the
    allow-list (DDS: NotImplementedError; EPS: Ghostscript), a PNG whose header claims 13,000 x 13,000 pixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return {
        "tiff_typeerror": tiff_with_a_rational_strip_offset(),
        # a DDS header Pillow's DDS plugin answers with NotImplementedError; EPS would start Ghostscript
        "dds": b"DDS "
        + struct.pack("<7I", 124, 0x1007, 8, 8, 0, 0, 0)
        + b"\0" * 44
        + struct.pack("<2I4s5I", 32, 4, b"ATI9", 0, 0, 0, 0, 0)
        + b"\0" * 20
        + b"\xff" * 64,
        "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\n%%EOF\n",
        "bomb": b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 13000, 13000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 13001 * 8))
        + chunk(b"IEND", b""),
    }


# -- a real `mlflow server` on 127.0.0.1 (SQLite backend store, local artifact root) ---------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(root: Path, port: int) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--default-artifact-root",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("mlflow server did not start")


def stop_mlflow(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
