"""The Strategy object: chosen once from the config, and what each refuses (training under each is in test_dist
and test_pipeline)."""

import pytest
import torch

from towerlab import config, strategy
from towerlab.dist import Dist
from towerlab.errors import ConfigError
from towerlab.recipes import digits

ONE, TWO = Dist(), Dist(rank=0, world_size=2)


def _cfg(**fields):
    return config.build(digits.Config, None, fields)


@pytest.mark.parametrize(
    "name, dist, expected",
    [
        ("ddp", ONE, strategy.Strategy),
        ("ddp", TWO, strategy.DDPStrategy),
        ("fsdp", ONE, strategy.Strategy),
        ("fsdp", TWO, strategy.FSDPStrategy),
        ("pipeline", ONE, strategy.PipelineStrategy),
    ],
)
def test_chosen_from_the_config_and_the_processes(name, dist, expected):
    assert type(strategy.choose(_cfg(strategy=name), dist)) is expected


def test_what_each_refuses_in_one_line():
    with pytest.raises(ConfigError, match="ema_decay with strategy=fsdp"):
        strategy.choose(_cfg(strategy="fsdp", ema_decay=0.9), TWO)
    with pytest.raises(ConfigError, match="ema_decay=0.9 with strategy=pipeline"):  # once the model is known to split
        strategy.choose(_cfg(strategy="pipeline", ema_decay=0.9), ONE).wrap(
            torch.nn.Sequential(*(torch.nn.Linear(2, 2) for _ in range(4)))
        )
    with pytest.raises(ConfigError, match="runs in one process"):
        strategy.choose(_cfg(strategy="pipeline"), TWO)
    with pytest.raises(ConfigError, match="compile off"):
        strategy.choose(_cfg(strategy="pipeline", compile=True), ONE)


def test_processes_for_a_number_of_gpus():
    assert [strategy.processes(s, 4) for s in ("ddp", "fsdp", "pipeline", None)] == [4, 4, 1, 4]


def test_every_strategy_is_a_choice_of_the_flag_and_has_what_the_engine_calls():
    """docs/architecture.md "Adding a strategy": a Strategy subclass in STRATEGIES, its name in
    config.STRATEGY_NAMES (which --strategy offers); the engine calls only Strategy's methods."""
    from towerlab.config import TrainConfig, field_meta
    from towerlab.strategy import STRATEGIES, Strategy

    assert tuple(STRATEGIES) == field_meta(TrainConfig, "strategy")["choices"]
    calls = ("place", "wrap", "no_sync", "full_state", "load_full_state", "eval_model", "processes", "check")
    for name, cls in STRATEGIES.items():
        assert issubclass(cls, Strategy), name
        assert all(callable(getattr(cls, c, None)) for c in calls), name
