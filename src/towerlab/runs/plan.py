"""A run plan: what one run trains, resolved once where the command starts, read unchanged by every process after.

`towerlab train` resolves its plan in the CLI (the config built and validated once: defaults < --config < flags, or
the run's own config.yaml with the continuation's changes), and processes relaunched under torchrun read it from a
file; a trial's trial.json holds its plan (runs/trial.py). `engine.fit_plan(plan)` trains it: the engine is handed
the recipe's capabilities with the plan instead of asking the registry about the recipe it was given.

A plan is JSON: names and values only. A recipe of your own (not in the registry) rides along as an object
(`Plan.of(recipe, cfg)`), which a plan file cannot carry.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from towerlab import config, recipes
from towerlab.config import merge
from towerlab.errors import ConfigError
from towerlab.files import atomic_write
from towerlab.lifetime import restart_count
from towerlab.runs.run import RunRecord

# Fields a continued run may change: none of them alters a step already taken. Anything else (the learning rate, the
# batch, the model) would make the continuation a different run: start one from these weights with --init-from.
RESUMABLE = (
    "epochs",
    "max_steps",
    "eval_every_epochs",
    "eval_every_steps",
    "eval_limit",
    "ckpt_every_steps",
    "preempt_signals",
    "requeue",
    "system_metrics",
    "mlflow",
    "mlflow_experiment",
    "mlflow_log_model",
    "keep_checkpoints",
    "log_every",
    "tb_histograms",
    "data",
    "stop_at",
    "patience",
)


@dataclass(frozen=True)
class Plan:
    recipe: str
    config: dict  # every field of the built, validated config
    out: str | None = None  # the run directory (None: runs/<recipe>-<time>, chosen on rank 0 where it trains)
    resume: bool = False  # continue `out` from its newest checkpoint that verifies
    allow_world_size_change: bool = False
    world_size: int = 1  # the processes this plan is trained on
    capabilities: tuple[str, ...] = ()  # the recipe's, as declared where the plan was made
    # a run in stages (out/<stage>): continue each stage folder that holds checkpoints and take a finished stage as it
    # is (--auto-resume, a restart, a trial's retry), since the run directory itself holds no checkpoint to find
    resume_stages: bool = False
    own: object = field(default=None, compare=False, repr=False)  # a recipe object outside the registry

    # -- making one ----------------------------------------------------------------------------------------------
    @classmethod
    def of(cls, recipe, cfg, out=None, resume: bool = False, allow_world_size_change: bool = False) -> Plan:
        """The plan of a recipe object and a config built already (the library call engine.fit makes)."""
        registered = recipe.NAME in recipes.REGISTRY
        return cls(
            recipe.NAME,
            dataclasses.asdict(cfg),
            str(out) if out else None,
            resume,
            allow_world_size_change,
            capabilities=tuple(recipes.capabilities(recipe)),
            own=None if registered else recipe,
        )

    @classmethod
    def fresh(cls, recipe: str, fields: dict, out=None, config_file=None, file_fields=None, world_size=1) -> Plan:
        """A new run of a registered recipe: defaults < the --config file < `fields`, validated here, once (torch is
        not imported: a bad value is said in a fraction of a second)."""
        cfg = config.build(recipes.config_class(recipe), config_file, fields, file_fields)
        caps = tuple(recipes.capabilities(recipe))
        return cls(recipe, dataclasses.asdict(cfg), str(out) if out else None, world_size=world_size, capabilities=caps)

    @classmethod
    def continuing(
        cls, run_dir, overrides: dict | None = None, allow_world_size_change: bool = False, world_size: int = 1
    ) -> Plan:
        """The continuation of the run in run_dir, `overrides` applied to what may change (RESUMABLE)."""
        recipe, cfg = resume_config(run_dir, overrides)
        plan = cls.of(recipe, cfg, run_dir, resume=True, allow_world_size_change=allow_world_size_change)
        return dataclasses.replace(plan, world_size=world_size)

    def continued_where_checkpointed(self) -> Plan:
        """This plan, continuing its run directory if that holds checkpoints already: what a process restarted by
        torchrun and a trial's second attempt train (the earlier attempt's steps are not taken again)."""
        from towerlab import checkpoint

        if self.can("stages") and not self.resume:
            return dataclasses.replace(self, resume_stages=True)
        if self.resume or not self.out or not checkpoint.of_run(self.out):
            return self
        return dataclasses.replace(self, resume=True)

    def after_restart(self) -> Plan:
        return self.continued_where_checkpointed() if restart_count() > 0 else self

    # -- using one -----------------------------------------------------------------------------------------------
    def recipe_object(self):
        return self.own if self.own is not None else recipes.get(self.recipe)

    def built(self):
        """The config, as the plan holds it (validated when the plan was made: its types checked again, no more)."""
        return merge(self.recipe_object().Config(), self.config, "the run plan")

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    # -- on disk -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        if self.own is not None:
            raise ConfigError(f"{self.recipe} is not a registered recipe: its plan cannot be written to a file")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "own"}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(**{**d, "capabilities": tuple(d.get("capabilities", ()))})

    def write(self, path: str | Path) -> Path:
        return atomic_write(Path(path), json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def read(cls, path: str | Path) -> Plan:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: not a run plan towerlab wrote ({e}); start the command again") from None


def resume_config(run_dir: str | Path, overrides: dict | None = None):
    """(recipe, config) of a run directory with `overrides` applied; an override of a field that would change the
    steps already taken is refused in one line naming it."""
    record = RunRecord.load(run_dir)
    recipe, saved = record.build_config()
    cfg = merge(saved, overrides or {}, "resume overrides")
    for f in dataclasses.fields(cfg):
        old, new = getattr(saved, f.name), getattr(cfg, f.name)
        if old != new and f.name not in RESUMABLE:
            raise ConfigError(
                f"--resume cannot change {f.name} ({old!r} -> {new!r}): it would change the steps "
                f"already taken; only {', '.join(RESUMABLE)} may change. Start a new run from these "
                f"weights with --init-from {run_dir} instead"
            )
    cfg.validate()
    return recipe, cfg
