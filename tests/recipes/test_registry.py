"""Every registered recipe gets the same forward/backward/shape checks, on fixture data in its real format."""

import math

import pytest
import torch

from towerlab import config
from towerlab.data.images import export_samples
from towerlab.dist import Dist
from towerlab.infer import load_inputs
from towerlab.recipes import REGISTRY, get, summary

DATA = {"mnist": "mnist_dir", "cifar10": "cifar_bin_dir", "digits": None}


def _cfg(name, request):
    fixture = DATA[name]
    data = str(request.getfixturevalue(fixture)) if fixture else ""
    return config.build(get(name).Config, None, {"data": data, "batch_size": 16})


def test_every_recipe_has_fixture_data():
    assert set(DATA) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_forward_backward_shapes(name, request):
    recipe = get(name)
    cfg = _cfg(name, request)
    torch.manual_seed(0)
    model = recipe.build_model(cfg)
    train, val = recipe.build_data(cfg, Dist())
    x, y = next(iter(train))
    assert x.dtype == torch.float32 and x.shape[0] == 16 and y.shape == (16,)
    logits = model(x)
    assert logits.shape == (16, len(recipe.class_names(cfg)))
    loss, _ = recipe.loss(model, (x, y))
    loss.backward()
    assert math.isfinite(loss.item())
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_evaluate_and_predict(name, request, tmp_path):
    recipe = get(name)
    cfg = _cfg(name, request)
    model = recipe.build_model(cfg).eval()
    train, val = recipe.build_data(cfg, Dist())
    metrics = recipe.evaluate(model, val, Dist())
    assert 0.0 <= metrics[recipe.MAIN_METRIC[0]] <= 1.0 and math.isfinite(metrics["loss"])
    paths = export_samples(*val.tensors[:2], recipe.class_names(cfg), tmp_path, 3)
    inputs = load_inputs(recipe, cfg, [str(p) for p in paths])
    assert inputs.shape[1:] == next(iter(val))[0].shape[1:]
    probs = recipe.predict(model, inputs)
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_one_line_summary(name):
    assert summary(get(name)).startswith(f"{name}: ")
