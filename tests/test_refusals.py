"""Bad values on every command end in one line and exit code 2, before anything runs (issue 24): never a traceback,
never a silent acceptance."""

from pathlib import Path

import pytest

from helpers import run_cli


def _one_line(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def space(tmp_path) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text("lr: {logfloat: [0.001, 0.1]}\n")
    return p


ARGS = {
    "search population 0": (
        ["search", "mlp", "--space", "{space}", "--population", "0"],
        ["--population", "too small"],
    ),
    "search mutate 2": (["search", "mlp", "--space", "{space}", "--mutate", "2"], ["--mutate", "between 0 and 1"]),
    "ensemble members 0": (["ensemble", "digits", "--members", "0"], ["--members", "too small"]),
    "board port": (["board", "{tmp}", "--port", "99999"], ["--port 99999"]),
    "sample temperature": (["chem", "sample", "{tmp}", "--temperature", "-1"], ["--temperature", ">= 0"]),
    "data export n 0": (["data", "export", "digits", "{tmp}/x", "--n", "0"], ["--n", "too small"]),
    "train lr -1": (["train", "digits", "--lr", "-1", "--out", "{tmp}/r"], ["lr=-1.0 must be >= 0"]),
    "train gpus -1": (["train", "digits", "--gpus", "-1", "--out", "{tmp}/r"], ["--gpus -1"]),
    "train gpus list": (["train", "digits", "--gpus", "1,2", "--out", "{tmp}/r"], ["--gpus 1,2", "torch sees 0"]),
    "search gpus 2": (
        ["search", "mlp", "--space", "{space}", "--gpus", "2", "--out", "{tmp}/s"],
        ["--gpus 2", "torch sees 0"],
    ),
    "unknown recipe": (["train", "resnet50", "--lr", "0.1"], ["unknown recipe 'resnet50'"]),
    "unwritable train out": (["train", "digits", "--max-steps", "1", "--out", "{file}/run"], ["cannot be written"]),
    "unwritable export out": (["data", "export", "digits", "{file}/x", "--n", "2"], ["cannot be written"]),
    "search bad --set": (
        ["search", "mlp", "--space", "{space}", "--set", "nope=1", "--out", "{tmp}/s"],
        ["--set", "unknown field 'nope'"],
    ),
}


@pytest.mark.parametrize("case", list(ARGS))
def test_a_bad_value_is_one_line_and_exit_code_2(case, tmp_path, space):
    argv, fragments = ARGS[case]
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    argv = [a.format(space=space, tmp=tmp_path, file=file) for a in argv]
    proc = run_cli(*argv, check=False, env={"CUDA_VISIBLE_DEVICES": ""}, cwd=tmp_path)
    _one_line(proc, *fragments)
    assert not (tmp_path / "s").exists() and not (tmp_path / "r" / "checkpoints").exists()  # nothing ran


@pytest.mark.parametrize("name", ["javascript:alert(1)", "../escape", "a/b", "with space", ".hidden", "x\n"])
def test_a_job_name_that_is_not_a_folder_name_is_refused_when_the_file_is_read(tmp_path, name):
    import json

    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "jobs:\n  - {name: ok, recipe: digits, overrides: {max_steps: 1}}\n"
        f"  - {{name: {json.dumps(name)}, recipe: digits}}\n"
    )
    proc = run_cli("jobs", "run", str(jobs), "--out", str(tmp_path / "out"), check=False)
    _one_line(proc, "job 2", "not a plain folder name")
    assert not (tmp_path / "out" / "ok").exists()  # the good job did not run either


def test_every_job_override_is_checked_before_any_job_runs(tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "jobs:\n  - {name: a, recipe: digits, overrides: {max_steps: 1}}\n"
        "  - {name: b, recipe: digits, overrides: {max_step: 1}}\n"
        "  - {name: c, recipe: digits, overrides: {lr: -1}}\n"
    )
    proc = run_cli("jobs", "run", str(jobs), "--out", str(tmp_path / "out"), check=False)
    _one_line(proc, "job b", "unknown field 'max_step'")
    assert not (tmp_path / "out" / "a").exists()
    jobs.write_text("jobs:\n  - {name: c, recipe: digits, overrides: {lr: -1}}\n")
    _one_line(run_cli("jobs", "run", str(jobs), "--out", str(tmp_path / "out"), check=False), "job c", "lr=")


def test_report_links_are_paths_below_the_report():
    from towerlab.errors import DataError
    from towerlab.report import _href

    assert _href("trials/a b/report.html") == "./trials/a%20b/report.html"
    assert _href("javascript:alert(1)/report.html").startswith("./javascript%3Aalert")
    for bad in ("../x/report.html", "/etc/passwd", "a//b"):
        with pytest.raises(DataError):
            _href(bad)


def test_the_data_flag_says_its_default_once():
    proc = run_cli("train", "digits", "--help")
    block = proc.stdout[proc.stdout.index("\n  --data ") :].split("--seed")[0]
    assert block.count("default") == 1 and "(default: )" not in block


def test_a_photo_of_another_size_is_refused_unless_resize_is_asked(tmp_path):
    import numpy as np
    from PIL import Image

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
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (500, 1250, 3), dtype=np.uint8)).save(photo)
    _one_line(run_cli("predict", str(run), str(photo), check=False), "1250x500 pixels", "8x8", "--resize")
    assert "photo.jpg:" in run_cli("predict", str(run), str(photo), "--resize").stdout


@pytest.mark.parametrize(
    "args, said",
    [
        (["train", "mnist", "--data", "{empty}"], "MNIST file"),
        (["train", "digits", "--init-from", "{empty}"], "has no best checkpoint"),
    ],
)
def test_a_start_refused_while_the_run_is_built_leaves_no_run_folder(tmp_path, args, said):
    """Issue 43: each refused start left a `failed` run folder that the board then listed."""
    (tmp_path / "empty").mkdir()
    out = tmp_path / "runs" / "r"
    proc = run_cli(
        *[a.format(empty=tmp_path / "empty") for a in args], "--max-steps", "2", "--out", str(out), check=False
    )
    assert proc.returncode == 2 and said.lower() in proc.stderr.lower() and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()
