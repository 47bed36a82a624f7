"""The one runtime object: which process this is and which device it drives.

torchrun (torch.distributed.run) sets RANK, LOCAL_RANK and WORLD_SIZE; when they are present we join the
process group, with no flags needed. NCCL drives GPUs; gloo drives CPU processes (and is what the tests use).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as tdist

from towerlab.lifetime import die_with_parent, restart_count  # noqa: F401 (restart_count: part of dist's API)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_launcher() -> bool:
    from_slurm()
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def from_slurm() -> None:
    """`srun towerlab train ...` without torchrun: SLURM's task variables become torchrun's (RANK, LOCAL_RANK,
    WORLD_SIZE), MASTER_ADDR the first node of the job (unless set), MASTER_PORT 29500 + the job id mod 1000
    (unless set). Only inside an srun step of several tasks (SLURM_STEP_NUM_TASKS): a batch script that calls
    towerlab directly is one process, whatever its allocation."""
    env = os.environ
    if "RANK" in env or int(env.get("SLURM_STEP_NUM_TASKS", "1") or 1) < 2 or "SLURM_PROCID" not in env:
        return
    env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], env["SLURM_STEP_NUM_TASKS"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env.setdefault(
        "MASTER_ADDR", first_node(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "127.0.0.1")
    )
    env.setdefault("MASTER_PORT", str(29500 + int(env.get("SLURM_JOB_ID", "0") or 0) % 1000))


def first_node(nodelist: str) -> str:
    """The first host of a SLURM node list: "gpu[03-05,09],cpu1" -> "gpu03"."""
    head = nodelist.split(",")[0] if "[" not in nodelist.split(",")[0] else nodelist[: nodelist.index("]") + 1]
    if "[" not in head:
        return head
    prefix, ranges = head.split("[", 1)
    return prefix + ranges.rstrip("]").split(",")[0].split("-")[0]


LAUNCHER_ENV = "TOWERLAB_LAUNCHER_PID"  # set by `launch` for its processes: they die with it


def setup(use_gpu: bool | None = None, timeout_s: float | None = None) -> Dist:
    """Dist from torchrun's environment (or a single process); joins the process group if needed.

    use_gpu: None picks a GPU when one is visible; False forces the CPU.
    timeout_s: how long a collective waits for a process that does not arrive before it fails (PyTorch's default
    is 10-30 minutes, which looks like a hang to a user).
    """
    cuda = torch.cuda.is_available() if use_gpu is None else (use_gpu and torch.cuda.is_available())
    if not under_launcher():
        return Dist(device=torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu"))
    if os.environ.get(LAUNCHER_ENV, "").isdigit():  # started by `towerlab train --procs N`, not by a user's torchrun
        die_with_parent(int(os.environ[LAUNCHER_ENV]))
    rank, local_rank, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    if cuda:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if restart_count() and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and rank == 0:
        print(
            "towerlab: warning: torchrun restarted the processes on its shared store, where they can hang connecting "
            "to the dead ones (pytorch/pytorch#135712); run torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, as "
            "`towerlab train --max-restarts` does",
            file=sys.stderr,
            flush=True,
        )
    if world > 1 and not tdist.is_initialized():
        backend = os.environ.get("TOWERLAB_BACKEND") or ("nccl" if cuda else "gloo")
        tdist.init_process_group(
            backend=backend,
            device_id=device if backend == "nccl" else None,
            **({"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}),
        )
    return Dist(rank=rank, local_rank=local_rank, world_size=world, device=device)


def teardown(finished: bool = False) -> None:
    """Leave the process group. After a run that finished on every process, wait for all of them first: a gloo
    group destroyed while a peer still talks to it can abort that peer at exit ("terminate called without an
    active exception"). After an error, leave at once: the peers may never arrive."""
    if tdist.is_initialized():
        try:
            if finished:
                tdist.barrier()
        finally:
            tdist.destroy_process_group()


def print0(*args, dist: Dist | None = None, **kwargs) -> None:
    """print on rank 0 only."""
    if dist is None or dist.is_main:
        print(*args, **kwargs, flush=True)


def all_reduce_sum(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    """In-place sum across ranks (no-op in one process)."""
    if dist.distributed:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    """In-place maximum across ranks (no-op in one process)."""
    if dist.distributed:
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return t


def all_reduce_extremes(t: torch.Tensor, dist: Dist) -> tuple[torch.Tensor, torch.Tensor]:
    """(elementwise max, elementwise min) of t across ranks."""
    hi, lo = t.clone(), t.clone()
    if dist.distributed:
        tdist.all_reduce(hi, op=tdist.ReduceOp.MAX)
        tdist.all_reduce(lo, op=tdist.ReduceOp.MIN)
    return hi, lo


def all_gather(t: torch.Tensor, dist: Dist) -> list[torch.Tensor]:
    """The same-shaped tensor from every rank, in rank order (moved through the device for NCCL)."""
    if not dist.distributed:
        return [t]
    src = t.to(dist.device)
    out = [torch.empty_like(src) for _ in range(dist.world_size)]
    tdist.all_gather(out, src)
    return [o.to(t.device) for o in out]


def all_gather_rows(rows: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Every rank's rows [n_r, ...] concatenated in rank order, on the host, when ranks hold different counts
    (evaluation splits a dataset unevenly): padded to the longest, trimmed after the gather."""
    if not dist.distributed:
        return rows.cpu()
    counts = [int(c.item()) for c in all_gather(torch.tensor([len(rows)], device=dist.device), dist)]
    padded = rows.new_zeros((max(counts), *rows.shape[1:]))
    padded[: len(rows)] = rows
    return torch.cat([g[:n] for g, n in zip(all_gather(padded, dist), counts)]).cpu()


def broadcast_object(obj, dist: Dist):
    """rank 0's small python object (a run directory path, say) on every rank."""
    if not dist.distributed:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj, dist: Dist) -> list:
    """Every rank's small python object, in rank order."""
    if not dist.distributed:
        return [obj]
    out = [None] * dist.world_size
    tdist.all_gather_object(out, obj)
    return out


def barrier(dist: Dist) -> None:
    if dist.distributed:
        tdist.barrier()


def peer_failure(e: BaseException) -> str | None:
    """The one telling line of a collective that failed because another process died or stalled, else None."""
    text = str(e)
    if not (isinstance(e, tdist.DistError) or re.search(r"gloo|NCCL|Connection (reset|closed)|Timed out", text)):
        return None
    line = next((ln for ln in text.splitlines() if ln.strip()), type(e).__name__)
    line = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())  # gloo's source-file prefix
    return line.split(". ")[0][:200]


def launch(argv: list[str], nproc: int, max_restarts: int = 0) -> int:
    """Re-run `towerlab argv` in nproc processes on this machine under torch's elastic agent (what torchrun runs),
    which restarts them all up to max_restarts times when one fails. Returns 0, or 2 after a user error that the
    processes reported themselves, or 1 after a process died, naming its rank in one line."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torchrun gives each process one thread; a share of the cores is what they can use without oversubscribing
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its failure report: ours below
    # Restarted processes that share the agent's rendezvous store can read the previous attempt's addresses and
    # hang connecting to dead peers (pytorch/pytorch#135712): give each attempt a store of its own.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    os.environ[LAUNCHER_ENV] = str(os.getpid())  # the processes below are this one's children: they die with it
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=max_restarts,
        monitor_interval=0.5,
    )
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from towerlab.errors import EXIT_PREEMPTED

    try:
        elastic_launch(config, sys.executable)("-P", "-u", "-m", "towerlab", *argv)  # -P: not the cwd's modules
        return 0
    except SignalException as e:  # this launcher was signalled: its processes got the signal too and checkpointed
        print(
            f"towerlab: stopped: {e.sigval.name}; the processes checkpointed at their next step; continue with "
            f"`towerlab train --resume RUN_DIR`",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_PREEMPTED
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode in (2, EXIT_PREEMPTED):  # a user error, or a signal: the process said what it was
            return failure.exitcode
        how = (
            f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
        )
        after = f" after {max_restarts} restart(s)" if max_restarts else ""
        print(
            f"towerlab: error: process rank {rank} {how}{after}; the other processes were stopped",
            file=sys.stderr,
            flush=True,
        )
        return 1
