"""The graph GA on real molecules: its operators give valid molecules, it starts from the objective's best of a
file, a few generations raise the objective, --max-calls is never passed, and a SIGKILLed run resumes to the same
output."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pytest
from rdkit import Chem

from towerlab.chem import objectives, props
from towerlab.errors import ConfigError
from towerlab.generate.graph_ga import Settings, _join, _Parent, _ring_fragments, crossover, graph_ga, mutate
from towerlab.generate.scoring import auc_top, best_of_file

from helpers import REAL_SMILES, run_cli


@pytest.fixture
def zinc300(shared_data, tmp_path):
    path = tmp_path / "zinc.txt"
    path.write_text("\n".join((shared_data / "zinc250k_jtvae" / "test.txt").read_text().split()[:300]) + "\n")
    return path


def test_crossover_and_mutation_give_valid_molecules():
    rng = random.Random(0)
    mols = [props.mol(s) for s in REAL_SMILES]
    kids = [crossover(rng.choice(mols), rng.choice(mols), rng) for _ in range(200)]
    made = [k for k in kids if k is not None]
    assert len(made) > 100
    assert all(Chem.MolFromSmiles(Chem.MolToSmiles(k)) is not None and "." not in Chem.MolToSmiles(k) for k in made)
    mutants = [mutate(rng.choice(mols), rng) for _ in range(300)]
    changed = [m for m in mutants if m is not None]
    assert len(changed) > 60 and all(Chem.MolFromSmiles(Chem.MolToSmiles(m)) is not None for m in changed)
    assert len({Chem.MolToSmiles(m) for m in changed} - set(map(props.canonical, REAL_SMILES))) > 30  # new ones


def test_ring_crossover_closes_half_a_ring_with_half_of_anothers():
    rng = random.Random(1)
    a, b = _Parent(props.mol("c1ccc2ccccc2c1CCO")), _Parent(props.mol("C1CCN(C(=O)c2ccncc2)CC1"))
    kids = set()
    for _ in range(100):
        fa, fb = _ring_fragments(a, rng), _ring_fragments(b, rng)
        if fa and fb and (kid := _join(rng.choice(fa), rng.choice(fb), rng)) is not None:
            kids.add(Chem.MolToSmiles(kid))
    assert len(kids) > 5 and not kids & {
        props.canonical("c1ccc2ccccc2c1CCO"),
        props.canonical("C1CCN(C(=O)c2ccncc2)CC1"),
    }
    # every child is a valid single molecule that still has a ring: the halves were closed into one
    assert all((m := Chem.MolFromSmiles(k)) is not None and "." not in k and m.GetRingInfo().NumRings() for k in kids)


def test_the_first_population_is_the_objectives_best_of_the_file(tmp_path):
    path = tmp_path / "start.smi"
    path.write_text("\n".join([*REAL_SMILES, "C1CC"]) + "\n")  # one invalid line: skipped
    objective, seen = objectives.get("qed"), {}
    best = best_of_file(str(path), objective, 5, seen)
    ranked = sorted((props.canonical(s) for s in REAL_SMILES), key=lambda c: -props.properties(c)["qed"])
    assert best == ranked[:5] and objective.calls == len(set(ranked))


def test_generations_raise_the_objective_within_the_call_budget(zinc300, tmp_path):
    objective = objectives.get("logp")
    s = Settings(population=30, offspring=60, generations=6, max_calls=400, seed=1)
    history = graph_ga(objective, str(zinc300), tmp_path / "ga", s)
    assert objective.calls <= 400 and history[-1]["scoring_calls"] <= 400
    assert history[-1]["top10_mean"] > history[0]["top10_mean"] - 1e-9
    assert history[-1]["mean_kept"] > history[0]["mean_kept"]
    best = (tmp_path / "ga" / "best.csv").read_text().splitlines()
    assert best[0] == "smiles,score" and len(best) - 1 <= 400
    # calls.csv: the same molecules in the order the objective saw them; outcome.json: PMO's area at the budget
    calls = list(csv.DictReader(open(tmp_path / "ga" / "calls.csv")))
    assert [int(r["call"]) for r in calls] == list(range(1, objective.calls + 1))
    assert {r["smiles"] for r in calls} == {line.split(",")[0] for line in best[1:]}
    summary = json.loads((tmp_path / "ga" / "outcome.json").read_text())
    assert summary["budget"] == 400 and summary["scoring_calls"] == objective.calls
    assert summary["auc_top10"] == pytest.approx(auc_top([float(r["score"]) for r in calls], 10, 400))
    assert 0 < summary["auc_top10"] < summary["top10_mean"]


def test_killed_mid_run_it_continues_to_the_same_molecules(zinc300, tmp_path):
    args = [
        "chem",
        "graph-ga",
        "--objective",
        "qed",
        "--start",
        str(zinc300),
        "--population",
        "30",
        "--offspring",
        "60",
        "--generations",
        "10",
    ]
    run_cli(*args, "--out", str(tmp_path / "whole"), fresh=True)  # fresh: another hash seed than the resumed run's
    cmd = [sys.executable, "-m", "towerlab", *args, "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state, deadline = tmp_path / "cut" / "state.json", time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(state.read_text())["generation"] >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "best.csv").exists(), "it was stopped before the end"
    # continued with its scoring in two forked processes: the same molecules and scores as one process gave
    out = run_cli(*args, "--score-workers", "2", "--out", str(tmp_path / "cut")).stdout
    assert "resuming" in out and '"auc_top10"' in out
    for name in ("progress.csv", "best.csv", "calls.csv", "outcome.json"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "whole" / name).read_text()
    proc = run_cli(*args, "--offspring", "10", "--out", str(tmp_path / "cut"), check=False)
    assert proc.returncode == 2 and "other settings" in proc.stderr


def test_graph_ga_refuses_a_run_dir_and_other_actions_need_one(tmp_path):
    proc = run_cli("chem", "graph-ga", str(tmp_path), "--objective", "qed", check=False)
    assert proc.returncode == 2 and "uses no trained run" in proc.stderr
    proc = run_cli("chem", "sample", check=False)
    assert proc.returncode == 2 and "needs the trained run" in proc.stderr
    proc = run_cli("chem", "graph-ga", "--objective", "qed", "--start", "x.smi", "--out", "/proc/nope", check=False)
    assert proc.returncode == 2 and "--out" in proc.stderr and "Traceback" not in proc.stderr


def test_outputs_replace_a_planted_link_instead_of_writing_through_it(zinc300, tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("untouched\n")
    (tmp_path / "ga").mkdir()
    for name in ("best.csv", "best.png", "score.png"):  # the figures too: rendered in memory, renamed into place
        (tmp_path / "ga" / name).symlink_to(target)
    graph_ga(objectives.get("qed"), str(zinc300), tmp_path / "ga", Settings(population=10, offspring=10, generations=1))
    assert target.read_text() == "untouched\n" and not (tmp_path / "ga" / "best.csv").is_symlink()
    for name in ("best.png", "score.png"):
        assert not (tmp_path / "ga" / name).is_symlink()
        assert (tmp_path / "ga" / name).read_bytes().startswith(b"\x89PNG")


def test_it_stops_when_the_population_stops_changing(zinc300, tmp_path):
    # a flat objective (every molecule scores 1): the population's scores never change, so the run stops after
    # --patience generations instead of running all 50 (GuacaMol's baseline compares the scores)
    flat = objectives.Objective("flat", on_mol=lambda m: 1.0)
    history = graph_ga(
        flat, str(zinc300), tmp_path / "ga", Settings(population=5, offspring=10, generations=50, patience=3, seed=0)
    )
    assert [h["generation"] for h in history] == [0, 1, 2, 3]  # the start, then three unchanged generations


class _Stopped(Exception):
    pass


def test_a_start_cut_off_while_scoring_goes_on_from_its_last_chunk(zinc300, tmp_path, monkeypatch):
    # the first population scored from a large file can take tens of minutes: each chunk goes to the journal as it
    # is scored, and a run stopped in the middle pays only for the rest, to the same molecules and counts
    from towerlab.generate import scoring

    monkeypatch.setattr(scoring, "CHUNK", 50)
    s = Settings(population=20, offspring=20, generations=3, seed=2)
    whole = objectives.get("logp")
    graph_ga(whole, str(zinc300), tmp_path / "whole", s)

    cut, real = objectives.get("logp"), objectives.get("logp").on_mol
    calls = {"n": 0}

    def stop_at_the_fourth_chunk(m):
        calls["n"] += 1
        if calls["n"] > 170:
            raise _Stopped
        return real(m)

    cut.on_mol = stop_at_the_fourth_chunk
    cut._guarded = lambda score, mols, smiles: [score(i) for i in range(len(mols))]  # let the stop through
    with pytest.raises(_Stopped):
        graph_ga(cut, str(zinc300), tmp_path / "cut", s)
    assert not (tmp_path / "cut" / "state.json").exists()
    journal = tmp_path / "cut" / "scored.jsonl"
    assert len(journal.read_text().splitlines()) == 150  # three whole chunks
    with open(journal, "ab") as f:
        f.write(b'["CCO", 0.')  # a line cut by the kill: not a score
    with pytest.raises(ConfigError, match="other settings"):  # the journal serves only the search that wrote it
        graph_ga(objectives.get("qed"), str(zinc300), tmp_path / "cut", s)

    again = objectives.get("logp")
    graph_ga(again, str(zinc300), tmp_path / "cut", s)
    assert again.calls == whole.calls  # the 150 journaled scores counted once, not paid again
    for name in ("progress.csv", "best.csv", "calls.csv", "outcome.json", "scored.jsonl"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "whole" / name).read_text()


def test_a_start_sigkilled_while_scoring_continues_to_the_same_run(shared_data, tmp_path):
    # the same promise as above with a real kill: a process SIGKILLed between two chunks of its start (three chunks
    # of up to 2,000 ZINC molecules) is continued by a second process to the files an uninterrupted run writes
    start = tmp_path / "zinc4500.smi"
    start.write_text("\n".join((shared_data / "zinc250k_jtvae" / "valid.txt").read_text().split()[:4500]) + "\n")
    args = [
        "chem",
        "graph-ga",
        "--objective",
        "logp",
        "--start",
        str(start),
        "--population",
        "20",
        "--offspring",
        "20",
        "--generations",
        "2",
    ]
    cmd = [sys.executable, "-m", "towerlab", *args, "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal, deadline = tmp_path / "cut" / "scored.jsonl", time.time() + 120
    while time.time() < deadline and not (journal.is_file() and journal.stat().st_size):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    lines = len(journal.read_text().splitlines())
    assert not (tmp_path / "cut" / "state.json").exists() and 2000 <= lines < 4500, lines
    out = run_cli(*args, "--out", str(tmp_path / "cut")).stdout
    assert f"{lines} of them scored before the run was stopped" in out
    run_cli(*args, "--out", str(tmp_path / "whole"), fresh=True)  # fresh: another hash seed than the resumed run's
    for name in ("progress.csv", "best.csv", "calls.csv", "outcome.json", "scored.jsonl"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "whole" / name).read_text()


def test_the_same_start_file_by_another_path_continues_the_search(zinc300, tmp_path, capsys):
    # a run resumed from another folder, or through a link, names its start file differently: the same search
    s = Settings(population=10, offspring=10, generations=1, seed=0)
    graph_ga(objectives.get("qed"), str(zinc300), tmp_path / "ga", s)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.smi").symlink_to(zinc300)
    for k, start in enumerate((tmp_path / "link.smi", tmp_path / "sub" / ".." / "link.smi"), start=2):
        graph_ga(objectives.get("qed"), str(start), tmp_path / "ga", Settings(**{**asdict(s), "generations": k}))
        assert f"resuming {tmp_path / 'ga'} after generation {k - 1}" in capsys.readouterr().out
    other = tmp_path / "other.smi"
    other.write_text(zinc300.read_text())  # the same molecules in another file: another search
    with pytest.raises(ConfigError, match=r"other settings \(start: "):
        graph_ga(objectives.get("qed"), str(other), tmp_path / "ga", Settings(**{**asdict(s), "generations": 4}))


def test_a_run_begun_before_the_journal_continues(zinc300, tmp_path):
    # state.json used to hold every score and the history: such a run moves them to their journals and goes on to
    # the same molecules
    s = Settings(population=20, offspring=20, generations=4, seed=3)
    graph_ga(objectives.get("qed"), str(zinc300), tmp_path / "whole", s)
    graph_ga(objectives.get("qed"), str(zinc300), tmp_path / "old", Settings(**{**asdict(s), "generations": 2}))
    state = json.loads((tmp_path / "old" / "state.json").read_text())
    journal = tmp_path / "old" / "scored.jsonl"
    state["seen"] = dict(json.loads(line) for line in journal.read_text().splitlines()[: state.pop("scored")])
    history = tmp_path / "old" / "history.jsonl"
    state["history"] = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(state["history"]) == state["generation"] + 1 == 3  # the start is generation 0
    del state["history_lines"]  # as such a run's state.json had none
    (tmp_path / "old" / "state.json").write_text(json.dumps(state))
    journal.unlink()
    history.unlink()
    graph_ga(objectives.get("qed"), str(zinc300), tmp_path / "old", s)
    for name in ("progress.csv", "calls.csv", "scored.jsonl", "history.jsonl"):
        assert (tmp_path / "old" / name).read_text() == (tmp_path / "whole" / name).read_text()


def test_a_journal_planted_as_a_link_is_refused_not_cut(tmp_path):
    from towerlab.errors import DataError
    from towerlab.generate.scoring import Journal

    victim = tmp_path / "victim.txt"
    victim.write_text("not json\n")
    (tmp_path / "scored.jsonl").symlink_to(victim)
    with pytest.raises(DataError, match="is a link"):
        Journal(tmp_path / "scored.jsonl").read()
    assert victim.read_text() == "not json\n"


def test_a_second_process_in_a_searched_folder_is_refused(zinc300, tmp_path):
    from towerlab.files import holder

    args = [
        "chem",
        "graph-ga",
        "--objective",
        "qed",
        "--start",
        str(zinc300),
        "--population",
        "10",
        "--offspring",
        "10",
        "--generations",
        "100000",
        "--patience",
        "0",
        "--out",
        str(tmp_path / "ga"),
    ]
    # --patience 0: the first must still be searching when the second comes (it would stop on a stalled population)
    first = subprocess.Popen(
        [sys.executable, "-m", "towerlab", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while holder(tmp_path / "ga") != first.pid and time.time() < deadline:
            time.sleep(0.02)
        proc = run_cli(*args, check=False)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert f"is being searched by process {first.pid}" in proc.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert holder(tmp_path / "ga") is None  # the kernel let go with the process: a re-run continues


def test_a_lock_planted_as_a_link_is_refused_not_written_through(zinc300, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    (tmp_path / "ga").mkdir()
    (tmp_path / "ga" / ".lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="cannot be taken"):
        graph_ga(objectives.get("qed"), str(zinc300), tmp_path / "ga", Settings(population=10, offspring=10))
    assert victim.read_text() == "untouched\n"


def test_the_graph_ga_command_runs_without_torch(tmp_path):
    """It trains nothing, so it loads no torch (1.5 s a start): a whole run, start file read and scored, outputs
    written, in a fresh interpreter that never imports it."""
    start = tmp_path / "start.smi"
    start.write_text("\n".join(REAL_SMILES) + "\n")
    code = (
        "import sys; from towerlab.cli import main; "
        f"rc = main(['chem', 'graph-ga', '--objective', 'qed', '--start', {str(start)!r}, '--max-calls', '60', "
        f"'--out', {str(tmp_path / 'ga')!r}]); "
        "assert rc == 0 and 'torch' not in sys.modules, ('torch was imported', rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "ga" / "best.csv").is_file()


def test_a_start_that_uses_the_whole_budget_still_names_its_best(zinc300, tmp_path):
    """Issue 43: it printed best: null and wrote a progress.csv with a header only; generation 0 is the start."""
    proc = run_cli(
        "chem",
        "graph-ga",
        "--objective",
        "qed",
        "--start",
        str(zinc300),
        "--max-calls",
        "50",
        "--out",
        str(tmp_path / "ga"),
    )
    best = float(next(csv.DictReader(open(tmp_path / "ga" / "best.csv")))["score"])
    assert '"best": null' not in proc.stdout and f'"best": {best}' in proc.stdout.replace("\n", " ")
    rows = list(csv.DictReader(open(tmp_path / "ga" / "progress.csv")))
    assert [r["generation"] for r in rows] == ["0"] and float(rows[0]["best"]) == best
    assert "--max-calls 50 reached after generation 0" in proc.stdout
