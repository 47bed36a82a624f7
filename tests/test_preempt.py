"""Preemption with real signals to real processes: SIGTERM or SIGUSR1 (as SLURM sends them) makes every rank
checkpoint at the next step boundary and the command exit with 3; --resume then ends bit-identical to a run that
was never stopped. Under SLURM, --requeue calls `scontrol requeue` (a recorder on PATH stands in for scontrol)."""

import json
import os
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

STEPS = 120


def _train(out: Path, *extra: str) -> list[str]:
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
        "--eval-every-steps",
        "50",
        "--ema-decay",
        "0.99",
        "--deterministic",
        "--log-every",
        "5",
        "--no-report",
        *extra,
    ]


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def _logged_step(run: Path) -> int:
    try:
        return max(json.loads(line)["step"] for line in open(run / "metrics.jsonl"))
    except (OSError, ValueError):
        return -1


def _signal_when_running(run: Path, proc: subprocess.Popen, send) -> None:
    deadline = time.time() + 120
    while _logged_step(run) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the signal"
    send()


def _same_weights(a: Path, b: Path) -> None:
    for name in ("model", "ema"):
        x, y = (
            load_file(checkpoint.find(a) / f"{name}.safetensors"),
            load_file(checkpoint.find(b) / f"{name}.safetensors"),
        )
        assert all(torch.equal(x[k], y[k]) for k in x), name


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt")
    for procs in (1, 2):
        subprocess.run(
            _train(root / f"straight{procs}", "--procs", str(procs)),
            check=True,
            capture_output=True,
            env=_env(),
            timeout=300,
        )
    return root


def _resume_and_compare(run: Path, reference: Path) -> None:
    record = RunRecord.load(run)
    assert record.status == "preempted" and 0 < record.checkpoints[0][0] < STEPS
    done = subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _same_weights(reference, run)


def test_sigterm_checkpoints_at_the_next_step_and_resume_is_exact(tmp_path, straight):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    _signal_when_running(run, proc, lambda: proc.send_signal(signal.SIGTERM))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err[-2000:]
    assert "stopped: SIGTERM at step" in err and "Traceback" not in err
    _resume_and_compare(run, straight / "straight1")


