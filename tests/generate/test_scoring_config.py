"""Scoring from a config (issue 49): REINVENT's transforms on fixed values, components as RDKit computes them,
weighted geometric and arithmetic means, a chemvae's property head as a component, and every mistake one line."""

import math

import pytest
import torch

from towerlab.chem import props
from towerlab.errors import ConfigError, DataError
from towerlab.generate import scoring_config as sc

from helpers import run_cli, zinc_file

ASPIRIN, CAFFEINE = "CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"


def _t(spec: dict):
    return sc.transform_of(spec, "component 1 (x)")[0]


def test_transforms_are_reinvents():
    """The midpoint of a sigmoid is 0.5; k sets the slope as 10**(10k(x - mid)/(low - high)); the double sigmoid is
    ~1 inside [low, high] and ~0 well outside; step and value_mapping are exact."""
    sig = _t({"type": "sigmoid", "low": 0, "high": 1, "k": 0.5})
    assert sig(0.5) == pytest.approx(0.5) and sig(1.0) == pytest.approx(1 / (1 + 10**-2.5))
    rev = _t({"type": "reverse_sigmoid", "low": 0, "high": 1, "k": 0.5})
    assert rev(1.0) == pytest.approx(1 / (1 + 10**2.5)) and rev(0.5) == pytest.approx(0.5)
    assert sig(1e6) == pytest.approx(1.0) and sig(-1e6) == pytest.approx(0.0)  # no overflow far outside
    wide = _t({"type": "double_sigmoid", "low": 200, "high": 500, "coef_div": 1000})
    for x in (150.0, 210.0, 350.0, 480.0, 600.0):
        a, b = 10 ** (150 * x / 1000), 10 ** (150 * x / 1000) + 10 ** (150 * 200 / 1000)
        c = 10 ** (150 * x / 1000) / (10 ** (150 * x / 1000) + 10 ** (150 * 500 / 1000))
        assert wide(x) == pytest.approx(a / b - c)  # REINVENT's own formula, where it does not overflow
    dbl = _t({"type": "double_sigmoid", "low": 200, "high": 500})
    assert dbl(350) == pytest.approx(1.0) and dbl(100) < 1e-6 and dbl(700) < 1e-6 and dbl(1e9) == 0.0
    step = _t({"type": "step", "low": 2, "high": 4})
    assert [step(v) for v in (1.9, 2, 3, 4, 4.1)] == [0, 1, 1, 1, 0]
    vm = _t({"type": "value_mapping", "mapping": {0: 0.2, 1: 1.0}, "default": 0.05})
    assert [vm(0), vm(1.0), vm(3)] == [0.2, 1.0, 0.05]


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "scoring.yaml"
    path.write_text(text)
    return str(path)


def test_a_config_scores_as_rdkit_computes_its_components(tmp_path):
    from rdkit.Chem import QED, Descriptors

    path = _write(
        tmp_path,
        f"""
components:
  - type: qed
    weight: 2
  - type: mw
    transform: {{type: double_sigmoid, low: 100, high: 300, coef_div: 200}}
  - type: similarity
    smiles: [{CAFFEINE}, {ASPIRIN}]
  - type: smarts
    patterns: ["[N+](=O)[O-]"]
    present: false
""",
    )
    objective = sc.objective(f"scoring:{path}")
    [score] = objective([ASPIRIN])
    m = props.mol(ASPIRIN)
    mw = _t({"type": "double_sigmoid", "low": 100, "high": 300, "coef_div": 200})(Descriptors.MolWt(m))
    expected = math.exp((2 * math.log(QED.qed(m)) + math.log(mw) + math.log(1.0) + math.log(1.0)) / 5)
    assert score == pytest.approx(expected) and objective.name.startswith(f"scoring:{path}#")
    nitro = "O=[N+]([O-])c1ccccc1"
    assert objective([nitro]) == [0.0]  # a geometric mean: one component at 0 makes the score 0
    arithmetic = sc.objective(
        "scoring:"
        + _write(tmp_path, "aggregate: arithmetic\ncomponents:\n  - type: logp\n  - type: qed\n    weight: 3\n")
    )
    from rdkit.Chem import Crippen

    assert arithmetic([ASPIRIN])[0] == pytest.approx((Crippen.MolLogP(m) + 3 * QED.qed(m)) / 4)
    assert arithmetic(["C1CC"]) == [None] and arithmetic.invalid == 1  # not a molecule: counted, never scored


