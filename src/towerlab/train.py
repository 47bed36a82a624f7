"""`towerlab train` as a library call: which run, how many processes, launch or train here, leave cleanly.

    towerlab train RECIPE [flags]         a fresh run
    towerlab train --resume RUN [flags]   its continuation (flags: what may change)

The command resolves its run plan once (runs/plan.py: the recipe, the built config, the run directory, whether it
continues, the world size). One process trains it here; more than one (or --max-restarts) relaunches
`towerlab train --plan FILE` under torch's elastic agent (dist.launch): every process reads the same plan, and a
restarted one continues from the newest checkpoint by itself.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from towerlab import config
from towerlab.errors import CheckpointError, TowerlabError
from towerlab.lifetime import restart_count
from towerlab.runs.plan import Plan

if TYPE_CHECKING:
    from towerlab.dist import Dist


@dataclass
class Request:
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
    plan: str | None = None  # a plan file the launcher's processes read (train --plan FILE)
    passthrough: list[str] = field(default_factory=list)  # flags the launched processes need besides the plan

    @functools.cached_property
    def file_fields(self) -> dict:
        """The --config YAML file's fields, read once for the whole command."""
        return config.load_yaml(self.config) if self.config else {}


def continuing(req: Request) -> str | None:
    """The run directory this invocation continues: --resume, or --out when --auto-resume is given or torchrun
    restarted the processes, and the folder has checkpoints. None: a fresh run."""
    if req.resume:
        return req.resume
    if req.auto_resume or restart_count() > 0:
        from towerlab.checkpoint import of_run

        if not req.out:
            raise TowerlabError("--auto-resume and restarts need --out DIR: the run they continue lives there")
        if of_run(req.out):
            return req.out
    return None


def resolve(req: Request) -> Plan:
    """The run plan of this command, made once: the config built and validated (a fresh run's without torch),
    the run directory, whether it continues, how many processes train it."""
    run_dir = continuing(req)
    if run_dir:
        overrides = {**req.file_fields, **req.fields}
        plan = Plan.continuing(run_dir, overrides, req.allow_world_size_change)
    else:
        plan = Plan.fresh(req.recipe, req.fields, req.out, req.config, req.file_fields)
        if req.auto_resume and req.out:  # a run in stages: its stage folders are where it continues
            plan = plan.continued_where_checkpointed()
    return dataclasses.replace(plan, world_size=processes(req, plan))


def processes(req: Request, plan: Plan) -> int:
    if req.procs:
        return req.procs
    if req.gpus and req.gpus > 1:
        from towerlab.strategy import processes as per_strategy

        return per_strategy(plan.config.get("strategy"), req.gpus)
    if plan.resume:
        from towerlab.checkpoint import world_size

        return world_size(Path(plan.out)) or 1  # the world size belongs to the run
    return 1


def launch(req: Request, plan: Plan) -> int:
    """Run `towerlab train --plan FILE` in plan.world_size processes under torch's elastic agent; restarts read the
    same plan and continue from the run's newest checkpoint."""
    if not plan.out:
        from towerlab.runs import default_dir

        plan = dataclasses.replace(plan, out=str(default_dir(plan.recipe)))
    from towerlab import dist

    fd, name = tempfile.mkstemp(prefix="towerlab-plan-", suffix=".json")
    os.close(fd)
    try:
        plan.write(name)
        # --out: the plan's own, said on the command line so that `ps` shows which run a process trains
        argv = ["train", "--plan", name, "--out", plan.out, *req.passthrough]
        code = dist.launch(argv, plan.world_size, req.max_restarts)
    finally:
        Path(name).unlink(missing_ok=True)
    if code == 1:
        _where_to_continue(Path(plan.out))
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


def run_here(plan: Plan, d: Dist) -> dict:
    """Train the plan in this process (one of several under the launcher); a collective that fails because another
    process died becomes one line naming this rank."""
    from towerlab import dist, engine  # after setup: importing the engine pulls in TensorBoard

    try:
        return engine.fit_plan(plan, d)
    except RuntimeError as e:
        why = dist.peer_failure(e)
        if why is None:
            raise
        raise TowerlabError(
            f"rank {d.rank}: another process of the run stopped answering ({why}); "
            f"continue with `towerlab train --resume {plan.out or 'RUN_DIR'}`"
        ) from None


def train(req: Request, report: Callable[[dict], None] = lambda metrics: None, plan: Plan | None = None) -> int:
    """Plan (unless given the plan already), launch or train, report the final metrics on rank 0; returns the
    exit code."""
    from towerlab import dist  # torch: after the plan was made

    if req.gpus:
        import torch

        if req.gpus > torch.cuda.device_count():
            raise TowerlabError(
                f"--gpus {req.gpus} but torch sees {torch.cuda.device_count()} GPU(s); "
                f"pass --gpus 0 to train on the CPU (--procs N for N CPU processes)"
            )
    if req.plan:  # a process the launcher started: the plan its command made, continued where it checkpointed
        plan = Plan.read(req.plan).after_restart()
    plan = plan or resolve(req)
    if (plan.world_size > 1 or req.max_restarts) and not dist.under_launcher():
        return launch(req, plan)
    d = dist.setup(use_gpu=None if req.gpus is None else req.gpus > 0, timeout_s=req.dist_timeout)
    finished = False
    try:
        metrics = run_here(plan, d)
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
