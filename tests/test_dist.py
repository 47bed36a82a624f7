"""Data parallelism is real: two gloo processes equal one process on the concatenated global batches."""

import json

import torch
from safetensors.torch import load_file

from towerlab import checkpoint

from helpers import run_cli

# No dropout and plain SGD: the only difference between the runs is how each global batch is split.
ARGS = [
    "--gpus",
    "0",
    "--max-steps",
    "8",
    "--batch-size",
    "32",
    "--dropout-conv",
    "0",
    "--dropout-fc",
    "0",
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
    "--momentum",
    "0.9",
    "--eval-every-epochs",
    "0",
    "--log-every",
    "4",
]


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    run_cli("train", "digits", *ARGS, "--out", str(tmp_path / "one"))
    run_cli("train", "digits", *ARGS, "--procs", "2", "--out", str(tmp_path / "two"))
    one = load_file(checkpoint.find(tmp_path / "one") / "model.safetensors")
    two = load_file(checkpoint.find(tmp_path / "two") / "model.safetensors")
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-6
    final = json.loads((tmp_path / "two" / "final_metrics.json").read_text())
    assert final["world_size"] == 2
    assert final["replica_max_abs_diff"] == 0.0  # the replicas' weights, compared across processes
    # and training did move the weights: equality is not the trivial kind
    torch.manual_seed(0)
    from towerlab import config
    from towerlab.recipes import digits

    init = digits.build_model(config.build(digits.Config, None, {}))
    assert max((init.state_dict()[k] - one[k]).abs().max().item() for k in one) > 1e-3
    # both runs evaluated the same model on all 360 validation items, split 180/180 in the second
    assert json.loads((tmp_path / "one" / "final_metrics.json").read_text())["accuracy"] == final["accuracy"]


def test_fsdp_matches_data_parallel(tmp_path):
    """FSDP2 on two gloo processes (parameters, gradients and optimizer state sharded) trains the same weights as
    DDP; the checkpoint holds full tensors, which eval reads like any run's."""
    run_cli("train", "digits", *ARGS, "--procs", "2", "--out", str(tmp_path / "ddp"))
    run_cli("train", "digits", *ARGS, "--procs", "2", "--strategy", "fsdp", "--out", str(tmp_path / "fsdp"))
    ddp = load_file(checkpoint.find(tmp_path / "ddp") / "model.safetensors")
    fsdp = load_file(checkpoint.find(tmp_path / "fsdp") / "model.safetensors")
    assert ddp.keys() == fsdp.keys() and all(ddp[k].shape == fsdp[k].shape for k in ddp)
    assert max((ddp[k] - fsdp[k]).abs().max().item() for k in ddp) < 1e-5
    final = json.loads((tmp_path / "fsdp" / "final_metrics.json").read_text())
    assert final["world_size"] == 2 and final["replica_max_abs_diff"] is None
    evaluated = json.loads(run_cli("eval", str(tmp_path / "fsdp"), "--checkpoint", "last").stdout)
    assert evaluated["accuracy"] == final["accuracy"]


def test_two_processes_stop_together_at_the_target(tmp_path):
    out = run_cli(
        "train",
        "digits",
        "--procs",
        "2",
        "--epochs",
        "30",
        "--eval-every-steps",
        "5",
        "--stop-at",
        "0.5",
        "--out",
        str(tmp_path / "two"),
    ).stdout
    final = json.loads((tmp_path / "two" / "final_metrics.json").read_text())
    assert "stop-at" in final["stopped"] and final["step"] < 30 * 22 and final["accuracy"] >= 0.5
    assert final["world_size"] == 2 and final["replica_max_abs_diff"] == 0.0  # both ranks stopped at the same step
    assert "stopped at step" in out
