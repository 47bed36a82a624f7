"""Every registered recipe gets the same forward/backward/shape checks, on fixture data in its real format."""

import math

import pytest
import torch

from towerlab import config
from towerlab.data.images import export_samples, read_image
from towerlab.dist import Dist
from towerlab.infer import load_inputs
from towerlab.recipes import REGISTRY, get, summary

DATA = {"mnist": "mnist_dir", "mlp": "mnist_dir", "cifar10": "cifar_bin_dir", "digits": None, "fcn32s": "camvid_dir",
        "fcn16s": "camvid_dir", "fcn8s": "camvid_dir", "segdec": "kolektor_dir", "chemvae": "smiles_csv"}
FCN_SMALL = {"width": 0.125, "fc_channels": 16, "batch_size": 4}
SMALL = {"fcn32s": FCN_SMALL, "fcn16s": FCN_SMALL, "fcn8s": FCN_SMALL,  # fast enough for a CPU test
         "segdec": {"height": 64, "width": 64, "feature_channels": 16, "batch_size": 4, "stage": "joint"},
         "chemvae": {"max_len": 64, "latent": 8, "batch_size": 4, "properties": "NR-AR"}}
NOT_IMAGES = {"chemvae"}  # reads SMILES: no image files to predict on


def _cfg(name, request):
    fixture = DATA[name]
    data = str(request.getfixturevalue(fixture)) if fixture else ""
    return config.build(get(name).Config, None, {"data": data, "batch_size": 16, **SMALL.get(name, {})})


def test_every_recipe_has_fixture_data():
    assert set(DATA) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_forward_backward_shapes(name, request):
    recipe = get(name)
    cfg = _cfg(name, request)
    torch.manual_seed(0)
    model = recipe.build_model(cfg)
    train, val = recipe.build_data(cfg, Dist())
    batch = next(iter(train))
    assert all(len(t) == cfg.batch_size for t in batch)
    loss, _ = recipe.loss(model, batch)
    loss.backward()
    assert math.isfinite(loss.item())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_evaluate_and_predict(name, request, tmp_path):
    recipe = get(name)
    cfg = _cfg(name, request)
    model = recipe.build_model(cfg).eval()
    train, val = recipe.build_data(cfg, Dist())
    metrics = recipe.evaluate(model, val, Dist())
    assert all(math.isfinite(v) for v in metrics.values())
    if name in NOT_IMAGES:
        assert recipe.predict(model, next(iter(val))[0]).shape[1] == len(recipe.class_names(cfg))
        return
    assert 0.0 <= metrics[recipe.MAIN_METRIC[0]] <= 1.0
    paths = export_samples(val.tensors[0], val.tensors[-1], recipe.class_names(cfg), tmp_path, 3)
    if recipe.input_shape(cfg) is None:  # any size: one image at a time, at its own size
        inputs = [recipe.prepare(cfg, read_image(p, 3)[None]) for p in paths]
    else:
        inputs = [load_inputs(recipe, cfg, [str(p) for p in paths])]
        assert inputs[0].shape[1:] == next(iter(val))[0].shape[1:]
    for x in inputs:
        probs = recipe.predict(model, x)
        assert probs.shape[:2] == (len(x), len(recipe.class_names(cfg)))
        assert torch.allclose(probs.sum(1), torch.ones_like(probs.sum(1)), atol=1e-5)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_one_line_summary(name):
    assert summary(get(name)).startswith(f"{name}: ")
