"""Faults across real processes: a SIGKILLed rank of a 2-process gloo run, torchrun restarts, a damaged newest
checkpoint, a refused world-size change. Every continuation must end bit-identical to an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from towerlab import checkpoint
from towerlab.runs import RunRecord

from helpers import rank_pid

STEPS = 240


def _train(out: Path, *extra: str) -> list[str]:
    # dropout, a moving average and a decaying lr: every piece of state each rank must restore
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
        str(STEPS),
        "--ckpt-every-steps",
        "3",
        "--eval-every-steps",
        "100",
        "--ema-decay",
        "0.99",
        "--schedule",
        "cosine",
        "--deterministic",
        "--log-every",
        "7",
        "--dist-timeout",
        "30",
        *extra,
    ]


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def _last_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "last.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def _worker(run: Path, rank: int) -> int:
    """The pid of the training process of `rank` for run directory `run` (read from /proc)."""
    pid = rank_pid(run, rank)
    if pid is None:
        raise AssertionError(f"no rank {rank} process for {run}")
    return pid


def _kill_rank_after(run: Path, proc: subprocess.Popen, step: int, rank: int = 1) -> None:
    deadline = time.time() + 180
    while _last_step(run) < step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(_worker(run, rank), signal.SIGKILL)


def _same_weights(a: Path, b: Path) -> None:
    for name in ("model", "ema"):
        x, y = (
            load_file(checkpoint.find(a) / f"{name}.safetensors"),
            load_file(checkpoint.find(b) / f"{name}.safetensors"),
        )
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name


def _logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in open(run / "metrics.jsonl")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "straight"
    subprocess.run(_train(out, "--procs", "2"), check=True, capture_output=True, env=_env(), timeout=300)
    return out


def test_a_killed_rank_stops_the_run_in_one_line_and_resume_ends_bitwise_equal(tmp_path, straight):
    kill_at = random.Random().randint(12, STEPS - 60)
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _train(run, "--procs", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    _kill_rank_after(run, proc, kill_at)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 30, "the surviving process must end within --dist-timeout"
    assert proc.returncode == 1, err[-2000:]
    assert "process rank 1 was killed by SIGKILL" in err and "Traceback" not in err.split("rank 1 was killed")[1]
    assert f"continue it with `towerlab train --resume {run}`" in err
    assert RunRecord.load(run).status == "interrupted"  # resumable, not failed
    # the newest checkpoint is damaged on top of that: resume falls back to the one before, says so, stays exact
    newest = checkpoint.find(run)
    (newest / "state.pt").write_bytes((newest / "state.pt").read_bytes()[:100])
    resumed = subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert resumed.returncode == 0, f"killed at step {kill_at}\n{resumed.stderr[-3000:]}"
    assert f"{newest.name} is damaged (state.pt fails its SHA-256 check)" in resumed.stderr
    assert "x 2 process(es)" in resumed.stdout  # the run's own world size, without --procs
    _same_weights(straight, run)
    assert _logged_steps(run) == _logged_steps(straight)


def test_torchrun_restarts_a_killed_worker_and_the_run_finishes_bitwise_equal(tmp_path, straight):
    run = tmp_path / "restarted"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "2",
        *_train(run)[1:],
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    )
    _kill_rank_after(run, proc, random.Random().randint(12, STEPS - 60))
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert "resume (torchrun restart 1)" in out
    _same_weights(straight, run)


def test_resuming_on_another_world_size_is_refused_before_anything_changes(straight):
    before = {p: p.read_bytes() for p in (straight / "metrics.jsonl", straight / "final_metrics.json")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "towerlab",
            "train",
            "--resume",
            str(straight),
            "--procs",
            "1",
            "--gpus",
            "0",
            "--max-steps",
            str(STEPS + 30),
        ],  # more to train: a finished run is a no-op
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "towerlab: error: the run was trained on 2 process(es), this is 1: resume with --procs 2 (the default), or "
        "pass --allow-world-size-change to continue on 1 (not bit-exact: dropout and augmentation draw differently)"
    ]
    assert {p: p.read_bytes() for p in before} == before


def _train_fsdp(out: Path, *extra: str) -> list[str]:
    # FSDP2 shards parameters and optimizer state across the ranks (no moving average: one would be a full copy)
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
        "--strategy",
        "fsdp",
        "--max-steps",
        "60",
        "--ckpt-every-steps",
        "3",
        "--eval-every-steps",
        "30",
        "--schedule",
        "cosine",
        "--deterministic",
        "--log-every",
        "7",
        "--dist-timeout",
        "30",
        *extra,
    ]


def test_a_split_model_resumes_bitwise_equal_after_a_killed_rank_and_on_another_world_size(tmp_path):
    """Issue 43: every FSDP resume aborted in gloo (safetensors gave each rank the tensors in another order). Killed
    and resumed, the run ends bit-identical to an uninterrupted one; finished and resumed with more steps, it
    continues, on 2 processes or (allowed) on 1."""
    straight = tmp_path / "straight"
    subprocess.run(_train_fsdp(straight, "--procs", "2"), check=True, capture_output=True, env=_env(), timeout=300)
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_fsdp(run, "--procs", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env()
    )
    _kill_rank_after(run, proc, random.Random().randint(6, 45))
    proc.communicate(timeout=60)
    resumed = subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    x = load_file(checkpoint.find(straight) / "model.safetensors")
    y = load_file(checkpoint.find(run) / "model.safetensors")
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    for procs, steps, allow in (("2", 72, ()), ("1", 84, ("--allow-world-size-change",))):
        more = subprocess.run(
            [
                sys.executable,
                "-m",
                "towerlab",
                "train",
                "--resume",
                str(run),
                "--gpus",
                "0",
                "--procs",
                procs,
                "--max-steps",
                str(steps),
                *allow,
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
        )
        assert more.returncode == 0, more.stderr[-3000:]
        assert json.loads((run / "final_metrics.json").read_text())["step"] == steps


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has ended
    except OSError:
        return False


def test_the_ranks_die_with_their_launcher_and_the_run_resumes_bitwise_equal(tmp_path, straight):
    """Issue 43: SIGKILL of the `towerlab train --procs 2` process alone (the OOM killer, a scheduler) left both ranks
    training for minutes under pid 1, holding the run's lock. Now they get SIGTERM from the kernel, checkpoint at
    their next step and end; --resume continues to the uninterrupted run's weights."""
    run = tmp_path / "orphaned"
    proc = subprocess.Popen(
        _train(run, "--procs", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    deadline = time.time() + 180
    while _last_step(run) < 12 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    ranks = [_worker(run, 0), _worker(run, 1)]
    os.kill(proc.pid, signal.SIGKILL)  # the launcher alone
    proc.wait()
    gone = time.time() + 60  # a failure's time-out only: they end at their next step
    while time.time() < gone and any(map(_running, ranks)):
        time.sleep(0.05)
    assert not any(map(_running, ranks)), "a rank outlived its launcher"
    assert _last_step(run) < STEPS  # stopped, not finished
    resumed = subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_weights(straight, run)


def test_two_nodes_on_loopback_train_together_and_a_killed_worker_restarts_bitwise_equal(tmp_path, straight):
    """issue 46: two torchrun agents with --nnodes 2 and a c10d rendezvous on 127.0.0.1 are two machines sharing
    the run folder (as on a cluster file system), one process each. A worker SIGKILLed mid-run: its agent restarts
    the group, the other agent joins the new rendezvous, every process resumes from the newest checkpoint, and the
    run ends with the weights of one uninterrupted 2-process run, bit for bit."""
    from helpers import free_port

    run, port = tmp_path / "two-nodes", free_port()
    agent = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"towerlab-{port}",
        "--max-restarts", "2", *_train(run)[1:],
    ]  # fmt: skip
    env = _env(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    agents = [subprocess.Popen(agent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)]
    time.sleep(1.0)  # the first agent hosts the rendezvous store; the second connects to it
    agents.append(subprocess.Popen(agent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    try:
        _kill_rank_after(run, agents[0], random.Random().randint(12, STEPS - 60), rank=1)
        done = [a.communicate(timeout=300) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
    assert [a.returncode for a in agents] == [0, 0], "\n".join(err[-2000:] for _, err in done)
    assert "x 2 process(es)" in done[0][0] + done[1][0]
    assert "resume (torchrun restart 1)" in done[0][0] + done[1][0]
    _same_weights(straight, run)


SHARDED = ("--procs", "2", "--checkpoint", "sharded")


@pytest.fixture(scope="module")
def sharded_straight(tmp_path_factory) -> Path:
    """An uninterrupted 2-process FSDP run whose checkpoints are shards (written at once)."""
    straight = tmp_path_factory.mktemp("sharded") / "straight"
    subprocess.run(_train_fsdp(straight, *SHARDED), check=True, capture_output=True, env=_env(), timeout=300)
    return straight


def _same_sharded(a: Path, b: Path) -> None:
    x, y = checkpoint.load_weights(checkpoint.find(a)), checkpoint.load_weights(checkpoint.find(b))
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _killed_and_resumed(run: Path, *args: str) -> list[str]:
    """The FSDP run with `args`, a rank SIGKILLed at a random step, then --resume'd to its end; the resume command."""
    proc = subprocess.Popen(
        _train_fsdp(run, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env()
    )
    _kill_rank_after(run, proc, random.Random().randint(6, 45))
    proc.communicate(timeout=60)
    resume = [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"]
    resumed = subprocess.run(resume, capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resume


def test_sharded_checkpoints_resume_bitwise_equal_and_read_back_at_any_world_size(tmp_path, sharded_straight):
    """--checkpoint sharded (FSDP): each rank writes its own shards (torch.distributed.checkpoint), nothing whole on
    rank 0. Killed and resumed, the run ends bit-identical to an uninterrupted one; it continues on 1 process
    (resharded); eval reads it, consolidated; a damaged shard is refused by its checksum."""
    sharded, straight = SHARDED, sharded_straight
    folder = checkpoint.find(straight)
    assert sorted(p.name for p in (folder / "shards").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (folder / "model.safetensors").exists()
    run = tmp_path / "killed"
    resume = _killed_and_resumed(run, *sharded)
    _same_sharded(straight, run)
    more = [*resume, "--procs", "1", "--max-steps", "72", "--allow-world-size-change"]
    done = subprocess.run(more, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "final_metrics.json").read_text())["step"] == 72
    assert sorted(p.name for p in (checkpoint.find(run) / "shards").iterdir()) == [".metadata", "__0_0.distcp"]
    ev = subprocess.run(
        [sys.executable, "-m", "towerlab", "eval", str(run)], capture_output=True, text=True, env=_env()
    )
    assert ev.returncode == 0 and "accuracy" in ev.stdout, ev.stderr[-2000:]
    shard = checkpoint.find(run) / "shards" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert "shards/__0_0.distcp fails its SHA-256 check" in checkpoint.damage(shard.parents[1])


def test_async_sharded_checkpoints_are_the_same_and_a_kill_mid_write_resumes_bitwise_equal(tmp_path, sharded_straight):
    """--checkpoint sharded-async: the shards are written by a background thread (on a process group of their
    own) while training goes on, every 3 steps. Killed at a random step (a write may be under way: it stays a
    .tmp- folder, never read), resumed, the run ends with the weights of the run whose checkpoints were written
    at once; so the weights written are the step's own, not ones changed by the steps taken meanwhile."""
    run = tmp_path / "async"
    _killed_and_resumed(run, "--procs", "2", "--checkpoint", "sharded-async")
    _same_sharded(sharded_straight, run)
    steps = [json.loads((f / "manifest.json").read_text())["step"] for f in (run / "checkpoints").glob("step-*")]
    assert 60 in steps and all(s % 3 == 0 for s in steps)
