"""env.json records what produced a run: the code (git), the command, versions, environment and the data's hashes."""

import hashlib
import json
import os
import subprocess

from helpers import run_cli


def test_a_run_records_the_commit_dirty_tree_command_environment_and_data(tmp_path, mnist_dir):
    data = tmp_path / "mnist"
    data.mkdir()
    for f in mnist_dir.glob("*-ubyte*"):
        f.rename(data / f.name)
    mnist_dir = data
    repo = tmp_path / "experiment"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True, text=True).stdout  # noqa: E731
    git("init", "-q")
    (repo / "notes.txt").write_text("first\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    (repo / "notes.txt").write_text("changed\n")  # uncommitted: the record must say so
    env = {
        "TOWERLAB_MAX_PIXELS": "50000000",
        "TOWERLAB_DB_PASSWORD": "s3cret",
        "OMP_NUM_THREADS": "1",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    run_cli(
        "train",
        "mlp",
        "--data",
        str(mnist_dir),
        "--max-steps",
        "2",
        "--batch-size",
        "16",
        "--out",
        str(tmp_path / "run"),
        "--no-report",
        cwd=repo,
        env=env,
    )
    p = json.loads((tmp_path / "run" / "env.json").read_text())["provenance"]
    assert p["git"]["commit"] == git("rev-parse", "HEAD").strip() and p["git"]["dirty"] is True
    assert p["command"][1:3] == ["train", "mlp"] and "--max-steps" in p["command"]
    assert p["environment"]["TOWERLAB_MAX_PIXELS"] == "50000000" and p["environment"]["OMP_NUM_THREADS"] == "1"
    assert "TOWERLAB_DB_PASSWORD" not in p["environment"]  # only variables known to be harmless (issue 43)
    assert any(x.lower().startswith("torch==") for x in p["packages"]) and p["torch"]
    files = {f["file"]: f for f in p["data"]["listing"]}
    some = sorted(mnist_dir.glob("*"))[0]
    assert files[some.name]["sha256"] == hashlib.sha256(some.read_bytes()).hexdigest()
    assert p["data"]["files"] == len([f for f in mnist_dir.iterdir() if f.is_file()])
    cached = json.loads((tmp_path / "cache" / "towerlab" / "hashes.json").read_text())
    assert any(str(some.resolve()) in k for k in cached)  # a second run reads the hashes, not the files
    html = run_cli("report", str(tmp_path / "run"), env=env).stdout
    page = (tmp_path / "run" / "report.html").read_text()
    assert "What produced it" in page and p["git"]["commit"] in page and "uncommitted changes" in page and html


def test_a_class_folder_that_is_a_link_is_in_the_data_hash(tmp_path):
    """Issue 43: training followed a linked class folder, the data record did not: its images changed nothing."""
    from towerlab.provenance import data_record

    elsewhere = tmp_path / "elsewhere" / "cats"
    elsewhere.mkdir(parents=True)
    (elsewhere / "a.png").write_bytes(b"one")
    data = tmp_path / "data"
    (data / "dogs").mkdir(parents=True)
    (data / "dogs" / "b.png").write_bytes(b"two")
    (data / "cats").symlink_to(elsewhere)
    (data / "dogs" / "loop").symlink_to(data)  # a loop of links ends
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    from unittest import mock

    with mock.patch.dict(os.environ, env):
        first = data_record(data)
        assert [f["file"] for f in first["listing"]] == ["cats/a.png", "dogs/b.png"]
        (elsewhere / "a.png").write_bytes(b"changed")
        assert data_record(data)["sha256"] != first["sha256"]
