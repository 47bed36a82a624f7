"""Objectives: RDKit's numbers, ChemTS's penalized logP, GuacaMol's benchmarks, and failures counted, never fatal."""

import sys

import pytest
from rdkit.Chem import QED, Crippen

from towerlab.chem import objectives, props
from towerlab.errors import ConfigError


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
    assert sim(["Oc1ccccc1", "C1CC", "CCO"]) == [pytest.approx(1.0), None, pytest.approx(props.tanimoto("CCO", "Oc1ccccc1"))]
    assert sim.counts()["invalid"] == 1 and sim.counts()["scored"] == 3
    with pytest.raises(ConfigError, match="not a valid SMILES"):
        objectives.get("similarity:C1CC")


def test_a_user_objective_that_raises_is_counted_not_fatal(tmp_path, monkeypatch):
    (tmp_path / "my_scores.py").write_text(
        "def score(smiles):\n    if 'N' in smiles:\n        raise RuntimeError('no nitrogen please')\n    return len(smiles)\n")
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
