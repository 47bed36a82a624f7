import json

import pytest
import torch

from towerlab import checkpoint
from towerlab.errors import CheckpointError


def _save(ckpt_dir, step, value):
    weights = {"model": {"w": torch.full((3, 3), float(value))}}
    return checkpoint.save(ckpt_dir, step, weights, {"step": step, "rng": torch.zeros(4, dtype=torch.uint8)}, ["last"])


def _loaded_step(run_dir):
    folder = checkpoint.find(run_dir)
    state = checkpoint.load_state(folder)
    assert checkpoint.load_weights(folder)["w"].eq(state["step"]).all()
    return state["step"]


def test_save_and_load(tmp_path):
    _save(tmp_path / "checkpoints", 5, 5)
    _save(tmp_path / "checkpoints", 10, 10)
    assert _loaded_step(tmp_path) == 10
    assert len([d for d in (tmp_path / "checkpoints").iterdir() if d.is_dir()]) == 1  # the old one is pruned


def test_crash_while_writing_files_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _save(tmp_path / "checkpoints", 5, 5)
    real = checkpoint._write_synced

    def dies_halfway(path, data):
        real(path, data[: len(data) // 2])  # a half-written file, then the process "dies"
        raise OSError("simulated crash")

    monkeypatch.setattr(checkpoint, "_write_synced", dies_halfway)
    with pytest.raises(OSError):
        _save(tmp_path / "checkpoints", 10, 10)
    assert _loaded_step(tmp_path) == 5


def test_crash_before_the_pointer_moves_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _save(tmp_path / "checkpoints", 5, 5)
    monkeypatch.setattr(checkpoint, "atomic_write", lambda *a: (_ for _ in ()).throw(OSError("simulated crash")))
    with pytest.raises(OSError):
        _save(tmp_path / "checkpoints", 10, 10)
    assert _loaded_step(tmp_path) == 5
    monkeypatch.undo()
    _save(tmp_path / "checkpoints", 15, 15)  # the orphan of the crashed save is cleaned up
    assert _loaded_step(tmp_path) == 15
    assert len([d for d in (tmp_path / "checkpoints").iterdir() if d.is_dir()]) == 1


def test_state_is_loaded_without_unpickling_code(tmp_path):
    folder = _save(tmp_path / "checkpoints", 1, 1)

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"step": Evil()}, folder / "state.pt")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        checkpoint.load_state(folder)


def test_missing_and_damaged_pointers(tmp_path):
    with pytest.raises(CheckpointError, match="has no last checkpoint"):
        checkpoint.find(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoint.find(tmp_path)


def test_pointer_file_is_plain_json(tmp_path):
    _save(tmp_path / "checkpoints", 7, 7)
    assert json.loads((tmp_path / "checkpoints" / "last.json").read_text())["step"] == 7
