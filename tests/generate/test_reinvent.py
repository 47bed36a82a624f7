"""REINVENT's agent on a real (tiny) SMILES LSTM prior (issue 49): the likelihood it pulls is the model's, the loss
is the augmented-likelihood loss, the score of what it writes rises, PMO's call accounting holds, the diversity
filter zeroes a full scaffold bucket, and a search SIGKILLed mid-step continues to the same molecules."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from towerlab.chem import objectives
from towerlab.generate import model as gen
from towerlab.generate.diversity import DiversityFilter, scaffold
from towerlab.generate.reinvent import Agent, Settings, converged, reinvent

from helpers import run_cli

FAST = [
    *("--steps", "6", "--batch-size", "24", "--lr", "1e-3", "--sigma", "60", "--checkpoint-every", "2"),
    *("--augment", "1", "--replay", "4"),
]


def test_the_likelihood_is_the_models_token_by_token(lstm_run):
    """log P(x) from teacher forcing = the sum of log-softmax of each next token, walked one token at a time (the
    end token included), for sequences of different lengths."""
    m = gen.load(lstm_run)
    tokens = m.recipe.sample(m.net, 5, 1.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ll = m.recipe.log_likelihood(m.net, tokens)
        state, last = m.recipe.initial_state(m.net, 5), torch.zeros(5, dtype=torch.long)
        walked, alive = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.bool)
        for i in range(tokens.shape[1]):
            logits, state = m.recipe.next_logits(m.net, last, state)
            last = tokens[:, i]
            walked += torch.where(alive, logits.log_softmax(-1).gather(1, last[:, None])[:, 0], 0).double()
            alive &= last != 0
    assert len({int((t != 0).sum()) for t in tokens}) > 1  # molecules of different lengths
    assert ll.double() == pytest.approx(walked, abs=1e-4)


def test_the_first_update_is_the_augmented_likelihood_loss(lstm_run):
    """The agent starts as the prior, so the first loss is exactly mean((sigma * S)^2), even for a prior trained with
    dropout (the agent learns without it); the step then moves the agent and not the prior."""
    m = gen.load(lstm_run)
    m.net.lstm.dropout = 0.5  # as a prior trained with dropout between its layers
    agent = Agent(m, Settings(sigma=10.0, lr=1e-3))
    tokens = m.recipe.sample(m.net, 8, 1.0, torch.Generator().manual_seed(1))
    scores = [i / 8 for i in range(8)]
    loss = float(agent.update(tokens, scores))
    assert loss == pytest.approx(sum((10 * s) ** 2 for s in scores) / 8, rel=1e-5)
    with torch.no_grad():
        moved = agent.m.recipe.log_likelihood(agent.net, tokens) - m.recipe.log_likelihood(agent.prior, tokens)
    assert moved.abs().max() > 0 and all(not p.requires_grad for p in agent.prior.parameters())


def _mean_qed(m, net) -> float:
    with torch.no_grad():
        smiles = m.strings(m.recipe.sample(net, 256, 1.0, torch.Generator().manual_seed(123)))
    values = [v for v in objectives.get("qed")(smiles) if v is not None]
    return sum(values) / len(values)


def test_the_agent_raises_the_score_of_what_it_writes(lstm_run, tmp_path):
    """Twelve steps on QED: 256 molecules from the agent score higher than 256 from the prior (0.708 -> 0.762
    measured), the agent being the search's checkpoint."""
    import copy

    from towerlab import checkpoint

    m = gen.load(lstm_run)
    before = _mean_qed(m, m.net)
    reinvent(m, objectives.get("qed"), tmp_path / "rl", Settings(steps=12, batch_size=32, lr=1e-3, sigma=60))
    agent = copy.deepcopy(m.net)
    agent.load_state_dict(checkpoint.load_weights(checkpoint.find(tmp_path / "rl", "last")))
    assert _mean_qed(m, agent) > before + 0.03
    for name in ("best.csv", "calls.csv", "progress.csv", "score.png", "best.png"):
        assert (tmp_path / "rl" / name).stat().st_size > 0


def test_calls_are_counted_as_pmo_counts_them(lstm_run, tmp_path):
    """A repeated molecule is no new call; the budget is spent exactly and never passed; Augmented Memory's
    randomised replays call nothing."""
    objective = objectives.get("qed")
    s = Settings(steps=50, batch_size=32, lr=1e-3, sigma=60, max_calls=60, augment=2, checkpoint_every=4)
    history = reinvent(gen.load(lstm_run), objective, tmp_path / "rl", s)
    assert objective.calls == 60 and history[-1]["scoring_calls"] == 60 and len(history) < 50
    calls = list(csv.DictReader(open(tmp_path / "rl" / "calls.csv")))
    assert len(calls) == 60 and len({r["smiles"] for r in calls}) == 60
    outcome = json.loads((tmp_path / "rl" / "outcome.json").read_text())
    assert outcome["scoring_calls"] == outcome["budget"] == 60 and 0 < outcome["auc_top10"] <= 1
    sampled = sum(h["new_molecules"] for h in history)
    assert sampled == 60  # every call is a new molecule of some step's batch


