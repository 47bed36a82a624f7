"""The command line end to end, as a user runs it, and its one-line errors."""

import json
import subprocess
import sys

import pytest

from towerlab.cli import parse_gpus
from towerlab.errors import TowerlabError

from helpers import run_cli


def test_train_eval_predict_digits(tmp_path):
    run = tmp_path / "run"
    out = run_cli("train", "digits", "--gpus", "0", "--epochs", "5", "--out", str(run))
    assert f"run directory: {run}" in out.stdout
    final = json.loads((run / "final_metrics.json").read_text())
    assert final["accuracy"] > 0.85

    ev = json.loads(run_cli("eval", str(run), "--checkpoint", "last").stdout)
    assert ev["accuracy"] == final["accuracy"]  # the saved weights reproduce the training-time evaluation
    best = run_cli("eval", str(run))  # by default: the best checkpoint, named
    ev = json.loads(best.stdout)
    assert ev["checkpoint"] == "best" and ev["accuracy"] == final["best"]["value"]
    assert ev["checkpoint_step"] == final["best"]["step"] and "evaluated the best checkpoint" in best.stderr

    paths = [line for line in run_cli("data", "export", "digits", str(tmp_path / "img"), "--n", "10").stdout.split()]
    assert len(paths) == 10
    rows = [json.loads(line) for line in run_cli("predict", str(run), *paths, "--json").stdout.splitlines()]
    assert [r["file"] for r in rows] == paths
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)
    correct = sum(r["class"] == r["file"].rsplit("_", 1)[1][0] for r in rows)  # file names end in _<label>.png
    assert correct >= 8
    text = run_cli("predict", str(run), paths[0]).stdout
    assert text.startswith(paths[0] + ": ")


def test_recipes_and_help():
    out = run_cli("recipes").stdout
    assert all(name in out for name in ("mnist", "cifar10", "digits"))
    assert "can: segment, predict_files, examples" in out  # each recipe's capabilities
    help_text = run_cli("train", "cifar10", "--help").stdout
    assert "--ema-decay" in help_text and "default: 0.9999" in help_text
    assert run_cli("--version").stdout.startswith("towerlab ")


def test_help_and_the_recipe_list_start_no_torch():  # nor a recipe's own --help
    code = """
import contextlib, io, sys
from towerlab.cli import main
for argv in (["--help"], ["recipes"], ["search", "--help"], ["train", "--help"], ["serve", "--help"],
             ["train", "fcn8s", "--help"], ["train", "chemvae", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
print(sorted(m for m in ("torch", "numpy", "rdkit", "sqlalchemy") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_a_bad_value_is_refused_before_torch_starts(tmp_path):
    """A fresh run's bad value and a jobs file's bad job end in their one line without importing torch (2 s)."""
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n  - {name: ok, recipe: mlp}\n  - {name: 'a b', recipe: mlp}\n")
    code = f"""
import contextlib, io, sys
from towerlab.cli import main
for argv in (["train", "digits", "--lr", "-1"], ["train", "fcn8s", "--width", "-2"], ["jobs", "run", {str(jobs)!r}],
             ["train", "digits", "--eval-every-steps", "-1"]):
    with contextlib.redirect_stderr(io.StringIO()) as err:
        print(main(argv), err.getvalue().strip().splitlines())