def test_a_signal_to_one_rank_stops_both_at_the_same_step(tmp_path, straight):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _train(run, "--procs", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    _signal_when_running(run, proc, lambda: os.kill(rank_pid(run, 1), signal.SIGUSR1))  # rank 1 only
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err[-2000:]
    assert "SIGUSR1 at step" in err and "Traceback" not in err
    _resume_and_compare(run, straight / "straight2")


def test_requeue_under_slurm_calls_scontrol_after_the_checkpoint(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')  # a recorder in scontrol's place
    (bin_dir / "scontrol").chmod(0o755)
    run = tmp_path / "run"
    env = _env(PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242")
    proc = subprocess.Popen(
        _train(run, "--requeue"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    _signal_when_running(run, proc, lambda: proc.send_signal(signal.SIGTERM))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and calls.read_text().split() == ["requeue", "4242"], err[-2000:]
    assert "requeued: scontrol requeue 4242" in out + err


def test_srun_style_tasks_train_together_without_torchrun(tmp_path):
    """Two processes started the way srun starts tasks (SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS, the
    node list), no torchrun: they find each other, train one run of world size 2, and both exit 0."""
    import socket

    from towerlab.dist import first_node

    assert first_node("gpu[03-05,09],cpu1") == "gpu03" and first_node("node7") == "node7"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "towerlab",
                "train",
                "digits",
                "--gpus",
                "0",
                "--max-steps",
                "12",
                "--out",
                str(run),
                "--no-report",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(
                SLURM_PROCID=str(r),
                SLURM_LOCALID=str(r),
                SLURM_STEP_NUM_TASKS="2",
                SLURM_JOB_NODELIST="localhost",
                SLURM_JOB_ID="7",
                MASTER_PORT=str(port),
            ),
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-1500:] + outs[1][1][-1500:]
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["world_size"] == 2 and final["replica_max_abs_diff"] == 0.0


def test_sigterm_before_the_first_step_leaves_a_run_that_resume_continues(tmp_path, straight):
    """Issue 43: a SIGTERM while the run read its data left status `running`, exit 143 and a folder --resume refused.
    The handlers are in place from the moment the run folder exists: the run stops at its first step boundary with
    a checkpoint (step 0 when nothing was trained), exit 3, and --resume ends bit-identical."""
    run = tmp_path / "run"
    proc = subprocess.Popen(_train(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.time() + 120
    while not (run / "config.yaml").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err[-2000:]
    record = RunRecord.load(run)
    assert record.status == "preempted" and record.checkpoints and record.checkpoints[0][0] < STEPS
    done = subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    _same_weights(straight / "straight1", run)


def test_a_finished_run_resumed_is_a_no_op_that_says_so(tmp_path, straight):
    """Issue 43: it rewrote final_metrics.json (wall 0.03 s, 0 images/s) and logged a duplicate row."""
    run = straight / "straight1"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    done = subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert done.returncode == 0 and f"finished at step {STEPS}; nothing to do" in done.stdout, done.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name in before} == before


SRUN = """#!/bin/bash
# a stand-in for srun: SLURM_NTASKS tasks of the command, with the variables srun gives each; their pids in
# $TASKS_FILE (where SLURM's signal delivery finds a job step's processes); the first failing exit code is its own
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((r = 0; r < SLURM_NTASKS; r++)); do
    SLURM_PROCID=$r SLURM_LOCALID=$r SLURM_STEP_NUM_TASKS=$SLURM_NTASKS "$@" &
    pids+=($!)
done
echo "${pids[@]}" > "$TASKS_FILE"
code=0
for p in "${pids[@]}"; do wait "$p" || { c=$?; [ $code -eq 0 ] && code=$c; }; done
exit $code
"""


def test_the_sbatch_example_delivers_its_warning_to_the_tasks(tmp_path, shared_data):
    """Issue 43: examples/slurm.sbatch asked for --signal=B:USR1@120, which SLURM sends to the batch shell only (no
    trap there): the tasks never heard the warning. Run as SLURM would run it (srun and scontrol stood in for), its
    signal delivered where its own #SBATCH --signal line sends it: every task checkpoints at the same step, the job
    is requeued, and the script exits 3."""
    import re
    import socket

    script = Path(__file__).resolve().parents[1] / "examples" / "slurm.sbatch"
    directive = re.search(r"^#SBATCH --signal=(\S+)", script.read_text(), re.M).group(1)
    bin_dir, calls, tasks = tmp_path / "bin", tmp_path / "calls.txt", tmp_path / "tasks.txt"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(SRUN)
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    env = _env(
        PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        SLURM_JOB_ID="77",
        SLURM_JOB_NAME="t",
        SLURM_NTASKS="2",
        SLURM_CPUS_PER_TASK="1",
        SLURM_JOB_NODELIST="localhost",
        MASTER_PORT=str(port),
        TASKS_FILE=str(tasks),
        RUN=str(run),
        DATA=str(shared_data / "cifar10"),
    )
    job = subprocess.Popen(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _signal_when_running(run, job, lambda: None)
        name, _, _ = directive.partition("@")
        if name.startswith("B:"):  # SLURM signals the batch shell alone
            os.kill(job.pid, getattr(signal, "SIG" + name[2:]))
        else:  # every task of the job step
            for pid in tasks.read_text().split():
                os.kill(int(pid), getattr(signal, "SIG" + name))
        _, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 3, err[-2000:]
    assert calls.read_text().split() == ["requeue", "77"]
    record = RunRecord.load(run)
    assert (
        record.status == "preempted"
        and record.checkpoints
        and json.loads((run / "env.json").read_text())["world_size"] == 2
    )


def test_a_signal_during_the_last_evaluation_finishes_the_run_and_skips_the_report(tmp_path, shared_data):
    """Issue 43: a SIGTERM on the last step still spent ~90 s on evaluation and the report. The last evaluation
    (the run's result) completes and is checkpointed; the report is skipped and said; the run is done."""
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "towerlab",
        "train",
        "mnist",
        "--data",
        str(shared_data / "mnist"),
        "--gpus",
        "0",
        "--max-steps",
        "3",
        "--log-every",
        "3",
        "--eval-every-steps",
        "0",
        "--eval-every-epochs",
        "0",
        "--eval-limit",
        "2000",
        "--out",
        str(run),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(TOWERLAB_REPORT="1")
    )
    deadline = time.time() + 120
    while _logged_step(run) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # logged step 3: the final evaluation (2,000 test images) is under way
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM during the last step: the run is complete; report skipped" in out
    assert RunRecord.load(run).status == "done" and not (run / "report.html").exists()
