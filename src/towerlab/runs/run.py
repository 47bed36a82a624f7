"""The run directory: everything a training run leaves behind, and all that downstream commands read.

  config.yaml          the final config (recipe name included): `--resume` and `eval` rebuild the run from it
  env.json             versions, world size, device, start time
  metrics.jsonl        one JSON object per log or evaluation, with its step
  final_metrics.json   the metrics at the end of training
  tb/                  TensorBoard event files
  checkpoints/         see checkpoint.py
  status.json          running (with the pid), done, failed (with the error), interrupted (Ctrl-C) or preempted (a
                       signal: checkpointed at a step boundary, to be resumed)
  .lock                held (flock) by the process training the run, with its pid: a second one is refused

RunRecord.load(dir) reads all of it back: what every command downstream of training reads runs through. A run
whose status.json says running while no process holds its lock was killed: its status reads `interrupted`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from towerlab import secrets
from towerlab.config import load_yaml, save_yaml
from towerlab.errors import ConfigError
from towerlab.files import acquire_lock, atomic_write, holder, json_text, make_dir
from towerlab.runs.best import Best

CONFIG, METRICS, FINAL, STATUS, ENV = "config.yaml", "metrics.jsonl", "final_metrics.json", "status.json", "env.json"
TRACKING = "tracking.json"  # the MLflow run this run logs to: a resumed run continues it
PREDICTIONS = "val_predictions.safetensors"  # the best evaluation's class probabilities and labels, in item order
FILES = (CONFIG, STATUS, METRICS, FINAL)  # what the board reads of a run (a link among them leaving it is refused)


def default_dir(recipe: str) -> Path:
    return Path("runs") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"


class Run:
    """Writes a run directory. Only rank 0 makes one; other ranks get None and write nothing.

    Run(path) takes the directory's lock (refused in one line while another live process holds it); open()
    starts writing: resume_step > 0 drops the log lines and TensorBoard events after that step (a killed run's
    steps that are about to be redone), 0 drops those of an earlier attempt that never checkpointed."""

    def __init__(self, path: Path):
        self.path = make_dir(path, "the run directory (--out)")
        self._lock = acquire_lock(self.path)
        self.tb = None
        self.tracker = None  # tracking.Tracker when MLflow tracking is on

    def open(self, recipe: str, cfg, resume_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow to import

        self._truncate_metrics(resume_step)
        self.write_config(recipe, cfg)  # on resume: with the fields the continuation changed
        self.write_status("running")
        self.tb = SummaryWriter(str(self.path / "tb"), purge_step=resume_step)

    def write_config(self, recipe: str, cfg) -> None:
        tmp = self.path / f".{CONFIG}.tmp"
        save_yaml({"recipe": recipe, **asdict(cfg)}, tmp)
        os.replace(tmp, self.path / CONFIG)  # a crash leaves the old config or the new, never half of one

    def write_env(self, world_size: int, device, speed: dict | None = None, data: str = "") -> dict:
        """env.json: where the run ran, the speed settings it ran with (what --fast chose, when on), and what
        produced it (provenance.py: code, packages, versions, command line, environment, the data's SHA-256)."""
        import torch

        from towerlab import provenance

        env = {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "world_size": world_size,
            "device": str(device),
            "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"speed": speed} if speed else {}),
            "provenance": provenance.record(data or None),
        }
        atomic_write(self.path / ENV, json.dumps(env, indent=2), sync=False)
        return env

    def start_tracking(self, recipe: str, cfg, world_size: int, git: dict | None) -> None:
        """MLflow, when a tracking URI is given or set (tracking.py); the run's id kept for a resume."""
        from towerlab import tracking

        uri = tracking.uri_of(cfg)
        if not uri:
            return
        self.tracker = tracking.Tracker(uri, cfg.mlflow_experiment or recipe)
        known = (_json(self.path / TRACKING) or {}).get("run_id")
        run_id = self.tracker.start(
            known, self.path.resolve().name, asdict(cfg), tracking.tags_for(recipe, cfg, world_size, git)
        )
        if run_id and run_id != known:
            atomic_write(self.path / TRACKING, json.dumps({"uri": secrets.mask_url(uri), "run_id": run_id}), sync=False)

    def log(self, step: int, values: dict[str, float]) -> None:
        with open(self.path / METRICS, "a") as f:
            f.write(json_text({"step": step, **values}) + "\n")
        if self.tracker:
            self.tracker.log(step, values)
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.tb.add_scalar(k, v, step)

    def write_final(self, metrics: dict) -> None:
        (self.path / FINAL).write_text(json_text(metrics, indent=2))
        self.tb.flush()
        self.write_status("done")
        if self.tracker:
            self.tracker.finish({k: v for k, v in metrics.items() if "/" not in k})

    def write_predictions(self, step: int, probs, labels) -> None:
        """The validation predictions of the evaluation at `step` (the best so far): what the report reads."""
        import torch
        from safetensors.torch import save

        atomic_write(
            self.path / PREDICTIONS,
            save({"probabilities": probs.contiguous(), "labels": labels.contiguous(), "step": torch.tensor([step])}),
            sync=False,
        )

    def write_status(self, status: str, error: str = "") -> None:
        """status.json, replaced atomically: running / done / failed / interrupted."""
        data = {
            "status": status,
            "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"error": error} if error else {}),
        }
        tmp = self.path / f".{STATUS}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path / STATUS)
        if self.tracker and status == "failed":  # interrupted and preempted runs continue the same MLflow run
            self.tracker.finish({}, "FAILED")

    def close(self) -> None:
        try:
            if self.tb is not None:
                self.tb.close()
        finally:  # the lock is released whatever closing the event file raised
            if self._lock is not None:
                os.close(self._lock)  # releases the flock
                self._lock = None

    def _truncate_metrics(self, step: int) -> None:
        """Keep the log lines up to the checkpoint being resumed; later ones are about to be redone. A line cut
        short by a kill is dropped too."""
        path = self.path / METRICS
        if path.is_file():
            steps = ((ln, _step(ln)) for ln in path.read_text().splitlines())
            lines = [ln for ln, at in steps if at is not None and at <= step]
            path.write_text("".join(ln + "\n" for ln in lines))
        (self.path / FINAL).unlink(missing_ok=True)  # written again when the run finishes


def _step(line: str) -> int | None:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None


def read_config(run_dir: str | Path) -> tuple[str, dict]:
    """(recipe name, config fields) of a run directory."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); pass the folder `towerlab train` wrote")
    data = load_yaml(path)
    return data.pop("recipe"), data


STATUSES = ("running", "done", "failed", "interrupted", "preempted")


@dataclass
class RunRecord:
    """A run directory read back: its config, log, final metrics, checkpoints and status."""

    path: Path
    recipe: str
    config: dict
    status: str  # one of STATUSES
    final: dict | None = None  # final_metrics.json: None until the run finishes
    error: str = ""  # what a failed run died of
    checkpoints: list[tuple[int, Path]] = field(default_factory=list)  # (step, folder), newest first

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        from towerlab.checkpoint import of_run, step_of

        path = Path(path)
        recipe, fields = read_config(path)
        final = _json(path / FINAL)
        status = _json(path / STATUS) or {}
        state = status.get("status") or ("done" if final else "interrupted")
        if state == "running" and holder(path) is None:
            state = "interrupted"  # it said running, and the process that said so is gone
        return cls(path, recipe, fields, state, final, status.get("error", ""), [(step_of(d), d) for d in of_run(path)])

    def metrics(self) -> list[dict]:
        return read_metrics(self.path)

    def env(self) -> dict:
        """env.json: where and with what the run last started ({} if it never got that far)."""
        return _json(self.path / ENV) or {}

    def tracking(self) -> dict:
        """{uri, run_id} of the MLflow run it logs to; {} without tracking."""
        return _json(self.path / TRACKING) or {}

    @property
    def best(self) -> dict:
        """The best evaluation: {metric, value, step[, test]}; {} before the run is done."""
        return Best.of(self.final).as_dict() if Best.of(self.final) else {}

    def predictions(self, step: int):
        """(probabilities [N, classes], labels [N]) of the evaluation at `step`, or None when the run kept none for it
        (another step's, a recipe that keeps none, a damaged file)."""
        from safetensors.torch import load

        try:
            kept = load((self.path / PREDICTIONS).read_bytes())
        except Exception:  # noqa: BLE001 -- missing or damaged: the report evaluates again
            return None
        if set(kept) != {"probabilities", "labels", "step"} or int(kept["step"][0]) != step:
            return None
        return kept["probabilities"], kept["labels"]

    def validation_at(self, step: int) -> dict:
        """The validation metrics logged at `step` (a checkpoint's step), without the val/ prefix; {} if none."""
        rows = [r for r in self.metrics() if r["step"] == step and any(k.startswith("val/") for k in r)]
        return {k.removeprefix("val/"): v for k, v in rows[-1].items() if k.startswith("val/")} if rows else {}

    def main_metric(self) -> float | None:
        """The best value of the recipe's main metric (from the final metrics), None before the run is done."""
        return self.best.get("value")

    def build_config(self, overrides: dict | None = None, where: str = "command line"):
        """(the recipe, its Config as this run was trained with `overrides` applied): what --resume, eval, predict
        and export rebuild the run from."""
        from towerlab import recipes
        from towerlab.config import merge

        recipe = recipes.get(self.recipe)
        saved = merge(recipe.Config(), self.config, f"{self.path}/{CONFIG}")
        return recipe, merge(saved, overrides or {}, where)


def read_metrics(path: Path) -> list[dict]:
    """Every line of a run's metrics.jsonl so far (a line cut short by a kill, or being written, is skipped);
    [] before the run has logged anything (no config needed: a search watches trials from their first line)."""
    log = Path(path) / METRICS
    lines = log.read_text().splitlines() if log.is_file() else []
    return [json.loads(ln) for ln in lines if _step(ln) is not None]


def curve(path: Path, metric: str) -> list[float]:
    """The run's validation `metric` at each of its evaluations so far."""
    key = f"val/{metric}"  # a value that was not a number is written as null: NaN here, in its place
    return [float("nan") if r[key] is None else float(r[key]) for r in read_metrics(path) if key in r]


def newest_change(path: Path) -> float:
    """When the run's log or result last changed (0: never): whether a cached page of it is stale."""
    return max((f.stat().st_mtime for f in (Path(path) / METRICS, Path(path) / FINAL) if f.is_file()), default=0)


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
