"""Credentials never leave the process in clear: every URL towerlab prints or writes (a command line in env.json, an
MLflow or Optuna storage URI, an error line) goes through `mask`, and of the environment only variables known to be
harmless are recorded (a `TOWERLAB_DB_PASSWORD` must not land in env.json, a report or the board).

Torch-free, standard library only: the ONNX service and the board use it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# a URL anywhere in a line of text: scheme://, then up to the next space or quote
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
# query parameters and variable names that hold secrets (AWS, Azure SAS, OAuth, database drivers)
_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|credential|signature|(^|_)sig($|_)|(^|_)key($|_)|api[_-]?key|auth", re.IGNORECASE
)

# the variables of the environment recorded with a run: what changes what it computes or where it runs
WATCHED = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTHONHASHSEED",
    "NCCL_DEBUG",
    "NCCL_SOCKET_IFNAME",
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "SLURM_JOB_ID",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "TORCH_DISABLE_SHARE_RDZV_TCP_STORE",
    # towerlab's own, each read by the code and none a secret
    "TOWERLAB_BACKEND",
    "TOWERLAB_DATA",
    "TOWERLAB_MAX_PIXELS",
    "TOWERLAB_MLFLOW_PARENT",
    "TOWERLAB_REPORT",
)


def mask_url(url: str) -> str:
    """The URL with its password (and any secret-looking query value) replaced by ***; the user name, host, port,
    path and other parameters stay, so a reader still sees where it points. Text that is no URL comes back as is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_NAME.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_NAME.search(k) else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing to hide: as written (urlunsplit would drop the // of sqlite:///file)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask(text: str) -> str:
    """Every URL inside text masked (an error line, a command-line argument)."""
    return _URL.sub(lambda m: mask_url(m.group(0)), text) if "://" in text else text


def has_password(url: str) -> bool:
    return mask_url(url) != url


def environment(environ) -> dict[str, str]:
    """The recorded environment: the WATCHED variables only, their values masked."""
    return {k: mask(v) for k, v in sorted(environ.items()) if k in WATCHED}
