import pytest

from towerlab import config
from towerlab.errors import ConfigError
from towerlab.recipes import cifar10, mnist


def test_defaults_then_yaml_then_cli(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.01\nbatch_size: 64\nweight_decay: 1e-4\n")
    cfg = config.build(mnist.Config, str(f), {"batch_size": 32})
    assert (cfg.lr, cfg.batch_size, cfg.weight_decay) == (0.01, 32, 1e-4)
    assert cfg.optimizer == "rmsprop" and cfg.rms_decay == 0.9  # the recipe's published defaults


def test_recipe_defaults_follow_the_tutorial():
    cfg = cifar10.Config()
    assert (cfg.optimizer, cfg.lr, cfg.schedule, cfg.decay_epochs, cfg.decay_rate) == ("sgd", 0.1, "exp", 350.0, 0.1)
    assert (cfg.ema_decay, cfg.weight_decay, cfg.batch_size) == (0.9999, 0.004, 128)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("lrr: 0.1\n", "unknown field 'lrr'"),
        ("batch_size: many\n", "expected int"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("lr: [\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_problem(tmp_path, text, fragment):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        config.build(mnist.Config, str(f), {})


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"precision": "fp64"}, "precision='fp64' is not allowed"),
        ({"batch_size": 0}, "batch_size=0 must be > 0"),
        ({"lr": float("nan")}, "lr=nan must be a finite number"),
        ({"ema_decay": 1.5}, "ema_decay=1.5"),
        ({"epochs": 0.0}, "set one of them"),
    ],
)
def test_bad_values_are_rejected(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        config.build(mnist.Config, None, overrides)


def test_missing_yaml_file():
    with pytest.raises(ConfigError, match="not found"):
        config.build(mnist.Config, "/nonexistent/c.yaml", {})
