"""A trial: one run that an executor starts as its own process (a search's genome, a job, an ensemble member).

Its folder is a run directory (run.py) plus
  trial.json   what to train: name, recipe, overrides (the search's genome), whether on a GPU, and the run plan
               made from them when the trial was started (runs/plan.py), which the trial process trains
  result.json  how it ended: ok (with the run's final metrics) or failed (with why); absent while it runs
  pruned.json  where a search stopped it early: metric, evaluation (1-based), value
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from towerlab.errors import ConfigError
from towerlab.files import atomic_write, json_text
from towerlab.runs.best import Best
from towerlab.runs.plan import Plan
from towerlab.runs.run import RunRecord, curve

SPEC, RESULT, PRUNED, LOG = "trial.json", "result.json", "pruned.json", "log.txt"


@dataclass
class Result:
    name: str
    status: str  # ok, failed, pruned (stopped early by --prune), or done (finished by an earlier run)
    seconds: float
    metrics: dict = field(default_factory=dict)  # the run's final metrics
    error: str = ""
    device: str = ""  # where it ran (the executor knows; the trial process does not)

    def fitness(self, metric: str) -> float | None:
        """The run's best value of its main metric (None when the trial failed)."""
        best = Best.of(self.metrics)
        value = best.value if best else self.metrics.get(metric)
        return value if self.status in ("ok", "done", "pruned") else None


@dataclass
class Trial:
    name: str
    recipe: str
    overrides: dict
    out: Path

    # -- what to train -------------------------------------------------------------------------------------------
    def write_spec(self, gpu: bool, procs: int = 1) -> Path:
        """trial.json, with the trial's run plan. A config the overrides cannot make (a search's genome the recipe
        refuses) is the trial's own failure, said in its result, not the search's."""
        self.out.mkdir(parents=True, exist_ok=True)
        spec = {"name": self.name, "recipe": self.recipe, "overrides": self.overrides, "gpu": gpu}
        try:
            spec["plan"] = Plan.fresh(self.recipe, self.overrides, str(self.out), world_size=procs).to_dict()
        except ConfigError as e:
            spec["error"] = str(e)
        return atomic_write(self.out / SPEC, json.dumps(spec, indent=1).encode())

    @classmethod
    def read_spec(cls, path: Path) -> tuple[Trial, bool]:
        """(the trial, whether on a GPU) from its trial.json."""
        spec = json.loads(Path(path).read_text())
        return cls(spec["name"], spec["recipe"], spec["overrides"], Path(path).parent), spec.get("gpu", False)

    def plan(self) -> Plan:
        """What the trial process trains: the plan in trial.json (a trial.json of an older towerlab holds none: made
        from its overrides now), continuing the run directory where an earlier attempt checkpointed."""
        spec = json.loads((self.out / SPEC).read_text())
        if "error" in spec:
            raise ConfigError(spec["error"])
        plan = Plan.from_dict(spec["plan"]) if "plan" in spec else Plan.fresh(self.recipe, self.overrides, self.out)
        return plan.continued_where_checkpointed()

    @classmethod
    def of_folder(cls, out: Path) -> Trial | None:
        return cls.read_spec(out / SPEC)[0] if (out / SPEC).is_file() else None

    @property
    def log(self) -> Path:
        return self.out / LOG

    # -- how it ended ----------------------------------------------------------------------------------------------
    def result(self) -> Result | None:
        try:
            return Result(**json.loads((self.out / RESULT).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write_result(self, result: Result) -> None:
        atomic_write(self.out / RESULT, json_text(asdict(result), indent=1).encode())

    def clear_result(self) -> None:
        (self.out / RESULT).unlink(missing_ok=True)

    def record(self) -> RunRecord | None:
        """Its run directory read back; None before the trial got as far as writing its config."""
        try:
            return RunRecord.load(self.out)
        except ConfigError:
            return None

    # -- pruning ---------------------------------------------------------------------------------------------------
    def pruned(self) -> dict | None:
        try:
            return json.loads((self.out / PRUNED).read_text())
        except (OSError, ValueError):
            return None

    def write_pruned(self, metric: str, evaluation: int, value: float) -> dict:
        record = {"metric": metric, "evaluation": evaluation, "value": value}
        atomic_write(self.out / PRUNED, json_text(record).encode())
        return record

    def curve(self, metric: str) -> list[float]:
        """The validation metric at each evaluation so far (cut at its pruning point, if pruned)."""
        values, pruned = curve(self.out, metric), self.pruned()
        return values[: pruned["evaluation"]] if pruned else values
