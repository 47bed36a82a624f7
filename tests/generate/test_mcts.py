"""ChemTS tree search on a real SMILES LSTM: it finds the one rewarded molecule, and it is reproducible."""

import csv
import json

from towerlab import config
from towerlab.chem.objectives import Objective
from towerlab.engine import fit
from towerlab.generate import model as gen
from towerlab.generate.mcts import Search, Settings, mcts
from towerlab.recipes import get

from helpers import run_cli

SMALL_SET = ["CCO", "CCN", "CCC", "CCCl", "c1ccccc1", "CC(=O)O", "CCOC", "CNC", "OCCO", "CC(C)C"]


def _tiny_model(tmp_path):
    data = tmp_path / "mols.txt"
    data.write_text("\n".join(SMALL_SET * 20) + "\n")
    cfg = config.build(
        get("smiles-lstm").Config,
        None,
        {
            "data": str(data),
            "max_len": 12,
            "hidden": 64,
            "embedding": 16,
            "layers": 1,
            "dropout": 0.0,
            "batch_size": 32,
            "lr": 1e-2,
            "max_steps": 120,
            "eval_every_steps": 120,
            "eval_samples": 0,
        },
    )
    fit(get("smiles-lstm"), cfg, out=tmp_path / "run")
    return gen.load(tmp_path / "run")


def test_the_search_finds_the_rewarded_molecule(tmp_path):
    m = _tiny_model(tmp_path)
    target = "CCCl"
    reward = Objective("toy", on_mol=lambda mol: 1.0 if gen.props.Chem.MolToSmiles(mol) == target else 0.0)
    history = mcts(m, reward, tmp_path / "mcts", Settings(budget=150, expand=10, seed=0))
    best = list(csv.DictReader(open(tmp_path / "mcts" / "best.csv")))
    assert best[0]["smiles"] == target and float(best[0]["score"]) == 1.0
    assert 150 <= history[-1]["molecules"] <= 150 + 10  # the budget in valid molecules, give or take the last expansion
    assert (tmp_path / "mcts" / "score.png").is_file() and (tmp_path / "mcts" / "progress.csv").is_file()
    assert json.loads((tmp_path / "mcts" / "outcome.json").read_text())["stopped"] == "--budget 150 reached"
    # issue 43: a search that ended before --budget said nothing of why
    fresh = Objective("toy", on_mol=lambda mol: 0.0)
    history = mcts(m, fresh, tmp_path / "calls", Settings(budget=100_000, expand=10, seed=0, max_calls=5))
    stopped = json.loads((tmp_path / "calls" / "outcome.json").read_text())["stopped"]
    assert history[-1]["molecules"] < 100_000 and stopped == "--max-calls 5 reached before --budget 100000"


def test_the_same_seed_walks_the_same_tree(tmp_path):
    m = _tiny_model(tmp_path)
    runs = []
    for _ in range(2):
        s = Search(
            m, Objective("len", on_mol=lambda mol: float(mol.GetNumAtoms())), Settings(budget=40, expand=10, seed=3)
        )
        s.run()
        runs.append(sorted(s.seen.items()))
    assert runs[0] == runs[1] and len(runs[0]) > 3


def test_the_command_writes_its_outputs_and_counts(lstm_run, tmp_path):
    out = run_cli(
        "chem", "mcts", str(lstm_run), "--objective", "qed", "--budget", "40", "--out", str(tmp_path / "m")
    ).stdout
    report = json.loads(out[out.index("{\n") : out.rindex("}") + 1])
    assert report["molecules"] >= 40 and report["objective"] == "qed" and 0 < report["best"] <= 1
    rows = list(csv.DictReader(open(tmp_path / "m" / "best.csv")))
    assert rows and all(0 <= float(r["score"]) <= 1 for r in rows)


def test_children_are_kept_only_when_their_rollout_is_a_molecule_and_the_budget_counts_molecules(tmp_path):
    m = _tiny_model(tmp_path)

    class Recording(Search):
        valid_completions: list = []

        def _score(self, token_lists):
            out = super()._score(token_lists)
            self.valid_completions += [tuple(t) for t, (ok, _) in zip(token_lists, out) if ok]
            return out

    s = Recording(
        m, Objective("len", on_mol=lambda mol: float(mol.GetNumAtoms())), Settings(budget=40, temperature=2.5, seed=1)
    )  # hot sampling: many completions are not molecules
    history = s.run()
    assert history[-1]["completions"] > history[-1]["molecules"] >= 40
    assert history[-1]["molecules"] == len(s.valid_completions)
    stack, checked = list(s.root.children), 0
    while stack:
        node = stack.pop()
        assert any(c[: len(node.prefix)] == node.prefix for c in s.valid_completions), node.prefix
        stack += node.children
        checked += 1
    assert checked > 5
