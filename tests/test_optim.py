import pytest
import torch

from towerlab import config
from towerlab.optim import ema_model, lr_factor, param_groups
from towerlab.recipes import cifar10


def _cfg(**kw):
    return config.build(config.TrainConfig, None, kw)


def test_tensorflow_exponential_decay_staircase():
    f = lr_factor(_cfg(schedule="exp", decay_epochs=2, decay_rate=0.1), steps_per_epoch=10, total_steps=100)
    assert [f(s) for s in (0, 19, 20, 39, 40)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    f = lr_factor(_cfg(schedule="exp", decay_epochs=2, decay_rate=0.1, staircase=False), 10, 100)
    assert f(10) == pytest.approx(0.1**0.5)


def test_step_cosine_onecycle_and_warmup():
    assert lr_factor(_cfg(schedule="step", decay_epochs=1, decay_rate=0.5), 4, 100)(9) == 0.25
    cos = lr_factor(_cfg(schedule="cosine"), 10, 100)
    assert cos(0) == 1 and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0)
    one = lr_factor(_cfg(schedule="onecycle"), 10, 100)
    assert one(0) < 0.1 and one(30) == pytest.approx(1) and one(100) == pytest.approx(0)
    warm = lr_factor(_cfg(warmup_steps=4), 10, 100)
    assert [warm(s) for s in range(5)] == [0.25, 0.5, 0.75, 1, 1]


def test_weight_decay_only_where_the_recipe_says():
    model = cifar10.TutorialCNN()
    groups = param_groups(model, set(cifar10.decay_params(model)), 0.004)
    decayed = {id(p) for g in groups if g["weight_decay"] for p in g["params"]}
    assert decayed == {id(model.local3.weight), id(model.local4.weight)}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_ema_follows_tensorflow_num_updates():
    model = torch.nn.Linear(1, 1, bias=False)
    ema = ema_model(model, 0.9999)
    with torch.no_grad():
        model.weight.fill_(0.0)
        ema.update_parameters(model)  # first update copies
        model.weight.fill_(1.0)
        ema.update_parameters(model)  # n = 1: decay min(0.9999, 2/11)
    assert ema.module.weight.item() == pytest.approx(1 - 2 / 11)


def test_lr_zero_means_the_optimizers_usual_rate():
    from towerlab.optim import build_optimizer
    from towerlab.recipes.configs import MlpConfig

    p = [torch.nn.Parameter(torch.zeros(2))]
    rates = {
        o: build_optimizer([{"params": p}], MlpConfig(optimizer=o)).param_groups[0]["lr"]
        for o in ("sgd", "adadelta", "adam", "nadam")
    }
    assert rates == {"sgd": 0.01, "adadelta": 1.0, "adam": 1e-3, "nadam": 2e-3}
    assert build_optimizer([{"params": p}], MlpConfig(optimizer="sgd", lr=0.5)).param_groups[0]["lr"] == 0.5