print("torch" in sys.modules)
"""
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[-1] == "False", lines
    assert [
        "must be >= 0" in lines[0],
        "must be > 0" in lines[1],
        "not a plain folder name" in lines[2],
        "eval_every_steps=-1 must be >= 0" in lines[3],
    ] == [True] * 4, lines
    assert all(line.startswith("2 [") and line.count("towerlab: error") == 1 for line in lines[:4]), lines


def test_gpus_means_the_same_everywhere():
    assert parse_gpus("0") == [] and parse_gpus("2") == [0, 1] and parse_gpus("1,3") == [1, 3]
    assert parse_gpus("none") == [] and parse_gpus("4,") == [4]
    with pytest.raises(TowerlabError, match="write a count"):
        parse_gpus("two")


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert all(f in lines[0] for f in fragments), lines[0]


def test_errors_are_one_clear_line(tmp_path):
    _one_line_error(
        run_cli("train", "mnist", "--data", str(tmp_path / "nope"), check=False, cwd=tmp_path), "nope", "does not exist"
    )
    _one_line_error(run_cli("train", "nosuch", check=False), "unknown recipe 'nosuch'")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")  # issue 43: a file, named as the folder
    _one_line_error(
        run_cli("train", "mnist", "--data", str(tmp_path / "t10k-labels-idx1-ubyte.gz"), check=False),
        "is a file; pass the folder that holds the mnist data",
    )
    _one_line_error(run_cli("train", "digits", "--batch-size", "-3", check=False), "batch_size=-3")
    _one_line_error(run_cli("train", "digits", "--precision", "fp64", check=False), "fp64")
    _one_line_error(run_cli("eval", str(tmp_path), check=False), "not a run directory")
    _one_line_error(
        run_cli("train", "digits", "--gpus", "2", check=False), "--gpus 2 asks for GPU 0, 1 but torch sees 0 GPU"
    )
    (tmp_path / "empty").mkdir()
    _one_line_error(
        run_cli("train", "mnist", "--data", str(tmp_path / "empty"), check=False, cwd=tmp_path),
        "train-images-idx3-ubyte.gz not found",
    )


def test_predict_on_a_corrupt_image(tmp_path):
    run = tmp_path / "run"
    run_cli("train", "digits", "--gpus", "0", "--max-steps", "2", "--out", str(run))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    _one_line_error(run_cli("predict", str(run), str(bad), check=False), "bad.png", "cannot be decoded")
    _one_line_error(
        run_cli("predict", str(run), str(tmp_path / "missing.png"), check=False), "missing.png", "not found"
    )


@pytest.mark.parametrize(
    "blocked, argv, extra",
    [("rdkit", ["train", "chemvae", "--max-steps", "1"], "chem"), ("sqlalchemy", ["serve", "nope.yaml"], "serve")],
)
def test_a_missing_extra_is_one_line_naming_the_install(blocked, argv, extra):
    code = f"import sys; sys.modules[{blocked!r}] = None\nfrom towerlab.cli import main\nsys.exit(main({argv!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    _one_line_error(proc, f"needs {blocked}, from the {extra} extra: pip install 'towerlab[{extra}]'")


def test_eval_says_when_it_falls_back_past_a_damaged_or_unnamed_checkpoint(tmp_path):
    """Issue 43: predict and --resume warned, eval fell back in silence."""
    run = tmp_path / "run"
    run_cli(
        "train",
        "digits",
        "--max-steps",
        "4",
        "--ckpt-every-steps",
        "2",
        "--eval-every-steps",
        "0",
        "--eval-every-epochs",
        "0",
        "--out",
        str(run),
        "--no-report",
    )
    newest = max((run / "checkpoints").glob("step-00000004*"))
    (newest / "model.safetensors").write_bytes(b"damaged")
    proc = run_cli("eval", str(run), "--checkpoint", "last")
    assert (
        "warning" in proc.stderr and f"{newest.name} is damaged" in proc.stderr and "using step-00000002" in proc.stderr
    )
    (run / "checkpoints" / "last.json").unlink()
    proc = run_cli("eval", str(run), "--checkpoint", "last")
    assert "checkpoints/last.json is missing; using step-00000002" in proc.stderr


def test_print_config_is_the_yaml_config_takes_back_and_trains_nothing(tmp_path):
    """issue 48: `--print-config` prints the resolved config (defaults < --config < flags) as YAML that --config
    accepts unchanged; with --fast the fields it chooses are left out (given beside --fast they are refused)."""
    import yaml

    first = run_cli("train", "digits", "--lr", "0.07", "--fast", "--out", str(tmp_path / "never"), "--print-config")
    values = yaml.safe_load(first.stdout)
    assert values["lr"] == 0.07 and values["fast"] is True and "channels_last" not in values
    (tmp_path / "c.yaml").write_text(first.stdout)
    again = run_cli("train", "digits", "--config", str(tmp_path / "c.yaml"), "--print-config")
    assert again.stdout == first.stdout
    assert not (tmp_path / "never").exists()  # nothing trained, no run folder


def test_print_config_of_a_resume_is_the_runs_own_with_what_may_change(tmp_path):
    import yaml

    run = tmp_path / "run"
    run_cli("train", "digits", "--gpus", "0", "--max-steps", "3", "--lr", "0.03", "--out", str(run), "--no-report")
    shown = yaml.safe_load(run_cli("train", "--resume", str(run), "--max-steps", "9", "--print-config").stdout)
    assert shown["lr"] == 0.03 and shown["max_steps"] == 9
    refused = run_cli("train", "--resume", str(run), "--lr", "0.5", "--print-config", check=False)
    assert refused.returncode == 2 and "--resume cannot change lr" in refused.stderr
    assert json.loads((run / "final_metrics.json").read_text())["step"] == 3  # the run itself untouched
