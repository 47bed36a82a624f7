"""RDKit properties, similarity, MOSES generation metrics; the SA table is read without unpickling code."""

import io
import math
import pickle

import pytest

from towerlab.chem import props


def test_properties_of_aspirin():
    p = props.properties("CC(=O)Oc1ccccc1C(=O)O")
    assert p["mw"] == pytest.approx(180.159, abs=1e-3) and 0.5 < p["qed"] < 0.6 and 1.0 < p["logp"] < 1.5
    assert 1 <= p["sa"] <= 3  # aspirin is easy to make
    assert props.properties("C1CC") is None and props.canonical("OCC") == "CCO"


def test_tanimoto():
    assert props.tanimoto("CCO", "OCC") == 1.0
    assert props.tanimoto("c1ccccc1", "CCCCCC") < 0.2
    assert math.isnan(props.tanimoto("C1CC", "CCO"))


def test_generation_metrics_follow_moses():
    m = props.generation_metrics(["CCO", "OCC", "C1CC", "c1ccccc1", "CCN"], {"CCO"}, k=10)
    assert m["validity"] == 0.8 and m["unique@10"] == 0.75 and m["novelty"] == pytest.approx(2 / 3)


def test_sa_table_loader_refuses_objects():
    payload = pickle.dumps([[1.0, 123], print])
    with pytest.raises(pickle.UnpicklingError, match="refusing builtins.print"):
        props._ListsOnly(io.BytesIO(payload)).load()