def test_an_objective_component_that_fails_on_a_molecule_counts_it_as_failed(tmp_path, monkeypatch):
    (tmp_path / "picky.py").write_text(
        "def score(smiles):\n    if 'N' in smiles:\n        raise ValueError('no N')\n    return 0.5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(tmp_path, "components:\n  - type: callable\n    function: picky:score\n    transform: {type: none}\n")
    with pytest.raises(ConfigError, match="component 1 .callable.: its values may leave"):  # 'none' is unbounded
        sc.objective(f"scoring:{path}")
    path = _write(tmp_path, "aggregate: arithmetic\ncomponents:\n  - type: callable\n    function: picky:score\n")
    objective = sc.objective(f"scoring:{path}")
    assert objective([ASPIRIN, "CCN", "CCO"]) == [0.5, None, 0.5]
    assert objective.failed == 1 and "no N" in objective.errors[0]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("components:\n  - type: qedd\n", "component 1 (qedd): type must be one of qed"),
        ("components:\n  - type: logp\n", "component 1 (logp): its values may leave [0, 1]"),
        ("components:\n  - type: smarts\n    patterns: ['[C']\n", "component 1 (smarts): '[C' is not a valid SMARTS"),
        (
            "components:\n  - type: qed\n  - type: sa\n    transform: {type: sigmoid, low: 1}\n",
            "component 2 (sa): transform sigmoid needs high, k",
        ),
        ("components:\n  - type: similarity\n    smiles: [C1CC]\n", "component 1 (similarity): 'C1CC' is not a valid"),
        ("components:\n  - type: qed\n    weight: -1\n", "component 1 (qed): weight must be a number > 0"),
        (
            "components:\n  - type: chemvae\n    run: /nowhere\n    property: qed\n",
            "component 1 (chemvae): chemvae run /nowhere is not a folder",
        ),
        ("components: []\n", "a scoring config is components:"),
        ("components:\n  - type: qed\n    wieght: 2\n", "component 1 (qed): unknown key 'wieght'; a qed component"),
        ("aggregate: median\ncomponents:\n  - type: qed\n", "aggregate must be geometric or arithmetic"),
        ("components:\n  - type: objective\n    spec: nope\n", "unknown objective 'nope'"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_component(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as e:
        sc.objective("scoring:" + _write(tmp_path, text))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_a_missing_or_damaged_file_through_the_cli_is_one_line(tmp_path, zinc300):
    with pytest.raises(DataError, match="scoring config .*nope.yaml not found"):
        sc.objective(f"scoring:{tmp_path / 'nope.yaml'}")
    bad = _write(tmp_path, "components: [type: qed\n")
    proc = run_cli(
        "chem", "graph-ga", "--scoring", bad, "--start", str(zinc300), "--out", str(tmp_path / "ga"), check=False
    )
    assert proc.returncode == 2 and "is not valid YAML" in proc.stderr and "Traceback" not in proc.stderr
    good = _write(
        tmp_path,
        "components:\n  - type: qed\n  - type: sa\n    transform: {type: reverse_sigmoid, low: 2, high: 5, k: 0.5}\n",
    )
    run_cli(
        "chem",
        "graph-ga",
        "--scoring",
        good,
        "--start",
        str(zinc300),
        "--generations",
        "2",
        "--population",
        "10",
        "--offspring",
        "10",
        "--out",
        str(tmp_path / "ga"),
    )
    import csv

    rows = list(csv.DictReader(open(tmp_path / "ga" / "calls.csv")))
    rescored = sc.objective(f"scoring:{good}")([r["smiles"] for r in rows[:5]])
    assert [float(r["score"]) for r in rows[:5]] == pytest.approx(rescored)  # calls.csv holds the config's scores


@pytest.fixture(scope="module")
def zinc300(shared_data, tmp_path_factory):
    return zinc_file(shared_data, tmp_path_factory.mktemp("zinc"), 300)


def test_a_chemvae_property_head_is_a_predictive_component(shared_data, tmp_path, zinc300):
    """The score is the head's prediction for the molecule as encoded (checked against encoding it by hand), through
    its transform; a molecule the run's vocabulary cannot write fails, counted."""
    from towerlab.generate import latent
    from towerlab.generate import model as gen

    flags = [
        "--max-len",
        "80",
        "--latent",
        "16",
        "--gru-hidden",
        "64",
        "--batch-size",
        "16",
        "--properties",
        "qed",
        "--max-steps",
        "10",
        "--eval-every-steps",
        "10",
    ]
    run_cli("train", "chemvae", "--data", str(zinc300), *flags, "--out", str(tmp_path / "vae"))
    path = _write(
        tmp_path,
        f"aggregate: arithmetic\ncomponents:\n  - type: chemvae\n    run: {tmp_path / 'vae'}\n    property: qed\n"
        f"    transform: {{type: sigmoid, low: 0, high: 1, k: 0.5}}\n",
    )
    objective = sc.objective(f"scoring:{path}")
    m = gen.load(tmp_path / "vae")
    smiles = [s for s in zinc300.read_text().split()[:3]]
    with torch.no_grad():
        z, kept, _ = latent.encode(m, smiles)
        predicted = m.net.properties(z)[:, 0].tolist()
    assert len(kept) == 3
    assert objective(smiles) == pytest.approx(
        [_t({"type": "sigmoid", "low": 0, "high": 1, "k": 0.5})(p) for p in predicted]
    )
    assert objective(["[Xe]"]) == [None] and objective.failed == 1  # its vocabulary has no Xe
    with pytest.raises(ConfigError, match="predicts qed, not 'logp'"):
        sc.objective(
            "scoring:" + _write(tmp_path, path and open(path).read().replace("property: qed", "property: logp"))
        )
