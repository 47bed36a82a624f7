"""The run directory: everything a training run leaves behind, and all that downstream commands read.

  config.yaml          the final config (recipe name included): `--resume` and `eval` rebuild the run from it
  env.json             versions, world size, device, start time
  metrics.jsonl        one JSON object per log or evaluation, with its step
  final_metrics.json   the metrics at the end of training
  tb/                  TensorBoard event files
  checkpoints/         see checkpoint.py
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from towerlab.config import load_yaml, save_yaml
from towerlab.errors import ConfigError


def default_dir(recipe: str) -> Path:
    return Path("runs") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"


class Run:
    """Writes a run directory. Only rank 0 makes one; other ranks get None and write nothing."""

    def __init__(self, path: Path, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow to import

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate_metrics(resume_step)
        # purge_step drops events a killed run wrote after its last checkpoint
        self.tb = SummaryWriter(str(self.path / "tb"), purge_step=resume_step)

    def write_config(self, recipe: str, cfg) -> None:
        save_yaml({"recipe": recipe, **asdict(cfg)}, self.path / "config.yaml")

    def write_env(self, world_size: int, device: torch.device) -> None:
        env = {"torch": torch.__version__, "python": platform.python_version(), "world_size": world_size,
               "device": str(device), "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
               "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (self.path / "env.json").write_text(json.dumps(env, indent=2))

    def log(self, step: int, values: dict[str, float]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.tb.add_scalar(k, v, step)

    def write_final(self, metrics: dict) -> None:
        (self.path / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()

    def _truncate_metrics(self, step: int) -> None:
        """Keep the log lines up to the checkpoint being resumed; later ones are about to be redone."""
        path = self.path / "metrics.jsonl"
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            path.write_text("".join(ln + "\n" for ln in lines))


def read_config(run_dir: str | Path) -> tuple[str, dict]:
    """(recipe name, config fields) of a run directory."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml); pass the folder `towerlab train` wrote")
    data = load_yaml(path)
    return data.pop("recipe"), data
