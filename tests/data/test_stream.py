"""Data streamed from its files by worker processes (issue 44): the same global batches in the same order as the
in-memory path, so the same weights bit for bit; each process reads only its slice; a resume after SIGKILL mid-epoch
continues exactly; auto streams what does not fit; a bad file or a dead worker is one line naming the file."""

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
from towerlab.data.stream import Items, StreamReader, worker_death
from towerlab.errors import DataError

from helpers import hostile_pictures, run_cli


def _weights(run: Path) -> dict:
    return load_file(checkpoint.find(run) / "model.safetensors")


def _same(a: Path, b: Path) -> None:
    x, y = _weights(a), _weights(b)
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _train(out: Path, *args: str, loader: str):
    return run_cli(
        "train",
        *args,
        "--max-steps",
        "12",
        "--eval-every-steps",
        "6",
        "--batch-size",
        "16",
        "--eval-limit",
        "300",
        "--deterministic",
        "--loader",
        loader,
        "--out",
        str(out),
        "--no-report",
    )


@pytest.fixture
def image_folder(tmp_path):
    from test_folder import write_folder

    return write_folder(tmp_path / "folder", per_class=20, val=6)


@pytest.mark.parametrize("case", ["digits", "mnist", "cifar10", "folder"])
def test_stream_and_memory_train_to_the_same_weights(tmp_path, shared_data, image_folder, case):
    args = {
        "digits": ["digits"],
        "mnist": ["mnist", "--data", str(shared_data / "mnist")],
        "cifar10": ["cifar10", "--data", str(shared_data / "cifar10")],
        "folder": ["mnist", "--data", str(image_folder), "--image-size", "12x12"],
    }[case]
    memory = _train(tmp_path / "memory", *args, loader="memory")
    stream = _train(tmp_path / "stream", *args, loader="stream")
    if case != "digits":  # files or records: the first line says how they are read
        assert "decoded into memory (--loader memory)" in memory.stderr
        assert "streamed from its files by worker processes (--loader stream)" in stream.stderr
    _same(tmp_path / "memory", tmp_path / "stream")
    assert (
        json.loads((tmp_path / "memory" / "final_metrics.json").read_text())["accuracy"]
        == json.loads((tmp_path / "stream" / "final_metrics.json").read_text())["accuracy"]
    )


def test_auto_streams_what_does_not_fit_the_budget(tmp_path, shared_data):
    args = ["mnist", "--data", str(shared_data / "mnist"), "--max-steps", "2", "--eval-limit", "64", "--no-report"]
    small = run_cli("train", *args, "--data-memory", "1MB", "--out", str(tmp_path / "a"))
    assert "15.8 MB for 1 process(es) > 1.0 MB (--data-memory)" in small.stderr and "streamed" in small.stderr
    large = run_cli("train", *args, "--data-memory", "1GB", "--out", str(tmp_path / "b"))
    assert "<= 1.0 GB (--data-memory)" in large.stderr and "decoded into memory" in large.stderr
    bad = run_cli("train", *args, "--data-memory", "lots", "--out", str(tmp_path / "c"), check=False)
    assert bad.returncode == 2 and "data_memory='lots' is not an amount of memory" in bad.stderr


def _cmd(out: Path, data: Path, procs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "towerlab",
        "train",
        "mnist",
        "--data",
        str(data),
        "--loader",
        "stream",
        "--max-steps",
        "60",
        "--batch-size",
        "32",
        "--ckpt-every-steps",
        "3",
        "--eval-every-steps",
        "30",
        "--eval-limit",
        "256",
        "--deterministic",
        "--gpus",
        "0",
        "--procs",
        str(procs),
        "--out",
        str(out),
        "--no-report",
    ]


