"""Watching a network train: per-layer histograms and statistics in TensorBoard, read back from the event files."""

import math

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from towerlab import config
from towerlab.engine import fit
from towerlab.recipes import digits


def _events(run):
    events = EventAccumulator(str(run / "tb"), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    return events


def test_histograms_every_n_steps_for_each_layer(tmp_path):
    cfg = config.build(
        digits.Config, None, {"max_steps": 6, "tb_histograms": 3, "log_every": 3, "eval_every_epochs": 0.0}
    )
    fit(digits, cfg, out=tmp_path / "run")
    events = _events(tmp_path / "run")
    hists, scalars = set(events.Tags()["histograms"]), set(events.Tags()["scalars"])
    model = digits.build_model(cfg)
    params = [n for n, p in model.named_parameters()]
    leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    for name in params:
        assert {f"weights/{name}", f"gradients/{name}"} <= hists, name
        assert {f"weight_norm/{name}", f"gradient_norm/{name}", f"update_ratio/{name}"} <= scalars, name
    assert {f"activations/{name}" for name in leaves} <= hists
    assert [e.step for e in events.Histograms(f"weights/{params[0]}")] == [3, 6]  # on the logging steps only
    relus = [n for n in leaves if type(dict(model.named_modules())[n]).__name__ == "ReLU"]
    for name in relus:
        zero = [e.value for e in events.Scalars(f"activation_zero_fraction/{name}")]
        assert zero and all(0.0 < z < 1.0 for z in zero), (name, zero)
    norms = [e.value for e in events.Scalars("gradient_norm/global")]
    assert len(norms) == 2 and all(math.isfinite(v) and v > 0 for v in norms)
    ratios = [e.value for n in params for e in events.Scalars(f"update_ratio/{n}")]
    assert all(0 < r < 1 for r in ratios)  # lr 1e-3 RMSProp: small relative steps


def test_off_by_default_writes_none(tmp_path):
    fit(
        digits,
        config.build(digits.Config, None, {"max_steps": 3, "log_every": 3, "eval_every_epochs": 0.0}),
        out=tmp_path / "run",
    )
    assert not _events(tmp_path / "run").Tags()["histograms"]


def test_under_ddp_and_fsdp_rank_0_writes_whole_tensors(tmp_path):
    """Two real gloo processes: DDP (gradients already averaged) and FSDP (shards gathered on the logging steps)."""
    from helpers import run_cli

    numel = {n: p.numel() for n, p in digits.build_model(config.build(digits.Config, None, {})).named_parameters()}
    for strategy in ("ddp", "fsdp"):
        run = tmp_path / strategy
        run_cli(
            "train",
            "digits",
            "--gpus",
            "0",
            "--procs",
            "2",
            "--strategy",
            strategy,
            "--max-steps",
            "4",
            "--tb-histograms",
            "2",
            "--log-every",
            "2",
            "--eval-every-epochs",
            "0",
            "--out",
            str(run),
        )
        events = _events(run)
        for name, n in numel.items():
            weights = events.Histograms(f"weights/{name}")
            assert [e.step for e in weights] == [2, 4] and weights[0].histogram_value.num == n, (strategy, name)
            assert events.Histograms(f"gradients/{name}")[0].histogram_value.num == n, (strategy, name)


def test_under_the_pipeline_strategy(tmp_path):
    cfg = config.build(
        digits.Config,
        None,
        {"max_steps": 2, "tb_histograms": 2, "log_every": 2, "eval_every_epochs": 0.0, "strategy": "pipeline"},
    )
    fit(digits, cfg, out=tmp_path / "run")
    hists = set(_events(tmp_path / "run").Tags()["histograms"])
    assert {f"gradients/{n}" for n, _ in digits.build_model(cfg).named_parameters()} <= hists
    assert any(t.startswith("activations/") for t in hists)
