"""Every registered recipe gets the same forward/backward/shape checks, on fixture data in its real format, and
every capability a recipe declares is checked against its protocol."""

import math

import pytest
import torch

from towerlab import config
from towerlab.data.images import export_samples, read_image
from towerlab.dist import Dist
from towerlab.errors import ConfigError
from towerlab.infer import load_inputs
from towerlab.recipes import ENTRIES, REGISTRY, get, has, require, summary
from towerlab.recipes.contract import CAPABILITIES, Recipe, Step

DATA = {
    "mnist": "mnist_dir",
    "mlp": "mnist_dir",
    "cifar10": "cifar_bin_dir",
    "digits": None,
    "fcn32s": "camvid_dir",
    "fcn16s": "camvid_dir",
    "fcn8s": "camvid_dir",
    "segdec": "kolektor_dir",
    "chemvae": "smiles_csv",
    "chemaae": "smiles_csv",
    "smiles-lstm": "smiles_csv",
}
FCN_SMALL = {"width": 0.125, "fc_channels": 16, "batch_size": 4}
SMALL = {
    "fcn32s": FCN_SMALL,
    "fcn16s": FCN_SMALL,
    "fcn8s": FCN_SMALL,  # fast enough for a CPU test
    "segdec": {"height": 64, "width": 64, "feature_channels": 16, "batch_size": 4, "stage": "joint"},
    "chemvae": {"max_len": 64, "latent": 8, "batch_size": 4, "properties": "NR-AR"},
    "chemaae": {"max_len": 64, "latent": 8, "batch_size": 4, "gru_hidden": 32},
    "smiles-lstm": {"max_len": 64, "hidden": 32, "embedding": 8, "eval_samples": 4},
}


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
    data = recipe.build_data(cfg, Dist())
    model = recipe.build_model(cfg, data)
    batch = next(iter(data.train))
    assert all(len(t) == cfg.batch_size for t in batch)
    loss, logs = recipe.loss(model, batch, Step(0, 10, 0.0))
    assert all(v.ndim == 0 and not v.requires_grad for v in logs.values())
    loss.backward()
    assert math.isfinite(loss.item())
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_evaluate_and_predict(name, request, tmp_path):
    recipe = get(name)
    cfg = _cfg(name, request)
    data = recipe.build_data(cfg, Dist())
    model = recipe.build_model(cfg, data).eval()
    val = data.val
    metrics = recipe.evaluate(model, val, Dist())
    assert all(math.isfinite(v) for v in metrics.values())
    if not (has(name, "classify") or has(name, "segment")):
        return
    assert 0.0 <= metrics[recipe.MAIN_METRIC[0]] <= 1.0
    paths = export_samples(val.tensors[0], val.tensors[-1], recipe.class_names(cfg), tmp_path, 3)
    if has(name, "segment"):  # any size: one image at a time, at its own size
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
    assert summary(name) and "\n" not in summary(name) and get(name).NAME == name


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_a_recipe_honours_the_contract_and_every_capability_it_declares(entry):
    recipe = get(entry.name)
    assert isinstance(recipe, Recipe)
    for capability in entry.capabilities:
        protocol, _ = CAPABILITIES[capability]
        assert isinstance(recipe, protocol), f"{entry.name} declares {capability} but is not a {protocol.__name__}"


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_asking_a_recipe_for_a_capability_it_lacks_is_one_line(capability):
    lacking = [e.name for e in ENTRIES if capability not in e.capabilities]
    able = [e.name for e in ENTRIES if capability in e.capabilities]
    assert able or capability in ("optimizer", "train_step"), f"no recipe has {capability}"  # hooks for your own
    for name in lacking:
        with pytest.raises(
            ConfigError, match=f"needs a recipe that can .*; {name} cannot .* Recipes that can: {', '.join(able)}$"
        ):
            require(name, capability, command="this")
    for name in able:
        require(name, capability, command="this")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_torch_free_config_is_the_recipes_own(name):
    from towerlab.recipes import config_class

    assert get(name).Config is config_class(name)


def test_fcn_variants_are_one_family_at_three_strides():
    assert [get(n).Config.STRIDE for n in ("fcn32s", "fcn16s", "fcn8s")] == [32, 16, 8]
    assert get("fcn16s").build_model is get("fcn8s").build_model and get("fcn16s") is get("fcn16s")


def test_a_recipe_of_your_own_with_its_own_optimizer_and_training_step(tmp_path):
    """A recipe outside the registry declares CAPABILITIES; the engine then calls its optimizer and its step."""
    import json
    import types

    from towerlab.engine import fit
    from towerlab.recipes import digits

    steps, built = [], []
    own = types.ModuleType("own")
    own.__dict__.update(
        {k: getattr(digits, k) for k in ("Config", "MAIN_METRIC", "build_data", "build_model", "loss", "evaluate")}
    )
    own.NAME, own.CAPABILITIES = "own-digits", ("optimizer", "train_step")

    def build_optimizer(cfg, groups):
        built.append(torch.optim.Adam(groups, lr=cfg.lr))
        return built[-1]

    def train_step(model, batch, step, optimizer, precision):
        optimizer.zero_grad(set_to_none=True)
        loss, _ = digits.loss(model, batch, step)
        precision.backward(loss)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
        precision.step(optimizer, model.parameters())
        steps.append(step.step)
        return {"loss": loss.detach(), "grad_norm": norm.detach()}

    own.build_optimizer, own.train_step = build_optimizer, train_step
    assert isinstance(own, Recipe) and has(own, "train_step") and not has(own, "classify")
    cfg = config.build(digits.Config, None, {"max_steps": 6, "log_every": 3, "eval_every_epochs": 0.0, "lr": 1e-3})
    fit(own, cfg, out=tmp_path / "run")
    assert steps == list(range(6)) and len(built) == 1
    assert all(len(s) for s in built[0].state.values())  # the optimizer that stepped is the recipe's Adam
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl") if "train/loss" in line]
    assert [r["step"] for r in rows] == [3, 6] and all(r["train/grad_norm"] > 0 for r in rows)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_recipe_can_be_watched(name, request, tmp_path):
    """--tb-histograms on each recipe: its layers' outputs, gradients and weights reach TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from towerlab.watch import Watcher

    recipe = get(name)
    cfg = _cfg(name, request)
    data = recipe.build_data(cfg, Dist())
    model = recipe.build_model(cfg, data)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    writer = SummaryWriter(str(tmp_path))
    watch = Watcher(model, 1, writer)
    assert watch.due(0)
    watch.begin()
    loss, _ = recipe.loss(model, next(iter(data.train)), Step(0, 10, 0.0))
    loss.backward()
    opt.step()
    watch.end(1)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    hists = events.Tags()["histograms"]
    trained = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
    assert {f"gradients/{n}" for n in trained} <= set(hists) and any(t.startswith("activations/") for t in hists)
