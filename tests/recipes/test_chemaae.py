"""chemaae: the three losses train the right players, the discriminator separates codes from the prior early,
and the chem commands work on a short real run."""

import json

import pytest
import torch

from towerlab import config
from towerlab.dist import Dist
from towerlab.engine import fit
from towerlab.precision import Precision
from towerlab.recipes import chemaae, get
from towerlab.recipes.contract import Step

from helpers import run_cli, zinc_file

SMALL = {"max_len": 80, "latent": 16, "gru_hidden": 64, "discriminator_hidden": 32, "batch_size": 16}


def test_each_loss_trains_only_its_player(smiles_csv):
    cfg = config.build(chemaae.Config, None, {"data": str(smiles_csv), **SMALL, "max_len": 64})
    data = chemaae.build_data(cfg, Dist())
    net = chemaae.build_model(cfg, data)
    tokens = next(iter(data.train))[0]
    parts = chemaae._losses(net(tokens), tokens)
    disc = list(net.discriminator.parameters())
    coders = [p for n, p in net.named_parameters() if not n.startswith("discriminator")]
    d_grads = torch.autograd.grad(parts["discriminator"], disc + coders, allow_unused=True)
    assert all(g is not None for g in d_grads[: len(disc)]) and all(g is None for g in d_grads[len(disc) :])
    g_grads = torch.autograd.grad(parts["generator"], disc + [net.code.weight], allow_unused=True)
    assert all(g is None for g in g_grads[: len(disc)]) and g_grads[-1] is not None  # the encoder fools, D holds still
    total, logs = chemaae.loss(net, (tokens,), Step(0, 1, 0.0))
    assert set(logs) == {"recon", "discriminator", "generator"} and torch.isfinite(total)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_moses_scheme_moves_one_player_per_step(smiles_csv, precision):
    """Through precision.py like every loop: under fp16's loss scaling too, each turn moves only its player."""
    cfg = config.build(chemaae.Config, None, {"data": str(smiles_csv), **SMALL, "max_len": 64, "scheme": "moses"})
    data = chemaae.build_data(cfg, Dist())
    torch.manual_seed(0)
    net = chemaae.build_model(cfg, data)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    tokens = next(iter(data.train))[0]
    disc, coders = net.discriminator, torch.nn.ModuleList([net.encoder, net.code, net.decoder])
    for turn, moves, rests in ((0, coders, disc), (1, disc, coders)):  # even steps: the autoencoder; odd: D
        before = [[p.detach().clone() for p in m.parameters()] for m in (moves, rests)]
        logs = chemaae.train_step(net, (tokens,), Step(turn, 2, 0.0), opt, Precision(precision, torch.device("cpu")))
        assert set(logs) == {"loss", "recon", "discriminator", "generator"}
        assert any(not torch.equal(a, p) for a, p in zip(before[0], moves.parameters()))
        assert all(torch.equal(a, p) for a, p in zip(before[1], rests.parameters()))
    # the autoencoder's reconstruction counts each molecule's tokens and its end, never the padding after it
    real = chemaae._real_tokens(torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0], [1, 2, 3, 4]]))
    assert real.tolist() == [[True, True, True, False], [True, True, False, False], [True, True, True, True]]


def test_discriminator_separates_codes_from_the_prior_early(shared_data, tmp_path):
    data = zinc_file(shared_data, tmp_path, 300)
    # the generator's pull switched off: what is measured is the discriminator learning to tell the codes (not yet
    # pulled onto the prior) from N(0, I); with it on, the two players trade the lead from step to step
    cfg = config.build(
        chemaae.Config,
        None,
        {"data": str(data), **SMALL, "max_steps": 40, "lr": 1e-3, "eval_every_steps": 40, "adversarial_weight": 0.0},
    )
    m = fit(get("chemaae"), cfg, out=tmp_path / "run")
    assert m["discriminator_accuracy"] > 0.85, m
    out = run_cli("chem", "sample", str(tmp_path / "run"), "--n", "32", "--out", str(tmp_path / "s.csv")).stdout
    assert json.loads(out[: out.rindex("}") + 1])["generated"] == 32
    enc = run_cli("chem", "encode", str(tmp_path / "run"), str(data), "--out", str(tmp_path / "z.csv")).stdout
    assert json.loads(enc[: enc.rindex("}") + 1])["molecules"] > 250
    dec = run_cli("chem", "decode", str(tmp_path / "run"), str(tmp_path / "z.csv"), "--out", str(tmp_path / "d.csv"))
    assert "decoded SMILES are valid molecules" in dec.stdout
    proc = run_cli("chem", "optimize", str(tmp_path / "run"), check=False)
    assert proc.returncode == 2 and "the run predicts no properties" in proc.stderr


@pytest.mark.parametrize("scheme", ["joint", "moses"])
def test_two_processes_train_one_model(shared_data, tmp_path, scheme):
    """Each scheme's one backward per step under DDP (two gloo processes through torchrun; moses's steps leave one
    player's gradients out): the replicas stay equal."""
    data = zinc_file(shared_data, tmp_path, 200)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    run_cli(
        "train",
        "chemaae",
        "--data",
        str(data),
        *flags,
        "--max-steps",
        "6",
        "--eval-every-steps",
        "6",
        "--scheme",
        scheme,
        "--procs",
        "2",
        "--out",
        str(tmp_path / "run"),
    )
    final = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    assert final["replica_max_abs_diff"] == 0 and final["step"] == 6
