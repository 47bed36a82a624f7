"""The training loop: it learns, gradient accumulation is exact, and a killed run resumes bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from towerlab import checkpoint, config
from towerlab.engine import fit, resume
from towerlab.errors import ConfigError
from towerlab.recipes import digits, mnist
from towerlab.runs.best import Metric

QUIET = {"log_every": 5, "eval_every_epochs": 0.0}


def weights(run_dir, name="model"):
    return load_file(checkpoint.find(run_dir) / f"{name}.safetensors")


def losses(run_dir):
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return [r["train/loss"] for r in rows if "train/loss" in r]


def test_digits_learns_and_writes_a_run_directory(tmp_path):
    cfg = config.build(digits.Config, None, {"epochs": 4.0, "log_every": 5})  # evaluations every epoch (22 steps)
    m = fit(digits, cfg, out=tmp_path / "run")
    assert m["accuracy"] > 0.8 and m["step"] == 4 * 22
    run = tmp_path / "run"
    for f in ("config.yaml", "env.json", "metrics.jsonl", "final_metrics.json", "checkpoints/last.json"):
        assert (run / f).exists(), f
    assert any((run / "tb").iterdir())
    assert losses(run)[-1] < losses(run)[0]
    assert json.loads((run / "final_metrics.json").read_text())["accuracy"] == m["accuracy"]
    # throughput windows that follow an evaluation count only the steps after it: the window of step 45 holds one
    # step, and counting the five since step 40 would show 5x. Compared with the other windows of the same run (not
    # their median: `make test` runs two workers, and a neighbour's test starting or ending swings the rates)
    rows = [json.loads(line) for line in open(run / "metrics.jsonl") if "train/loss" in line]
    after_eval, others = [], []
    for r in rows:
        window = after_eval if any(r["step"] - 5 < e < r["step"] for e in (22, 44, 66)) else others
        window.append(r["train/images_per_s"])
    assert len(after_eval) == 3 and max(after_eval) < 3 * max(others), rows


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    common = {"max_steps": 5, "dropout_conv": 0.0, "dropout_fc": 0.0, "optimizer": "sgd", "lr": 0.05, **QUIET}
    fit(digits, config.build(digits.Config, None, common), out=tmp_path / "a")
    fit(digits, config.build(digits.Config, None, {**common, "accum_steps": 4}), out=tmp_path / "b")
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_refuses_to_overwrite_a_run(tmp_path):
    cfg = config.build(digits.Config, None, {"max_steps": 2, **QUIET})
    fit(digits, cfg, out=tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        fit(digits, cfg, out=tmp_path / "run")


def test_resume_after_finishing_changes_nothing(tmp_path):
    cfg = config.build(digits.Config, None, {"max_steps": 6, **QUIET})
    fit(digits, cfg, out=tmp_path / "run")
    before = weights(tmp_path / "run")
    m = resume(tmp_path / "run")
    assert m["step"] == 6 and all(torch.equal(before[k], weights(tmp_path / "run")[k]) for k in before)


def _train_cmd(out, steps):
    # dropout, a moving average and a decaying lr: every piece of state that resume must restore
    return [
        sys.executable,
        "-m",
        "towerlab",
        "train",
        "digits",
        "--gpus",
        "0",
        "--out",
        str(out),
        "--max-steps",
        str(steps),
        "--ckpt-every-steps",
        "3",
        "--eval-every-steps",
        "40",
        "--ema-decay",
        "0.99",
        "--schedule",
        "cosine",
        "--warmup-steps",
        "5",
        "--deterministic",
        "--log-every",
        "7",
    ]


def _last_step(run_dir):
    try:
        return json.loads((run_dir / "checkpoints" / "last.json").read_text())["step"]
    except (OSError, ValueError):
        return -1


def test_sigkill_then_resume_ends_bitwise_equal(tmp_path):
    steps = 150
    subprocess.run(_train_cmd(tmp_path / "straight", steps), check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(
        _train_cmd(tmp_path / "killed", steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while _last_step(tmp_path / "killed") < 20 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _last_step(tmp_path / "killed")
    assert 20 <= killed_at < steps, "the run must be killed part way"
    subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(tmp_path / "killed"), "--gpus", "0"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    for name in ("model", "ema"):
        a, b = weights(tmp_path / "straight", name), weights(tmp_path / "killed", name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # the log of the resumed run has each step once
    steps_logged = [json.loads(line)["step"] for line in open(tmp_path / "killed" / "metrics.jsonl")]
    assert steps_logged == [json.loads(line)["step"] for line in open(tmp_path / "straight" / "metrics.jsonl")]


def test_real_mnist_loss_falls(tmp_path, shared_data):
    cfg = config.build(
        mnist.Config,
        None,
        {
            "data": str(shared_data / "mnist"),
            "max_steps": 40,
            "batch_size": 64,
            "log_every": 10,
            "eval_every_epochs": 0.0,
        },
    )
    m = fit(mnist, cfg, out=tmp_path / "run")
    assert losses(tmp_path / "run")[-1] < 0.7 * losses(tmp_path / "run")[0]
    assert m["accuracy"] > 0.5  # 40 steps of RMSProp on real MNIST, evaluated on the real 10k test set


def test_resume_takes_overrides_of_what_changes_no_step_taken(tmp_path):
    from helpers import run_cli

    run = str(tmp_path / "run")
    run_cli("train", "digits", "--gpus", "0", "--out", run, "--max-steps", "6", "--eval-every-epochs", "0")
    out = run_cli("train", "--resume", run, "--max-steps", "9", "--gpus", "0").stdout  # flags of the run's recipe
    assert (
        "resume: from step-00000006" in out
        and json.loads((tmp_path / "run" / "final_metrics.json").read_text())["step"] == 9
    )
    run_cli("train", "digits", "--resume", run, "--max-steps", "11", "--gpus", "0")  # no longer ignored
    assert config.load_yaml(tmp_path / "run" / "config.yaml")["max_steps"] == 11
    assert json.loads((tmp_path / "run" / "final_metrics.json").read_text())["step"] == 11
    for args, message in (
        (("--lr", "0.5"), "--resume cannot change lr (0.001 -> 0.5): it would change the steps"),
        (("--max-steps", "4"), "the run has taken 11 steps already, more than max_steps=4"),
        (("mnist",), "is a digits run, not mnist"),
    ):
        proc = run_cli("train", "--resume", run, "--gpus", "0", *args, check=False)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, (
            proc.stderr
        )
    assert json.loads((tmp_path / "run" / "final_metrics.json").read_text())["step"] == 11  # refusals change nothing


def test_a_run_directory_in_use_is_refused_and_eval_limit_is_reported(tmp_path):
    from towerlab.runs import Run, holder

    held = Run(tmp_path / "busy")
    assert holder(tmp_path / "busy") == os.getpid()
    with pytest.raises(ConfigError, match=f"is being trained by process {os.getpid()}"):
        fit(digits, config.build(digits.Config, None, {"max_steps": 2, **QUIET}), out=tmp_path / "busy")
    held.close()
    assert holder(tmp_path / "busy") is None
    m = fit(
        digits, config.build(digits.Config, None, {"max_steps": 2, "eval_limit": 50, **QUIET}), out=tmp_path / "busy"
    )
    assert m["eval_items"] == 50 and m["eval_s"] > 0


def test_stop_at_ends_the_run_at_the_target_and_a_resume_stays_stopped(tmp_path):
    cfg = config.build(digits.Config, None, {"epochs": 30.0, "eval_every_steps": 5, "log_every": 5, "stop_at": 0.5})
    m = fit(digits, cfg, out=tmp_path / "run")
    assert m["accuracy"] >= 0.5 and m["step"] < 30 * 22 and "stop-at" in m["stopped"]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    evals = [r for r in rows if "val/accuracy" in r]
    assert evals[-1]["step"] == m["step"]
    assert all(0 < r["train_s"] <= r["wall_s"] for r in evals)  # time to accuracy, evaluation left out of train_s
    again = resume(tmp_path / "run")
    assert again["step"] == m["step"], "a run that reached its target does not train on when resumed"


def test_patience_counts_evaluations_without_a_better_loss():
    from towerlab.engine import Stopping

    s = Stopping(digits.Config(patience=2), Metric("accuracy", "max"))
    for loss in (1.0, 0.8, 0.9, 0.7, 0.75):
        s.update({"accuracy": 0.5, "loss": loss})
        assert not s.reason
    s.update({"accuracy": 0.5, "loss": 0.71})
    assert "patience" in s.reason
    restored = Stopping(digits.Config(patience=2), Metric("accuracy", "max"))
    restored.load(s.state())
    assert restored.reason == s.reason


def test_a_run_records_the_absolute_data_folder_it_read(tmp_path, mnist_dir, monkeypatch):
    from towerlab import infer
    from towerlab.recipes import segdec

    (tmp_path / "data" / "mnist").mkdir(parents=True)
    (tmp_path / "data" / "kolektorsdd").mkdir()
    for f in mnist_dir.glob("*-ubyte*"):
        f.rename(tmp_path / "data" / "mnist" / f.name)
    monkeypatch.setenv("TOWERLAB_DATA", str(tmp_path / "data"))
    assert config.build(segdec.Config, None, {}).data == str((tmp_path / "data" / "kolektorsdd").absolute())
    assert config.build(digits.Config, None, {}).data == ""  # reads no folder
    cfg = config.build(mnist.Config, None, {"max_steps": 2, "batch_size": 16, **QUIET})
    fit(mnist, cfg, out=tmp_path / "run")
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert f"data: {tmp_path / 'data' / 'mnist'}" in saved
    monkeypatch.delenv("TOWERLAB_DATA")  # eval from elsewhere, later: the run knows where its data is
    assert "accuracy" in infer.evaluate(tmp_path / "run")


def test_val_fraction_validates_on_held_out_training_items_and_scores_test_only_for_the_chosen_weights(tmp_path):
    from towerlab.data.loader import hold_out
    from towerlab.data.stream import TensorItems

    x, y = torch.arange(100).float()[:, None], torch.arange(100)
    train, held = hold_out(TensorItems((x, y)), 0.2)
    (tx, ty), (vx, vy) = train.tensors, held.tensors
    assert len(vx) == 20 and len(tx) == 80 and not set(vy.tolist()) & set(ty.tolist())
    assert hold_out(TensorItems((x, y)), 0.2)[1].tensors[1].tolist() == vy.tolist(), "the same split every time"
    cfg = config.build(digits.Config, None, {"epochs": 3.0, "val_fraction": 0.25, "seed": 3})
    m = fit(digits, cfg, out=tmp_path / "run")
    full = fit(digits, config.build(digits.Config, None, {"epochs": 3.0, "seed": 3}), out=tmp_path / "plain")
    test = m["best"]["test"]
    assert set(test) >= {"accuracy", "loss"} and 0.5 < test["accuracy"] <= 1.0
    assert m["accuracy"] != full["accuracy"], "validation is no longer the test split"
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert sum("val/accuracy" in r for r in rows) == 3  # the test split never enters the curves


def test_val_fraction_must_leave_items_for_both_splits():
    from towerlab.errors import ConfigError

    with pytest.raises(ConfigError, match="val_fraction"):
        config.build(digits.Config, None, {"val_fraction": 1.0}).validate()


def test_system_metrics_are_logged_beside_the_loss_and_can_be_turned_off(tmp_path):
    fit(digits, config.build(digits.Config, None, {"max_steps": 10, "log_every": 5}), out=tmp_path / "on")
    rows = [json.loads(line) for line in open(tmp_path / "on" / "metrics.jsonl") if "train/loss" in line]
    assert rows and all(
        r["sys/rss_mb"] > 50 and 0 <= r["sys/cpu_percent"] < 100 * (os.cpu_count() or 1) + 50 for r in rows
    )
    fit(
        digits,
        config.build(digits.Config, None, {"max_steps": 10, "log_every": 5, "system_metrics": False}),
        out=tmp_path / "off",
    )
    assert not any("sys/" in line for line in open(tmp_path / "off" / "metrics.jsonl"))
