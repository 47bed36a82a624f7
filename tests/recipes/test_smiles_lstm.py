"""smiles-lstm: teacher forcing, sampling in the vocabulary, a short real run (conftest: lstm_run) and `chem sample`."""

import csv
import json

import pytest
import torch

from towerlab import config
from towerlab.chem.tokens import Vocab
from towerlab.dist import Dist
from towerlab.errors import ConfigError
from towerlab.recipes import smiles_lstm
from towerlab.recipes.contract import Step

from helpers import run_cli


def _tiny(smiles_csv):
    cfg = config.build(
        smiles_lstm.Config,
        None,
        {"data": str(smiles_csv), "max_len": 64, "hidden": 16, "embedding": 8, "layers": 2, "batch_size": 4},
    )
    data = smiles_lstm.build_data(cfg, Dist())
    return cfg, data, smiles_lstm.build_model(cfg, data)


def test_teacher_forcing_predicts_each_next_token_and_the_end(smiles_csv):
    tokens = torch.tensor([[5, 6, 7, 0, 0], [5, 0, 0, 0, 0]])
    inputs, targets, mask = smiles_lstm._teacher_forcing(tokens)
    assert inputs.tolist() == [[0, 5, 6, 7], [0, 5, 0, 0]]  # the end token starts every molecule
    assert targets.tolist() == [[5, 6, 7, 0], [5, 0, 0, 0]]
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]  # the end is predicted, padding is not
    cfg, data, model = _tiny(smiles_csv)
    with torch.no_grad():
        loss, _ = smiles_lstm.loss(model, next(iter(data.train)), Step(0, 1, 0.0))
    assert abs(loss.item() - torch.log(torch.tensor(float(len(data.meta["vocab"])))).item()) < 0.5  # ~uniform at init


def test_sampling_writes_vocabulary_tokens_only_and_nothing_after_the_end(smiles_csv):
    cfg, data, model = _tiny(smiles_csv)
    vocab: Vocab = data.meta["vocab"]
    out = smiles_lstm.sample(model.eval(), 64, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == (64, vocab.max_len) and int(out.min()) >= 0 and int(out.max()) < len(vocab)
    for row in out.tolist():
        if 0 in row:
            assert not any(row[row.index(0) :])  # once ended, only end tokens
    again = smiles_lstm.sample(model, 64, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded: the same molecules
    greedy = smiles_lstm.sample(model, 2, 0.0)
    assert torch.equal(greedy[0], greedy[1])  # temperature 0: the most probable tokens


def test_a_short_real_run_learns_and_chem_sample_reports_and_draws(lstm_run, tmp_path):
    rows = [json.loads(x) for x in (lstm_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    final = json.loads((lstm_run / "final_metrics.json").read_text())
    assert 0 <= final["sample_validity"] <= 1 and final["perplexity"] > 1
    # issue 43: a molecule run reported images_per_s; its throughput counts molecules
    assert final["molecules_per_s"] > 0 and "images_per_s" not in final
    assert any("train/molecules_per_s" in r for r in rows) and not any("train/images_per_s" in r for r in rows)
    reference = tmp_path / "ref.txt"
    reference.write_text("CCO\nc1ccccc1\n")
    out = run_cli(
        "chem",
        "sample",
        str(lstm_run),
        "--n",
        "64",
        "--out",
        str(tmp_path / "s.csv"),
        "--reference",
        str(reference),
        "--kl",
        cwd=tmp_path,
    ).stdout
    report = json.loads(out[: out.rindex("}") + 1])
    assert report["generated"] == 64 and report["training_set_size"] == 90 and report["reference_set_size"] == 2
    assert report["novelty_vs_reference"] >= report["novelty"]  # nothing it writes is ethanol or benzene
    assert "kl_score" in report
    assert len(list(csv.DictReader(open(tmp_path / "s.csv")))) == 64
    if report["valid"]:
        assert (tmp_path / "s.png").stat().st_size > 1000  # the grid of sampled molecules
    proc = run_cli("chem", "encode", str(lstm_run), str(tmp_path / "s.csv"), check=False)
    assert proc.returncode == 2 and "needs a recipe that can encode molecules to a latent space" in proc.stderr


def test_randomize_writes_the_same_molecules_another_way_and_keeps_validation_canonical(shared_data, tmp_path):
    """--randomize (SMILES enumeration): each training batch holds the same molecules, written from random atom
    orders drawn from the CPU generator (so a seed gives the same strings), validation batches stay canonical."""
    from towerlab.chem import props

    from helpers import zinc_file

    fields = {"data": str(zinc_file(shared_data, tmp_path, 100)), "max_len": 80, "batch_size": 16, "randomize": True}
    cfg = config.build(smiles_lstm.Config, None, fields)
    data = smiles_lstm.build_data(cfg, Dist())
    vocab = data.meta["vocab"]
    torch.manual_seed(3)
    [first] = next(iter(data.train))
    torch.manual_seed(3)
    [again] = next(iter(data.train))
    assert torch.equal(first, again)
    plain = smiles_lstm.build_data(config.build(smiles_lstm.Config, None, {**fields, "randomize": False}), Dist())
    [canonical] = next(iter(plain.train))
    written, meant = vocab.decode(first), vocab.decode(canonical)
    assert sum(a != b for a, b in zip(written, meant)) >= len(meant) // 2  # most are written another way
    assert [props.canonical(s) for s in written] == [props.canonical(s) for s in meant]  # the same molecules
    assert torch.equal(next(iter(data.val))[0], next(iter(plain.val))[0])  # validation: canonical
    with pytest.raises(ConfigError, match="--randomize .* needs --representation smiles"):
        config.build(smiles_lstm.Config, None, {**fields, "representation": "selfies"})
