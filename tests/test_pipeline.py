"""--strategy pipeline: the model cut into stages, micro-batches flowing through them, trains as one device does."""

import json

import pytest
import torch
from safetensors.torch import load_file
from test_dist import ARGS
from torch import nn

from towerlab import checkpoint
from towerlab.errors import ConfigError
from towerlab.pipeline import Pipeline, balance

from helpers import run_cli


def test_balance_cuts_into_non_empty_stages_of_near_equal_size():
    assert balance([0, 100, 0, 0, 10], 2) == [2]
    assert balance([10, 10, 10, 10], 2) == [2]
    assert balance([10, 10, 10, 10], 4) == [1, 2, 3]
    assert balance([1000, 1, 1, 1], 3) == [1, 2]  # one huge layer: the rest still get a stage each
    with pytest.raises(ConfigError, match="3 pipeline stages but the model has only 2 layers"):
        balance([1, 1], 3)


def test_pipeline_forward_and_backward_equal_the_model_on_one_device():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))
    x = torch.randn(10, 6)  # 10 items in 4 micro-batches: uneven chunks
    ref = model(x)
    ref.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    pipe = Pipeline(model, [torch.device("cpu")] * 3, chunks=4)
    assert len(pipe.stages) == 3 and list(pipe.state_dict()) == [f"module.{k}" for k in model.state_dict()]
    out = pipe(x)
    out.square().sum().backward()
    assert torch.allclose(out, ref, atol=1e-6)
    assert all(torch.allclose(p.grad, g, atol=1e-5) for p, g in zip(model.parameters(), grads))


def test_pipeline_training_matches_one_device_and_its_run_evaluates_like_any(tmp_path):
    run_cli("train", "digits", *ARGS, "--out", str(tmp_path / "one"))
    run_cli(
        "train",
        "digits",
        *ARGS,
        "--strategy",
        "pipeline",
        "--pipeline-devices",
        "cpu,cpu,cpu",
        "--pipeline-chunks",
        "3",
        "--out",
        str(tmp_path / "pipe"),
    )
    one = load_file(checkpoint.find(tmp_path / "one") / "model.safetensors")
    pipe = load_file(checkpoint.find(tmp_path / "pipe") / "model.safetensors")
    assert one.keys() == pipe.keys()
    assert max((one[k] - pipe[k]).abs().max().item() for k in one) < 1e-5
    curves = [
        [json.loads(line).get("train/loss") for line in open(tmp_path / r / "metrics.jsonl")] for r in ("one", "pipe")
    ]
    assert [v for v in curves[0] if v] == pytest.approx([v for v in curves[1] if v], rel=1e-5)
    final = json.loads((tmp_path / "pipe" / "final_metrics.json").read_text())
    assert (
        json.loads(run_cli("eval", str(tmp_path / "pipe"), "--checkpoint", "last").stdout)["accuracy"]
        == final["accuracy"]
    )


def test_a_model_that_does_not_list_its_layers_is_refused_in_one_line(tmp_path):
    proc = run_cli(
        "train",
        "cifar10",
        "--gpus",
        "0",
        "--strategy",
        "pipeline",
        "--ema-decay",
        "0",
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "r"),
        check=False,
    )
    assert proc.returncode != 0
    assert "TutorialCNN does not list its layers for a pipeline" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.gpu
def test_pipeline_on_the_gpu_matches_one_gpu(tmp_path):
    gpu = [a for a in ARGS if a not in ("--gpus", "0")]  # ARGS starts with --gpus 0
    run_cli("train", "digits", *gpu, "--gpus", "1", "--deterministic", "--out", str(tmp_path / "one"))
    devices = ",".join(f"cuda:{i % torch.cuda.device_count()}" for i in range(2))
    run_cli(
        "train",
        "digits",
        *gpu,
        "--gpus",
        "1",
        "--deterministic",
        "--strategy",
        "pipeline",
        "--pipeline-devices",
        devices,
        "--out",
        str(tmp_path / "pipe"),
    )
    one = load_file(checkpoint.find(tmp_path / "one") / "model.safetensors")
    pipe = load_file(checkpoint.find(tmp_path / "pipe") / "model.safetensors")
    assert max((one[k] - pipe[k]).abs().max().item() for k in one) < 1e-4
