import json

import pytest
import torch

from towerlab import checkpoint
from towerlab.errors import CheckpointError


def _save(ckpt_dir, step, value, keep=1):
    weights = {"model": {"w": torch.full((3, 3), float(value))}}
    return checkpoint.save(
        ckpt_dir, step, weights, {"step": step, "rng": torch.zeros(4, dtype=torch.uint8)}, ["last"], keep
    )


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
    with pytest.raises(CheckpointError, match="holds objects other than tensors .* never unpickles"):  # one line
        checkpoint.load_state(folder)


def test_missing_and_damaged_pointers(tmp_path):
    with pytest.raises(CheckpointError, match="has no last checkpoint"):
        checkpoint.find(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="last.json is damaged, and no other checkpoint verifies"):
        checkpoint.find(tmp_path)


@pytest.mark.parametrize(
    "damage", ["truncate weights", "truncate state", "flip a byte", "delete state", "delete manifest"]
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_that_verifies(tmp_path, capsys, damage):
    for step in (3, 6, 9):
        newest = _save(tmp_path / "checkpoints", step, step, keep=3)
    target = {"truncate weights": "model.safetensors", "flip a byte": "model.safetensors"}.get(damage, "state.pt")
    path = newest / (checkpoint.MANIFEST if damage == "delete manifest" else target)
    if damage.startswith("truncate"):
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "flip a byte":
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    else:
        path.unlink()
    assert _loaded_step(tmp_path) == 6
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and newest.name in warning[0] and "using step-00000006" in warning[0]


def test_a_lost_or_damaged_pointer_is_found_again_by_scanning(tmp_path, capsys):
    for step in (3, 6):
        _save(tmp_path / "checkpoints", step, step, keep=2)
    (tmp_path / "checkpoints" / "last.json").unlink()  # what the old message advised for a damaged one
    assert _loaded_step(tmp_path) == 6
    (tmp_path / "checkpoints" / "last.json").write_text('{"dir": "step-0000')  # cut short
    assert _loaded_step(tmp_path) == 6
    assert "last.json is missing" in capsys.readouterr().err


def test_keep_holds_the_newest_k_and_a_resumed_save_drops_the_abandoned_future(tmp_path):
    for step in (3, 6, 9, 12):
        _save(tmp_path / "checkpoints", step, step, keep=3)
    assert [checkpoint.step_of(d) for d in checkpoint.folders(tmp_path / "checkpoints")] == [12, 9, 6]
    _save(tmp_path / "checkpoints", 9, 9, keep=3)  # a run resumed from step 6 redoes step 9: 12 is from the past life
    assert [checkpoint.step_of(d) for d in checkpoint.folders(tmp_path / "checkpoints")] == [9, 6]


def test_a_damaged_file_read_directly_is_one_line(tmp_path):
    folder = _save(tmp_path / "checkpoints", 1, 1)
    (folder / "model.safetensors").write_bytes(b"\x00" * 10)
    (folder / "state.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="model.safetensors is damaged"):
        checkpoint.load_weights(folder)
    with pytest.raises(CheckpointError, match="state.pt is damaged"):
        checkpoint.load_state(folder)


def test_pointer_file_is_plain_json(tmp_path):
    _save(tmp_path / "checkpoints", 7, 7)
    assert json.loads((tmp_path / "checkpoints" / "last.json").read_text())["step"] == 7


@pytest.mark.parametrize(
    "manifest",
    ["deleted", "{}", '{"sha256": {}}', '{"sha256": {"model.safetensors": "x"}}', '{"sha256": 5}', "not json"],
)
def test_a_checkpoint_is_verified_or_refused_never_loaded_unchecked(tmp_path, manifest):
    """Every manifest gone (or emptied) and no other checkpoint: refused in one line, not loaded as it is."""
    folder = _save(tmp_path / "checkpoints", 5, 5)
    path = folder / checkpoint.MANIFEST
    path.unlink() if manifest == "deleted" else path.write_text(manifest)
    with pytest.raises(CheckpointError, match="no other checkpoint verifies"):
        checkpoint.find(tmp_path)


def test_a_file_the_manifest_does_not_list_fails_the_check(tmp_path):
    folder = _save(tmp_path / "checkpoints", 5, 5)
    (folder / "ema.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    assert checkpoint.damage(folder) == f"ema.safetensors is not in {checkpoint.MANIFEST}"


@pytest.mark.parametrize(
    "pointed",
    [
        5,
        None,
        ["step-00000005-abcdef"],
        "../other/checkpoints/step-00000005-abcdef",
        "/tmp/step-00000005-abcdef",
        "step-00000005-abcdef/../../x",
    ],
)
def test_a_pointer_names_a_folder_of_its_own_run_or_is_damaged(tmp_path, capsys, pointed):
    """last.json's dir is a checkpoint folder's own name: an absolute path or one that climbs out is never loaded."""
    outside = tmp_path / "other" / "checkpoints"
    elsewhere = _save(outside, 5, 5)  # a verifying checkpoint of another run
    run = tmp_path / "run"
    _save(run / "checkpoints", 2, 2)
    if isinstance(pointed, str) and pointed.startswith("/tmp/"):
        pointed = str(elsewhere)
    (run / "checkpoints" / "last.json").write_text(json.dumps({"dir": pointed, "step": 5}))
    assert checkpoint.find(run).parent == run / "checkpoints"  # its own newest, with a warning
    assert "last.json is damaged" in capsys.readouterr().err


def test_eval_of_a_run_whose_manifests_are_gone_is_one_line(tmp_path):
    from helpers import run_cli

    run = tmp_path / "digits"
    run_cli(
        "train",
        "digits",
        "--max-steps",
        "3",
        "--eval-every-steps",
        "3",
        "--out",
        str(run),
        env={"TOWERLAB_REPORT": "0"},
    )
    for m in (run / "checkpoints").glob("*/manifest.json"):
        m.unlink()
    proc = run_cli("eval", str(run), check=False)
    assert proc.returncode == 2 and "manifest.json missing" in proc.stderr and "Traceback" not in proc.stderr
    (run / "checkpoints" / "last.json").write_text('{"dir": 5}')
    proc = run_cli("eval", str(run), check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr


def test_init_from_a_network_of_another_size_is_refused_not_trained_afresh_in_silence(tmp_path):
    """Issue 43: the same names in other shapes (another width) copied 1 of 36 tensors and trained a fresh network."""
    from torch import nn

    def mlp(width):
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))

    checkpoint.save(tmp_path / "checkpoints", 1, {"model": mlp(16).state_dict()}, {"step": 1}, ["last", "best"], 1)
    with pytest.raises(CheckpointError, match=r"only 1 of the 6 tensors both networks name have the same shape"):
        checkpoint.init_from(mlp(32), tmp_path)
    staged = nn.Sequential(*mlp(16), nn.ReLU(), nn.Linear(3, 2))  # a later stage: the earlier net plus a head
    copied, fresh = checkpoint.init_from(staged, tmp_path)
    assert len(copied) == 6 and fresh == ["6.weight", "6.bias"]
