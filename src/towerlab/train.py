"""`towerlab train` as a library call: which run, how many processes, launch or train here, leave cleanly.

    towerlab train RECIPE [flags]         a fresh run
    towerlab train --resume RUN [flags]   its continuation (flags: what may change)

Process planning lives here, not in the CLI: a continued run keeps the world size it was trained with; more than
one process (or --max-restarts) relaunches the same command under torch's elastic agent (dist.launch), whose
restarted processes continue from the newest checkpoint by themselves.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from towerlab import config, dist, recipes
from towerlab.errors import CheckpointError, TowerlabError


@dataclass
class Request:
    argv: list[str]  # the command's own arguments, for relaunching it in several processes
    recipe: str | None = None
    resume: str | None = None
    config: str | None = None  # a YAML file of field values
    gpus: int | None = None  # None: one if a GPU is visible
    procs: int | None = None
    out: str | None = None
    max_restarts: int = 0
    auto_resume: bool = False
    dist_timeout: float = 300.0
    allow_world_size_change: bool = False
    fields: dict = field(default_factory=dict)  # config fields given on the command line

    @functools.cached_property
    def file_fields(self) -> dict:
        """The --config YAML file's fields, read once for the whole command."""
        return config.load_yaml(self.config) if self.config else {}


def continuing(req: Request) -> str | None:
    """The run directory this invocation continues: --resume, or --out when --auto-resume is given or torchrun
    restarted the processes, and the folder has checkpoints. None: a fresh run."""
    from towerlab.checkpoint import of_run

    if req.resume:
        return req.resume
    if req.auto_resume or dist.restart_count() > 0:
        if not req.out:
            raise TowerlabError("--auto-resume and restarts need --out DIR: the run they continue lives there")
        if of_run(req.out):
            return req.out
    return None


def strategy_name(req: Request) -> str | None:
    """The run's strategy before any process starts."""
    from towerlab.runs import read_config

    if "strategy" in req.fields:
        return req.fields["strategy"]
    if req.resume:
        return read_config(req.resume)[1].get("strategy")
    return req.file_fields.get("strategy")


def processes(req: Request, run_dir: str | None) -> int:
    if req.procs:
        return req.procs
    if req.gpus and req.gpus > 1:
        from towerlab.strategy import processes as per_strategy

        return per_strategy(strategy_name(req), req.gpus)
    if run_dir:
        from towerlab.checkpoint import world_size

        return world_size(Path(run_dir)) or 1  # the world size belongs to the run
    return 1


def launch(req: Request, nproc: int, run_dir: str | None) -> int:
    """Run this same command in nproc processes under torch's elastic agent; restarts find the run by --out."""
    argv = list(req.argv)
    if not req.out and not req.resume:
        from towerlab.runs import default_dir

        argv += ["--out", str(default_dir(req.recipe))]
    if run_dir and not req.procs and not req.gpus:
        argv += ["--procs", str(nproc)]  # said aloud, so every restart agrees
    code = dist.launch(["train", *argv], nproc, req.max_restarts)
    run_dir = run_dir or config.flag_value(argv, "--out")
    if code == 1 and run_dir:
        _where_to_continue(Path(run_dir))
    return code


def _where_to_continue(run_dir: Path) -> None:
    from towerlab.checkpoint import find, step_of

    try:
        step = step_of(find(run_dir, verify=False, quiet=True))
        print(
            f"towerlab: the run in {run_dir} keeps its checkpoint at step {step}; continue it with "
            f"`towerlab train --resume {run_dir}`",
            file=sys.stderr,
        )
    except CheckpointError:
        print(f"towerlab: the run in {run_dir} had no checkpoint yet; start it again", file=sys.stderr)


def run_here(req: Request, run_dir: str | None, d: dist.Dist) -> dict:
    """Train in this process (one of several under the launcher); a collective that fails because another process
    died becomes one line naming this rank."""
    try:
        return fit_or_continue(
            req.recipe, req.fields, req.out, d, req.config, run_dir, req.allow_world_size_change, req.file_fields
        )
    except RuntimeError as e:
        why = dist.peer_failure(e)
        if why is None:
            raise
        raise TowerlabError(
            f"rank {d.rank}: another process of the run stopped answering ({why}); "
            f"continue with `towerlab train --resume {run_dir or req.out or 'RUN_DIR'}`"
        ) from None


def fit_or_continue(
    recipe: str | None,
    fields: dict,
    out: str | Path | None,
    d: dist.Dist,
    config_file: str | None = None,
    run_dir: str | Path | None = None,
    allow_world_size_change: bool = False,
    file_fields: dict | None = None,
) -> dict:
    """The one "start fresh or continue" (train and every trial): continue run_dir with the given fields as the
    continuation's overrides, or train `recipe` afresh into out (in stages, for a recipe that has them)."""
    from towerlab import engine  # after setup: importing the engine pulls in TensorBoard

    if run_dir:
        if file_fields is None:
            file_fields = config.load_yaml(config_file) if config_file else {}
        overrides = {**file_fields, **fields}
        return engine.resume(run_dir, d, overrides, allow_world_size_change)
    r = recipes.get(recipe)
    return engine.fit_stages(r, config.build(r.Config, config_file, fields, file_fields), d, out=out)


def train(req: Request, report: Callable[[dict], None] = lambda metrics: None) -> int:
    """Plan, launch or train, report the final metrics on rank 0; returns the exit code."""
    if req.gpus:
        import torch

        if req.gpus > torch.cuda.device_count():
            raise TowerlabError(
                f"--gpus {req.gpus} but torch sees {torch.cuda.device_count()} GPU(s); "
                f"pass --gpus 0 to train on the CPU (--procs N for N CPU processes)"
            )
    run_dir = continuing(req)
    nproc = processes(req, run_dir)
    if (nproc > 1 or req.max_restarts) and not dist.under_launcher():
        return launch(req, nproc, run_dir)
    d = dist.setup(use_gpu=None if req.gpus is None else req.gpus > 0, timeout_s=req.dist_timeout)
    finished = False
    try:
        metrics = run_here(req, run_dir, d)
        finished = True
    finally:
        dist.teardown(finished)
    if d.is_main:
        report(metrics)
    if dist.under_launcher():
        # Everything is written and closed. Leave without running C++ static destructors: under load, a worker
        # process of torchrun sometimes aborts in them at exit ("terminate called without an active exception"),
        # which fails a run that finished.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
