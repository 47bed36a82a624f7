"""Objectives: RDKit's numbers, ChemTS's penalized logP, GuacaMol's benchmarks, and failures counted, never fatal."""

import sys

import pytest
from rdkit.Chem import QED, Crippen

from towerlab.chem import objectives, props
from towerlab.errors import ConfigError

from helpers import REAL_SMILES


def test_qed_and_penalized_logp_by_hand():
    aspirin = "CC(=O)Oc1ccccc1C(=O)O"
    assert objectives.get("qed")([aspirin]) == [pytest.approx(QED.qed(props.mol(aspirin)))]
    ring8 = "C1CCCCCCC1"  # an 8-membered ring: penalty 2
    m = props.mol(ring8)
    assert objectives.get("plogp")([ring8])[0] == pytest.approx(Crippen.MolLogP(m) - props.sa_score(m) - 2)
    m = props.mol(aspirin)  # only 6-rings: no penalty
    assert objectives.get("plogp")([aspirin])[0] == pytest.approx(Crippen.MolLogP(m) - props.sa_score(m))


def test_similarity_and_invalid_molecules():
    sim = objectives.get("similarity:c1ccccc1O")
    assert sim(["Oc1ccccc1", "C1CC", "CCO"]) == [
        pytest.approx(1.0),
        None,
        pytest.approx(props.tanimoto("CCO", "Oc1ccccc1")),
    ]
    assert sim.counts()["invalid"] == 1 and sim.counts()["scored"] == 3
    with pytest.raises(ConfigError, match="not a valid SMILES"):
        objectives.get("similarity:C1CC")


def test_a_user_objective_that_raises_is_counted_not_fatal(tmp_path, monkeypatch):
    (tmp_path / "my_scores.py").write_text(
        "def score(smiles):\n    if 'N' in smiles:\n        raise RuntimeError('no nitrogen please')\n"
        "    return len(smiles)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    obj = objectives.get("my_scores:score")
    assert obj(["CCO", "CCN", "C1CC", "CCCN"]) == [3.0, None, None, None]
    c = obj.counts()
    assert (c["failed"], c["invalid"]) == (2, 1) and "no nitrogen please" in c["failed_examples"][0]
    sys.modules.pop("my_scores", None)


def test_unknown_objectives_are_one_line():
    with pytest.raises(ConfigError, match="unknown objective 'tastiness'"):
        objectives.get("tastiness")
    with pytest.raises(ConfigError, match="cannot load nothing from json"):
        objectives.get("json:nothing")


def test_guacamol_benchmarks_score_through_the_package():
    pytest.importorskip("guacamol", reason="the optional guacamol extra (README: Molecules)")
    from towerlab.chem import guacamol_adapter

    assert len(guacamol_adapter.goal_directed_v2()) == 20  # the v2 goal-directed suite
    celecoxib = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
    obj = objectives.get("guacamol:Celecoxib rediscovery")
    assert obj([celecoxib, "CCO"])[0] == pytest.approx(1.0) and obj([celecoxib, "CCO"])[1] < 0.1
    with pytest.raises(ConfigError, match="no goal-directed v2 benchmark 'tastiness'"):
        objectives.get("guacamol:tastiness")


def test_pmo_tasks_by_their_pmo_names():
    pytest.importorskip("guacamol", reason="the optional guacamol extra (README: Molecules)")
    from towerlab.chem import guacamol_adapter

    tasks = guacamol_adapter.pmo_offline()
    assert len(tasks) == 20 and list(tasks) == sorted(tasks)  # PMO's 23 less drd2, gsk3b, jnk3
    aspirin = "CC(=O)Oc1ccccc1C(=O)O"
    assert objectives.get("guacamol:qed")([aspirin])[0] == pytest.approx(QED.qed(props.mol(aspirin)))
    # C7H8N2O2 (PMO's isomer task outside GuacaMol v2): an exact isomer scores 1, aspirin (C9H8O4) less
    isomer = objectives.get("guacamol:isomers_c7h8n2o2")
    exact, other = isomer(["Cc1ccc([N+](=O)[O-])cc1N", aspirin])
    assert exact == pytest.approx(1.0) and other < 0.5
    assert tasks["median1"] is guacamol_adapter.goal_directed_v2()["medianmolecules1"]


def test_plogp_z_is_standardised_by_zincs_own_statistics(shared_data):
    # the constants are ZINC 250k's means and sds, so over ZINC molecules each term, and their sum, averages ~0
    zinc = (shared_data / "zinc250k_jtvae" / "test.txt").read_text().split()[:2000]
    z, raw = objectives.get("plogp-z"), objectives.get("plogp")
    zs, raws = z(zinc), raw(zinc)
    assert abs(sum(zs) / len(zs)) < 0.15 and abs(sum(raws) / len(raws)) > 0.3
    # a linear map of the same three terms: without a long ring, z = logp/sd_logp - sa/sd_sa + constant
    (lm, ls), (sm, ss), (rm, rs) = objectives.ZINC_STATS.values()
    m = props.mol("CCCCCCCCc1ccccc1")
    expected = (Crippen.MolLogP(m) - lm) / ls - (props.sa_score(m) - sm) / ss + rm / rs
    assert z(["CCCCCCCCc1ccccc1"])[0] == pytest.approx(expected)


def test_scoring_in_forked_processes_gives_what_one_process_gives(tmp_path, monkeypatch):
    (tmp_path / "picky.py").write_text(
        "def score(smiles):\n    if 'N' in smiles:\n        raise RuntimeError('no nitrogen please')\n"
        "    return len(smiles)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    smiles = [*REAL_SMILES, "C1CC", "CCO", "CCN", "not a molecule"] * 4
    for spec in ("similarity:c1ccccc1O", "picky:score"):  # a lambda inside: it is inherited, never pickled
        one, two = objectives.get(spec), objectives.get(spec)
        two.workers = 2
        assert two(smiles) == one(smiles) and two._pool is not None
        assert two.counts() == one.counts() and one.counts()["invalid"] == 8
    assert one.counts()["failed"] > 4 and len(two.counts()["failed_examples"]) == 3
    sys.modules.pop("picky", None)


def test_closing_an_objective_stops_its_scoring_processes():
    import multiprocessing as mp

    others = set(mp.active_children())  # other tests' pools, if any, are not this objective's
    with objectives.get("qed") as obj:
        obj.workers = 2
        first = obj(REAL_SMILES * 4)
        assert len(set(mp.active_children()) - others) == 2
    assert obj._pool is None and not set(mp.active_children()) - others
    obj.workers = 2
    assert obj(REAL_SMILES * 4) == first and obj._pool is not None  # forked again when asked to score again
    obj.close()
    assert not set(mp.active_children()) - others
