"""The chemvae faults a new user met: a missing training set, invalid SMILES encoded, the wrong advice for a file
of one valid molecule, optimisation seeds in sort order without a baseline."""

import json
import shutil

import pytest

from towerlab import config

from helpers import run_cli, zinc_file

SMALL = {
    "max_len": 80,
    "latent": 16,
    "gru_hidden": 64,
    "batch_size": 16,
    "properties": "qed",
    "max_steps": 20,
    "eval_every_steps": 20,
}


@pytest.fixture(scope="module")
def vae_run(shared_data, tmp_path_factory):
    """A chemvae trained from a relative --data path in another folder."""
    tmp = tmp_path_factory.mktemp("vae")
    (tmp / "data").mkdir()
    zinc_file(shared_data, tmp / "data", 300)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    run_cli("train", "chemvae", "--data", "zinc.txt", *flags, "--out", str(tmp / "run"), cwd=tmp / "data")
    return tmp / "run"


def _json(out: str) -> dict:
    return json.loads(out[out.index("{\n") : out.rindex("}") + 1])


def test_the_training_file_is_found_from_any_folder_and_a_missing_one_is_an_error(vae_run, tmp_path):
    assert config.load_yaml(vae_run / "config.yaml")["data"] == str(vae_run.parent / "data" / "zinc.txt")  # absolute
    report = _json(
        run_cli("chem", "sample", str(vae_run), "--n", "20", "--out", str(tmp_path / "s.csv"), cwd=tmp_path).stdout
    )
    assert report["training_set_size"] == 270  # 300 less the 10% held out
    moved = tmp_path / "elsewhere.txt"
    shutil.move(vae_run.parent / "data" / "zinc.txt", moved)
    try:
        proc = run_cli("chem", "sample", str(vae_run), "--n", "20", "--out", str(tmp_path / "s.csv"), check=False)
        assert proc.returncode == 2 and "training file" not in proc.stdout
        assert "is not found, and novelty is measured against it" in proc.stderr and "--train-data" in proc.stderr
        ok = run_cli(
            "chem", "sample", str(vae_run), "--n", "20", "--train-data", str(moved), "--out", str(tmp_path / "s.csv")
        )
        assert _json(ok.stdout)["training_set_size"] == 300
    finally:
        shutil.move(moved, vae_run.parent / "data" / "zinc.txt")


def test_encode_refuses_strings_that_are_not_molecules(vae_run, tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("CCO\nC1CC\n((((\nc1ccccc1O\n")
    report = _json(run_cli("chem", "encode", str(vae_run), str(f), "--out", str(tmp_path / "z.csv")).stdout)
    assert report["molecules"] == 2 and report["refused"] == 2
    assert "2 not valid molecules (RDKit cannot parse them) (e.g. C1CC, (((()" in report["refused_why"]
    assert len((tmp_path / "z.csv").read_text().splitlines()) == 3  # header + the two molecules


def test_a_file_with_one_valid_molecule_says_so(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("CCO\nC1CC\nnot_a_molecule\n")
    proc = run_cli("train", "chemvae", "--data", str(f), "--max-steps", "2", "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "has only 1 valid molecule" in proc.stderr and "max-len" not in proc.stderr


def test_optimize_draws_seeds_from_held_out_molecules_and_reports_its_worth(vae_run, tmp_path):
    out = run_cli(
        "chem",
        "optimize",
        str(vae_run),
        "--steps",
        "3",
        "--n-seeds",
        "5",
        "--seed",
        "1",
        "--out",
        str(tmp_path / "o.csv"),
    ).stdout
    report = _json(out)
    assert report["seeds"] == 5 and report["decoded"] == 15
    assert {"gain_over_prior", "mean_similarity_to_seed", "prior_best_qed"} <= set(report)
    from towerlab.generate import latent, model

    held_out = model.held_out_smiles(model.load(vae_run))
    seeds = latent.draw_seeds(held_out, 5, 1)
    assert set(seeds) <= set(held_out) and seeds != sorted(held_out)[:5]
    assert latent.draw_seeds(held_out, 5, 1) == seeds and latent.draw_seeds(held_out, 5, 2) != seeds
