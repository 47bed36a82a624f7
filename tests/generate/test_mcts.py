"""ChemTS tree search on a real SMILES LSTM: it finds the one rewarded molecule, and it is reproducible."""

import csv
import json

from helpers import run_cli

from towerlab import config
from towerlab.chem.objectives import Objective
from towerlab.engine import fit
from towerlab.generate import model as gen
from towerlab.generate.mcts import Search, Settings, mcts
from towerlab.recipes import get

SMALL_SET = ["CCO", "CCN", "CCC", "CCCl", "c1ccccc1", "CC(=O)O", "CCOC", "CNC", "OCCO", "CC(C)C"]


def _tiny_model(tmp_path):
    data = tmp_path / "mols.txt"
    data.write_text("\n".join(SMALL_SET * 20) + "\n")
    cfg = config.build(get("smiles-lstm").Config, None, {
        "data": str(data), "max_len": 12, "hidden": 64, "embedding": 16, "layers": 1, "dropout": 0.0,
        "batch_size": 32, "lr": 1e-2, "max_steps": 120, "eval_every_steps": 120, "eval_samples": 0})
    fit(get("smiles-lstm"), cfg, out=tmp_path / "run")
    return gen.load(tmp_path / "run")


def test_the_search_finds_the_rewarded_molecule(tmp_path):
    m = _tiny_model(tmp_path)
    target = "CCCl"
    reward = Objective("toy", on_mol=lambda mol: 1.0 if gen.props.Chem.MolToSmiles(mol) == target else 0.0)
    history = mcts(m, reward, tmp_path / "mcts", Settings(budget=150, expand=3, rollouts=2, seed=0))
    best = list(csv.DictReader(open(tmp_path / "mcts" / "best.csv")))
    assert best[0]["smiles"] == target and float(best[0]["score"]) == 1.0
    assert history[-1]["molecules"] <= 150 + 3 * 2  # the budget, give or take the last expansion
    assert (tmp_path / "mcts" / "score.png").is_file() and (tmp_path / "mcts" / "progress.csv").is_file()


def test_the_same_seed_walks_the_same_tree(tmp_path):
    m = _tiny_model(tmp_path)
    runs = []
    for _ in range(2):
        s = Search(m, Objective("len", on_mol=lambda mol: float(mol.GetNumAtoms())), Settings(budget=60, seed=3))
        s.run()
        runs.append(sorted(s.seen.items()))
    assert runs[0] == runs[1] and len(runs[0]) > 3


def test_the_command_writes_its_outputs_and_counts(lstm_run, tmp_path):
    out = run_cli("chem", "mcts", str(lstm_run), "--objective", "qed", "--budget", "40", "--out", str(tmp_path / "m")).stdout
    report = json.loads(out[out.index("{\n"):out.rindex("}") + 1])
    assert report["molecules"] >= 40 and report["objective"] == "qed" and 0 < report["best"] <= 1
    rows = list(csv.DictReader(open(tmp_path / "m" / "best.csv")))
    assert rows and all(0 <= float(r["score"]) <= 1 for r in rows)
