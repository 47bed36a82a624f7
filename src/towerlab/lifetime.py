"""A child process whose life is tied to its parent's (Linux's parent-death signal): a search's trials and the
processes of `towerlab train --procs N` end when what started them dies, however it dies (SIGKILLed by the OOM
killer or a scheduler included), instead of training on under pid 1. Standard library only: `jobs` and `search`
import it before torch."""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def restart_count() -> int:
    """How many times torchrun's agent has restarted this run's processes (0 on the first attempt). Here, not in
    dist.py, so that a command can ask before it imports torch."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Linux: this process gets `sig` when its parent dies, however it dies (SIGKILLed by the OOM killer or a
    scheduler included); if the parent is gone already, it exits now. SIGTERM: a training process checkpoints at
    its next step (preempt.py) and ends, so the run can be resumed."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
