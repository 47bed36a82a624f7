"""The process of one trial: `python -m towerlab.trial OUT/trial.json`.

Reads the trial (runs/trial.py), trains it into OUT (continuing OUT's checkpoints if an earlier attempt left some)
and writes OUT/result.json. A trial whose process dies writes nothing; its run directory says so.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from towerlab.runs import Result, Trial


def run(trial: Trial, gpu: bool) -> dict:
    """Train the trial's plan into its folder, continuing what an earlier attempt of it left: here, or on the
    plan's world size of processes under the elastic agent (`towerlab train --plan`, as train.launch starts it)."""
    plan = trial.plan()  # a config the recipe refuses: one line, before torch sets up
    if plan.world_size > 1:
        return _launched(plan, gpu)
    from towerlab import engine
    from towerlab.dist import setup

    return engine.fit_plan(plan, setup(use_gpu=gpu))


def _launched(plan, gpu: bool) -> dict:
    """The plan trained on plan.world_size processes; their final metrics, as the run directory holds them."""
    from towerlab import train
    from towerlab.errors import EXIT_PREEMPTED, Preempted, TowerlabError
    from towerlab.runs import RunRecord

    devices = ["--gpus", str(plan.world_size) if gpu else "0", "--no-report"]  # reports: the search's to write
    code = train.launch(train.Request(passthrough=devices), plan)
    if code == EXIT_PREEMPTED:
        raise Preempted("stopped by a signal; the trial continues from its checkpoint when the search runs again")
    final = RunRecord.load(plan.out).final if code == 0 else None
    if final is None:
        raise TowerlabError(f"the trial's {plan.world_size} processes ended with exit code {code}; see its log.txt")
    return final


def main(argv: list[str] | None = None) -> int:
    from towerlab.errors import EXIT_PREEMPTED, Preempted, TowerlabError, missing_extra

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m towerlab.trial SPEC (the trial.json an executor wrote)", file=sys.stderr)
        return 2
    (trial, gpu), t0 = Trial.read_spec(Path(argv[0])), time.perf_counter()
    trial.clear_result()
    try:
        metrics = run(trial, gpu)
        result, code = Result(trial.name, "ok", time.perf_counter() - t0, metrics), 0
    except Preempted as e:  # stopped by a signal with a checkpoint: no result, so a re-run continues it
        print(f"towerlab: stopped: {e}", file=sys.stderr, flush=True)
        os._exit(EXIT_PREEMPTED)
    except (TowerlabError, ModuleNotFoundError) as e:
        why = missing_extra(e) if isinstance(e, ModuleNotFoundError) else str(e)
        if why is None:
            raise
        print(f"towerlab: error: {why}", file=sys.stderr)
        result, code = Result(trial.name, "failed", time.perf_counter() - t0, error=why), 2
    trial.write_result(result)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see cli.cmd_train: no C++ destructors at exit after a finished run


if __name__ == "__main__":
    raise SystemExit(main())
