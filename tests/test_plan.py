"""The run plan: made once where a command starts, written and read back unchanged (the launcher's processes, a
trial), and the engine handed what it needs with it instead of asking the registry."""

import ast
import json
from pathlib import Path

import pytest

import towerlab
from towerlab import config, recipes
from towerlab.errors import ConfigError
from towerlab.runs import Trial
from towerlab.runs.plan import Plan


@pytest.mark.parametrize("name", sorted(recipes.REGISTRY))
def test_every_recipe_s_plan_reads_back_to_the_config_it_was_made_from(name, tmp_path):
    plan = Plan.fresh(name, {"seed": 7}, tmp_path / "run")
    again = Plan.read(plan.write(tmp_path / "plan.json"))
    assert again == plan and again.capabilities == recipes.capabilities(name)
    assert again.built() == config.build(recipes.config_class(name), None, {"seed": 7})


def test_one_train_command_builds_its_config_once_and_reads_its_file_once(tmp_path, monkeypatch):
    from towerlab.cli import main

    yaml_file = tmp_path / "digits.yaml"
    yaml_file.write_text("lr: 0.001\nmax_steps: 3\n")
    calls = {"build": 0, "yaml": 0}
    build, load_yaml = config.build, config.load_yaml

    def counted_build(*a, **k):
        calls["build"] += 1
        return build(*a, **k)

    def counted_yaml(path):
        calls["yaml"] += Path(path) == yaml_file
        return load_yaml(path)

    monkeypatch.setattr(config, "build", counted_build)
    monkeypatch.setattr(config, "load_yaml", counted_yaml)
    argv = ["train", "digits", "--config", str(yaml_file), "--gpus", "0", "--out", str(tmp_path / "r"), "--no-report"]
    assert main([*argv, "--eval-every-epochs", "0", "--log-every", "3"]) == 0
    assert calls == {"build": 1, "yaml": 1}
    assert json.loads((tmp_path / "r" / "final_metrics.json").read_text())["step"] == 3


def test_a_trial_json_holds_its_plan_and_one_without_still_trains(tmp_path):
    trial = Trial("t0", "mlp", {"lr": 0.01, "max_steps": 2}, tmp_path / "t0")
    spec = json.loads(trial.write_spec(gpu=False).read_text())
    assert spec["plan"]["config"]["lr"] == 0.01 and spec["plan"]["out"] == str(tmp_path / "t0")
    assert trial.plan() == Plan.from_dict(spec["plan"]) and not trial.plan().resume
    del spec["plan"]  # a trial.json of an older towerlab: the plan is made from its overrides
    (tmp_path / "t0" / "trial.json").write_text(json.dumps(spec))
    assert trial.plan().built().lr == 0.01


def test_a_trial_whose_overrides_the_recipe_refuses_fails_alone_naming_the_field(tmp_path):
    trial = Trial("bad", "mlp", {"lr": -1.0}, tmp_path / "bad")
    trial.write_spec(gpu=False)  # the search that wrote it goes on
    with pytest.raises(ConfigError, match="lr=-1.0 must be >= 0"):
        trial.plan()


def test_the_engine_never_asks_the_registry_about_the_recipe_it_was_handed():
    engine = Path(towerlab.__file__).parent / "engine"
    asked = []
    for path in engine.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "towerlab"
                and any(a.name == "recipes" for a in node.names)
            ):
                asked.append(path.name)
            if isinstance(node, ast.ImportFrom) and node.module in ("towerlab.recipes",):
                asked.append(path.name)
    assert asked == []
