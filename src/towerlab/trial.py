"""One trial of a search, a job or an ensemble member: `python -m towerlab.trial OUT/trial.json`.

The one way anything but the user trains: the executors start this module in a fresh process (pinned to its
device by CUDA_VISIBLE_DEVICES before torch starts), it calls `fit` (or continues the trial's own checkpoints),
and writes OUT/result.json, a TrialResult. A trial whose process dies writes nothing; its run directory says so.

    {"name": "t0", "recipe": "digits", "overrides": {"lr": 0.01}, "gpu": false}
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from towerlab.files import atomic_write


@dataclass
class TrialSpec:
    name: str
    recipe: str
    overrides: dict
    gpu: bool = False

    def write(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "trial.json", json.dumps(asdict(self), indent=1).encode())
        return out / "trial.json"


@dataclass
class TrialResult:
    name: str
    status: str  # ok or failed
    seconds: float
    metrics: dict = field(default_factory=dict)  # the run's final metrics
    error: str = ""

    @classmethod
    def read(cls, out: Path) -> "TrialResult | None":
        try:
            return cls(**json.loads((out / "result.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


def run(spec: TrialSpec, out: Path) -> dict:
    """Train the trial into `out`, continuing its checkpoints if an earlier attempt left some."""
    from towerlab import config, engine, recipes
    from towerlab.checkpoint import folders
    from towerlab.dist import setup

    dist = setup(use_gpu=spec.gpu)
    if folders(out / "checkpoints"):
        return engine.resume(out, dist, spec.overrides)
    recipe = recipes.get(spec.recipe)
    return engine.fit_stages(recipe, config.build(recipe.Config, None, spec.overrides), dist, out=out)


def main(argv: list[str] | None = None) -> int:
    from towerlab.errors import TowerlabError, missing_extra

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m towerlab.trial OUT/trial.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    spec, out, t0 = TrialSpec(**json.loads(path.read_text())), path.parent, time.perf_counter()
    (out / "result.json").unlink(missing_ok=True)
    try:
        metrics = run(spec, out)
        result, code = TrialResult(spec.name, "ok", time.perf_counter() - t0, metrics), 0
    except (TowerlabError, ModuleNotFoundError) as e:
        why = missing_extra(e) if isinstance(e, ModuleNotFoundError) else str(e)
        if why is None:
            raise
        print(f"towerlab: error: {why}", file=sys.stderr)
        result, code = TrialResult(spec.name, "failed", time.perf_counter() - t0, error=why), 2
    atomic_write(out / "result.json", json.dumps(asdict(result), indent=1).encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see cli.cmd_train: no C++ destructors at exit after a finished run


if __name__ == "__main__":
    raise SystemExit(main())
