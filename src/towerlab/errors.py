"""Errors a user can cause. The CLI prints each as one line (no traceback) and exits 2."""


class TowerlabError(Exception):
    """Base class: the message names the thing that is wrong and how to fix it.

    all_ranks: every process of a multi-process run raised this same error (rank 0 decided and told the others),
    so only rank 0 prints it."""

    def __init__(self, message: str = "", *, all_ranks: bool = False):
        super().__init__(message)
        self.all_ranks = all_ranks


EXIT_PREEMPTED = 3  # the exit code of a run stopped by a signal with a checkpoint to resume from (README, preempt.py)


class Preempted(TowerlabError):
    """A signal stopped the run at a step boundary, checkpointed on every rank: `--resume` continues it."""


# extra -> the modules it installs (top-level import names): what a missing import means to the user
EXTRAS = {
    "chem": ("rdkit", "selfies"),
    "serve": ("sqlalchemy", "pydantic", "prometheus_client"),
    "postgres": ("psycopg",),
    "search": ("matplotlib",),
    "ray": ("ray",),
    "onnx": ("onnx", "onnxruntime"),
    "optuna": ("optuna",),
    "mssql": ("pyodbc",),
    "mssql-pymssql": ("pymssql",),
}


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """The one line for an import that failed because an optional extra is not installed, else None."""
    top = (e.name or "").split(".")[0]
    extra = next((x for x, modules in EXTRAS.items() if top in modules), None)
    return f"this needs {top}, from the {extra} extra: pip install 'towerlab[{extra}]'" if extra else None


class ConfigError(TowerlabError):
    """A bad config value, an unknown field, an unreadable YAML file."""


class DataError(TowerlabError):
    """A missing, truncated or corrupt data file."""


class CheckpointError(TowerlabError):
    """A run directory without a usable checkpoint."""


class DivergedError(TowerlabError):
    """The training loss became NaN or infinite."""
