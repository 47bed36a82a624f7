"""Errors a user can cause. The CLI prints each as one line (no traceback) and exits 2."""


class TowerlabError(Exception):
    """Base class: the message names the thing that is wrong and how to fix it.

    all_ranks: every process of a multi-process run raised this same error (rank 0 decided and told the others),
    so only rank 0 prints it."""

    def __init__(self, message: str = "", *, all_ranks: bool = False):
        super().__init__(message)
        self.all_ranks = all_ranks


class ConfigError(TowerlabError):
    """A bad config value, an unknown field, an unreadable YAML file."""


class DataError(TowerlabError):
    """A missing, truncated or corrupt data file."""


class CheckpointError(TowerlabError):
    """A run directory without a usable checkpoint."""


class DivergedError(TowerlabError):
    """The training loss became NaN or infinite."""
