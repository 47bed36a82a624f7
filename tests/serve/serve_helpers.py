"""Helpers for the serve tests and bench/serve.py: configs, the service as a process, a throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def write_config(path: Path, url: str, model: Path, **source) -> Path:
    src = {
        "name": "line1",
        "table": "measurements",
        "key_column": "id",
        "payload": {"kind": "text", "column": "vals", "height": 8, "width": 8},
        "normalize": {"kind": "fixed", "offset": 0, "scale": 16},
        "interval_s": 0.2,
        "batch_size": 64,
        **source,
    }
    cfg = {
        "database": url,
        "model": str(model),
        "image_dir": str(path.parent / "images"),
        "sources": [src],
        "shutdown_timeout_s": 10,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def serve_cmd(cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "towerlab", "serve", str(cfg), *args]


def run_serve(cfg: Path, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`towerlab serve CFG ARGS` to its end, in a process of its own (forked warm, as tests/helpers.run_cli)."""
    from helpers import run_cli  # here, not at the top: bench/serve.py imports this module without tests/ on its path

    return run_cli("serve", str(cfg), *args, env=env, timeout=timeout, check=False)


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (run as the postgres user when we are root, as it insists)."""

    password_env = "TOWERLAB_TEST_PG_PASSWORD"

    def __init__(self, bindir: Path):
        self.bindir, self.port = bindir, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="towerlab-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            os.chmod(self.root, 0o755)
            shutil.chown(self.sock, "postgres")
            shutil.chown(self.root, "postgres")
        pw = self.root / "pw"
        pw.write_text("postgres\n")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pw}",
            "-E",
            "UTF8",
        )
        self.start()
        self.psql("CREATE ROLE towerlab LOGIN PASSWORD 'grader-secret'")
        self.psql("CREATE DATABASE factory OWNER towerlab")
        os.environ[self.password_env] = "grader-secret"

    def _run(self, tool: str, *args: str) -> str:
        cmd = [str(self.bindir / tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd="/").stdout

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self._run(
            "psql",
            "-h",
            str(self.sock),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        )

    @property
    def url(self) -> str:
        # the password comes from the environment, as a deployment would have it
        return f"postgresql+psycopg://towerlab:${{{self.password_env}}}@127.0.0.1:{self.port}/factory"

    def resolved_url(self) -> str:
        return self.url.replace(f"${{{self.password_env}}}", os.environ[self.password_env])

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 30) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)
