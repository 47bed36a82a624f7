"""Preemption as clusters do it: a signal (SIGTERM, SIGUSR1; SLURM sends one before it stops or requeues a job)
asks the run to stop; every rank checkpoints at the next step boundary, the same step on all of them, and the
command exits with errors.EXIT_PREEMPTED (3). `towerlab train --resume RUN` then continues bit for bit.

Ranks may get the signal at different moments, or only one of them may get it: after each step the ranks take the
maximum of their flags (one all_reduce of one number), so they all stop together.
"""

from __future__ import annotations

import os
import signal
import subprocess

import torch

from towerlab.dist import Dist, all_reduce_max


class Preemption:
    """Installed for the training loop: the handlers only set a flag; the loop asks `requested` between steps."""

    def __init__(self, names: str, dist: Dist):
        self.dist, self.received = dist, 0
        self.signals = [getattr(signal, n.strip().upper()) for n in names.split(",") if n.strip()]
        self._before = {}
        for s in self.signals:
            try:
                self._before[s] = signal.signal(s, self._note)
            except ValueError:  # not the main thread (a library caller's worker thread): no handlers, no preemption
                break

    def _note(self, signum, frame) -> None:
        self.received = self.received or signum

    def requested(self) -> str | None:
        """The signal's name when this or any other rank got one; collective when there are several ranks."""
        if not self.signals:  # --preempt-signals "": nothing to ask the other ranks (every rank has the same config)
            return None
        got = self.received
        if self.dist.distributed:
            got = int(all_reduce_max(torch.tensor([got], dtype=torch.int64, device=self.dist.device), self.dist)[0])
        return signal.Signals(got).name if got else None

    def restore(self) -> None:
        for s, handler in self._before.items():
            signal.signal(s, handler)


def requeue(command: str = "scontrol") -> str | None:
    """Under SLURM, put the job back in the queue (`scontrol requeue $SLURM_JOB_ID`); what was run, or None."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    subprocess.run([command, "requeue", job], check=False, timeout=60)
    return f"{command} requeue {job}"