def _last(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "last.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


@pytest.mark.parametrize("procs", [1, 2])
def test_a_stream_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, shared_data, procs):
    """SIGKILL at a random checkpoint inside the first epoch (10,000 / 32 = 312 steps an epoch): the loader's
    position is the checkpoint's step; workers start again at that batch, no item skipped or repeated."""
    import random

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    data = shared_data / "mnist"
    subprocess.run(_cmd(tmp_path / "whole", data, procs), check=True, capture_output=True, env=env, timeout=600)
    run = tmp_path / "cut"
    proc = subprocess.Popen(
        _cmd(run, data, procs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    at, deadline = random.Random().randint(6, 45), time.time() + 300
    while _last(run) < at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the training processes and their data workers
    proc.wait()
    resumed = subprocess.run(
        [sys.executable, "-m", "towerlab", "train", "--resume", str(run), "--gpus", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, f"killed after step {at}\n{resumed.stderr[-2000:]}"
    _same(tmp_path / "whole", run)


def test_a_bad_file_mid_epoch_is_one_line_or_skipped_and_counted(tmp_path, image_folder):
    victim = sorted((image_folder / "train" / "one").glob("*"))[5]
    victim.write_bytes(hostile_pictures()["tiff_typeerror"])  # a file that raises what no reader expects
    args = [
        "train",
        "mnist",
        "--data",
        str(image_folder),
        "--image-size",
        "12x12",
        "--loader",
        "stream",
        "--max-steps",
        "8",
        "--batch-size",
        "8",
        "--eval-every-steps",
        "0",
        "--eval-every-epochs",
        "0",
        "--no-report",
    ]
    proc = run_cli(*args, "--out", str(tmp_path / "a"), check=False)
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(victim) in last and "TypeError" in last and "--skip-bad-files" in last
    run_cli(*args, "--skip-bad-files", "--log-every", "4", "--out", str(tmp_path / "b"))
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("data/skipped_files", 0) for r in rows) >= 1  # counted, never a silent hole


def test_a_worker_killed_is_one_line_naming_what_it_read(tmp_path, shared_data):
    """A data worker SIGKILLed (the OOM killer's way) ends the run in one line, exit 2, and --resume goes on."""
    run = tmp_path / "run"
    cmd = _cmd(run, shared_data / "mnist", 1)
    cmd[cmd.index("--max-steps") + 1] = "100000"
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.time() + 300
    while _last(run) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert children, "no data worker to kill"
    os.kill(int(children[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.startswith("towerlab:")]
    assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert "a data worker died" in lines[-1] and "--resume" in lines[-1]


def _memory_and_stream(tmp_path: Path, args: list[str]) -> list[dict]:
    """The same training read both ways: the same weights; each one's final metrics."""
    memory = run_cli("train", *args, "--loader", "memory", "--out", str(tmp_path / "memory"))
    stream = run_cli("train", *args, "--loader", "stream", "--out", str(tmp_path / "stream"))
    assert "decoded into memory (--loader memory)" in memory.stderr
    assert "streamed from its files by worker processes (--loader stream)" in stream.stderr
    _same(tmp_path / "memory", tmp_path / "stream")
    return [json.loads((tmp_path / k / "final_metrics.json").read_text()) for k in ("memory", "stream")]


def test_segmentation_streams_its_pairs_to_the_same_weights(tmp_path, shared_data):
    """issue 44: FCN-8s on real CamVid, its (image, label map) pairs streamed by worker processes and padded per
    batch like the in-memory lists: the same weights and metrics after training (and evaluation) on two processes."""
    args = [
        "fcn8s", "--data", str(shared_data / "camvid"), "--width", "0.125", "--fc-channels", "16",
        "--crop-height", "96", "--crop-width", "128", "--batch-size", "2", "--max-steps", "4",
        "--eval-every-steps", "4", "--eval-limit", "4", "--deterministic", "--gpus", "0", "--procs", "2",
        "--no-report",
    ]  # fmt: skip
    final = _memory_and_stream(tmp_path, args)
    assert final[0]["mean_iou"] == final[1]["mean_iou"] and final[0]["pixel_accuracy"] == final[1]["pixel_accuracy"]


def test_defects_stream_to_the_same_weights(tmp_path, kolektor_dir):
    """issue 44: SegDecNet on a KolektorSDD-layout folder (real BMP parts and palette masks), balanced sampling,
    dilated masks and validation carved from the training items, its pairs read by worker processes on two
    processes: the same weights and the same validation and test metrics as the in-memory path."""
    args = [
        "segdec", "--data", str(kolektor_dir), "--height", "128", "--width", "64", "--stage", "joint", "--folds", "2",
        "--dilate", "3", "--batch-size", "2", "--max-steps", "4", "--eval-every-steps", "4", "--deterministic",
        "--gpus", "0", "--procs", "2", "--val-fraction", "0.3", "--no-report",
    ]  # fmt: skip
    final = _memory_and_stream(tmp_path, args)
    assert final[0]["best"] == final[1]["best"] and final[0]["auc"] == final[1]["auc"]


class _Slow(Items):
    """Items that take a while to read, so a worker is killed while it has work."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int):
        time.sleep(0.05)
        return (torch.full((2,), float(i)),)


def test_a_dead_worker_is_said_once_and_later_signals_raise_nothing():
    """PyTorch's SIGCHLD handler raises a worker's death again at every later SIGCHLD (the other workers exiting)
    wherever the main process is then; once said, the loader's workers are ended so nothing replaces the one line
    (the CI failure of session 15: the death raised again inside run.close())."""
    reader = StreamReader(_Slow(), workers=2, prefetch=1)
    batches = reader.batches([[i] for i in range(64)])
    next(batches)
    me = os.getpid()
    workers = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    assert workers, "no data worker to kill"
    os.kill(int(workers[-1]), signal.SIGKILL)
    with pytest.raises(DataError, match="a data worker died"):
        try:  # the death is raised in the reader, or here between two batches: the trainer asks as this does
            for _ in batches:
                pass
        except RuntimeError as e:
            raise worker_death(e) or e from None
    os.kill(me, signal.SIGCHLD)  # what a worker's exit sends
    time.sleep(0.2)  # the handler runs at the next bytecode boundary, here
    assert not reader._passes