def test_a_full_scaffold_bucket_scores_zero_and_is_purged_from_memory():
    df = DiversityFilter("identical_murcko", bucket_size=2, min_score=0.4)
    benzenes = ["Cc1ccccc1", "Cc1ccccc1", "CCc1ccccc1", "CCCc1ccccc1", "Cc1ccccc1"]
    assert [df(s, 0.9) for s in benzenes] == [0.9, 0.9, 0.9, 0.0, 0.0]  # a repeat takes no place; the third: full
    assert df("CC1CCCCC1", 0.9) == 0.9 and df("Cc1ccncc1", 0.3) == 0.3  # another scaffold; below min_score: free
    assert df.full("c1ccccc1O") and not df.full("Cc1ccncc1")
    topo = DiversityFilter("identical_topological", bucket_size=1)
    assert scaffold("Cc1ccccc1", True) == scaffold("CC1CCCCC1", True)
    assert [topo("Cc1ccccc1", 0.9), topo("CC1CCCCC1", 0.9)] == [0.9, 0.0]  # benzene and cyclohexane: one bucket
    same = DiversityFilter("penalize_same_smiles", penalty=0.5)
    assert [same("CCO", 0.8), same("CCO", 0.8)] == [0.8, 0.4]


def test_killed_mid_search_it_continues_to_the_same_molecules(lstm_run, tmp_path):
    run_cli("chem", "reinvent", str(lstm_run), *FAST, "--out", str(tmp_path / "whole"), fresh=True)
    cmd = [sys.executable, "-m", "towerlab", "chem", "reinvent", str(lstm_run), *FAST, "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "checkpoints" / "last.json").is_file() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # after step 2's checkpoint, somewhere in steps 3-4
    proc.wait()
    assert not (tmp_path / "cut" / "progress.csv").exists()  # it really was stopped before the end
    out = run_cli("chem", "reinvent", str(lstm_run), *FAST, "--out", str(tmp_path / "cut")).stdout
    assert "resuming" in out
    for name in ("progress.csv", "calls.csv"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "whole" / name).read_text()
    proc = run_cli(
        "chem", "reinvent", str(lstm_run), *FAST, "--sigma", "30", "--out", str(tmp_path / "cut"), check=False
    )
    assert proc.returncode == 2 and "holds a REINVENT search with other settings (sigma" in proc.stderr


def _history(top100: list[float], calls_from: int = 1100) -> list[dict]:
    return [{"top100_mean": v, "scoring_calls": calls_from + 64 * i} for i, v in enumerate(top100)]


def test_pmo_stop_ends_a_search_whose_best_hundred_no_longer_rise():
    """PMO's rule for REINVENT (--patience N): N steps in a row past 1,000 calls in which the mean of the 100 best
    rose by less than 0.001; never before 1,000 calls, never when off, and a rise resets the count."""
    flat = _history([0.5, 0.5005, 0.5009, 0.501, 0.5012, 0.5013])
    assert converged(flat, 5) and not converged(flat, 0) and not converged(flat[:5], 5)
    assert not converged(_history([0.5, 0.5005, 0.5009, 0.503, 0.5031, 0.5032]), 5)  # a rise of 0.002 in the run
    assert converged(_history([0.5, 0.503, 0.5031, 0.5032]), 2)
    assert not converged(_history([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], calls_from=700), 5)  # not past 1,000 calls yet
    assert not converged([{"scoring_calls": 2000}] * 6, 5)  # a history from before top100_mean was kept


def test_a_search_begun_before_patience_existed_continues(lstm_run, tmp_path):
    """A folder whose settings.json has no patience (searches made before the setting) is the same search as one
    with patience 0, and another patience is another search, refused in one line."""
    run_cli("chem", "reinvent", str(lstm_run), *FAST, "--out", str(tmp_path / "rl"), fresh=True)
    settings = tmp_path / "rl" / "settings.json"
    assert "patience" not in json.loads(settings.read_text())
    more = run_cli("chem", "reinvent", str(lstm_run), *FAST, "--steps", "8", "--out", str(tmp_path / "rl"))
    assert more.returncode == 0
    other = run_cli(
        "chem", "reinvent", str(lstm_run), *FAST, "--patience", "3", "--out", str(tmp_path / "rl"), check=False
    )
    assert other.returncode == 2 and "other settings (patience" in other.stderr
