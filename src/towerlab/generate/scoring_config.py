"""Scoring from a config (REINVENT 4's habit): components, each with a transform and a weight, combined into one
score per molecule, usable wherever an objective is (`--scoring FILE`, or `--objective scoring:FILE`).

    aggregate: geometric            # weighted geometric mean (the default; a zero anywhere is a zero) or arithmetic
    components:
      - type: qed
      - type: sa                    # SA score, 1 (easy) .. 10 (hard)
        weight: 2
        transform: {type: reverse_sigmoid, low: 2, high: 5, k: 0.5}
      - type: similarity            # the largest Tanimoto similarity (Morgan r=2, 2048 bits) to any of these
        smiles: [CC(=O)Oc1ccccc1C(=O)O]
      - type: smarts                # 1 where any pattern matches (present: true) or where none does (present: false)
        patterns: ["[N+](=O)[O-]"]
        present: false
      - type: objective             # anything --objective takes: guacamol:osimertinib_mpo, plogp-z, mod:function
        spec: guacamol:median1
      - type: chemvae               # a trained chemvae's property head, as a predictive component
        run: runs/chemvae
        property: logp
        transform: {type: double_sigmoid, low: 1, high: 3}

Component types: qed, sa, logp, mw, tpsa, hbd, hba, rotatable_bonds, rings, aromatic_rings, heavy_atoms (RDKit's
descriptors), similarity, smarts, objective, callable (`function: module:function`, SMILES -> float), chemvae.
Transforms (REINVENT's definitions): sigmoid and reverse_sigmoid (low, high, k), double_sigmoid (low, high,
coef_div 100, coef_si 150, coef_se 150: about 1 between low and high), step (1 in [low, high], else 0),
value_mapping (mapping: {value: score}, others `default`, 0), none (the raw value).

The geometric mean is of values in [0, 1]: a component that may leave it (logp, mw, a chemvae prediction, an
objective or function of unknown range) needs a transform there, or the config is refused. A molecule on which a
component fails (a chemvae whose vocabulary cannot write it) is counted as failed by the objective and scores
nothing, like any failing objective. Every mistake in the file is one line naming the component and the fix."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from towerlab.errors import ConfigError, DataError

BOUNDED = {"qed", "similarity", "smarts"}  # values always in [0, 1]
DESCRIPTORS = ("qed", "sa", "logp", "mw", "tpsa", "hbd", "hba", "rotatable_bonds", "rings", "aromatic_rings")
TYPES = (*DESCRIPTORS, "heavy_atoms", "similarity", "smarts", "objective", "callable", "chemvae")
AGGREGATES = ("geometric", "arithmetic")
OWN_KEYS = {  # what a component of each type takes besides type, weight and transform
    "similarity": ("smiles",),
    "smarts": ("patterns", "present"),
    "objective": ("spec",),
    "callable": ("function",),
    "chemvae": ("run", "property", "checkpoint"),
}


# -- transforms ------------------------------------------------------------------------------------------------
def _sigmoid(x: float, low: float, high: float, k: float) -> float:
    exponent = 10 * k * (x - (low + high) / 2) / (low - high)
    return 1 / (1 + 10 ** min(exponent, 300))


def _reverse_sigmoid(x: float, low: float, high: float, k: float) -> float:
    exponent = 10 * k * (x - (low + high) / 2) / (high - low)
    return 1 / (1 + 10 ** min(exponent, 300))


def _double_sigmoid(x, low, high, coef_div=100.0, coef_si=150.0, coef_se=150.0) -> float:
    """Rises through `low` and falls through `high` (REINVENT's double sigmoid), computed in log space so that a
    value far outside never overflows."""

    def logistic(a: float) -> float:  # 1 / (1 + 10**a), stable
        return 0.0 if a > 300 else 1 / (1 + 10**a)

    rise = logistic(coef_se * (low - x) / coef_div)
    fall = logistic(coef_si * (x - high) / coef_div)
    return rise - (1 - fall)


TRANSFORMS: dict[str, tuple[Callable, tuple[str, ...], dict]] = {  # name -> (function, required, optional)
    "sigmoid": (_sigmoid, ("low", "high", "k"), {}),
    "reverse_sigmoid": (_reverse_sigmoid, ("low", "high", "k"), {}),
    "double_sigmoid": (_double_sigmoid, ("low", "high"), {"coef_div": 100.0, "coef_si": 150.0, "coef_se": 150.0}),
    "step": (lambda x, low, high: float(low <= x <= high), ("low", "high"), {}),
    "value_mapping": (None, ("mapping",), {"default": 0.0}),
    "none": (lambda x: x, (), {}),
}


def transform_of(spec: dict | None, where: str) -> tuple[Callable[[float], float], bool]:
    """(the transform, whether its values lie in [0, 1]) from a component's `transform:` mapping."""
    if spec is None:
        return (lambda x: x), False
    if not isinstance(spec, dict) or spec.get("type") not in TRANSFORMS:
        raise ConfigError(f"{where}: transform needs type: one of {', '.join(TRANSFORMS)} (got {spec!r})")
    name = spec["type"]
    fn, required, optional = TRANSFORMS[name]
    given = {k: v for k, v in spec.items() if k != "type"}
    if missing := [k for k in required if k not in given]:
        raise ConfigError(f"{where}: transform {name} needs {', '.join(missing)}")
    if unknown := sorted(set(given) - set(required) - set(optional)):
        raise ConfigError(
            f"{where}: transform {name} takes {', '.join((*required, *optional)) or 'nothing'}, "
            f"not {', '.join(unknown)}"
        )
    args = {**optional, **given}
    if name == "value_mapping":
        return _value_mapping(args, where), True
    try:
        args = {k: float(v) for k, v in args.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: transform {name}'s parameters must be numbers (got {given})") from None
    if "low" in args and not args["low"] < args["high"]:
        raise ConfigError(f"{where}: transform {name} needs low < high (got low={args['low']}, high={args['high']})")
    return (lambda x: fn(x, **args)), name != "none"


def _value_mapping(args: dict, where: str) -> Callable[[float], float]:
    mapping = args["mapping"]
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(f"{where}: value_mapping's mapping must be {{value: score, ...}}")
    try:
        table = {float(k): float(v) for k, v in mapping.items()}
        default = float(args["default"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: value_mapping's values and scores must be numbers (got {mapping})") from None
    return lambda x: table.get(float(x), default)


# -- components --------------------------------------------------------------------------------------------------
def _descriptor(name: str) -> Callable:
    from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors

    from towerlab.chem import props

    return {
        "qed": QED.qed,
        "sa": props.sa_score,
        "logp": Crippen.MolLogP,
        "mw": Descriptors.MolWt,
        "tpsa": rdMolDescriptors.CalcTPSA,
        "hbd": Lipinski.NumHDonors,
        "hba": Lipinski.NumHAcceptors,
        "rotatable_bonds": rdMolDescriptors.CalcNumRotatableBonds,
        "rings": rdMolDescriptors.CalcNumRings,
        "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings,
        "heavy_atoms": lambda m: m.GetNumHeavyAtoms(),
    }[name]


def _per_mol(fn: Callable) -> Callable[[list[str]], list[float]]:
    from towerlab.chem import props

    return lambda smiles: [float(fn(props.mol(s))) for s in smiles]


def _parsed(c: dict, key: str, parse: Callable, what: str, where: str) -> list:
    """A component's list of molecules or patterns (one string is a list of one), each parsed by RDKit."""
    given = c.get(key)
    given = [given] if isinstance(given, str) else given
    if not given or not isinstance(given, list):
        raise ConfigError(f"{where}: {c['type']} needs {key}: [{what}, ...]")
    out = []
    for text in given:
        if (parsed := parse(str(text))) is None:
            raise ConfigError(f"{where}: {text!r} is not a valid {what} (RDKit cannot parse it)")
        out.append(parsed)
    return out


def _similarity(c: dict, where: str) -> Callable[[list[str]], list[float]]:
    from rdkit import DataStructs

    from towerlab.chem import props

    fps = [props.fingerprint(m) for m in _parsed(c, "smiles", props.mol, "SMILES", where)]
    return _per_mol(lambda m: max(DataStructs.BulkTanimotoSimilarity(props.fingerprint(m), fps)))


def _smarts(c: dict, where: str) -> Callable[[list[str]], list[float]]:
    from rdkit import Chem

    compiled = _parsed(c, "patterns", Chem.MolFromSmarts, "SMARTS pattern", where)
    present = c.get("present", True)
    if not isinstance(present, bool):
        raise ConfigError(f"{where}: present must be true (score 1 where a pattern matches) or false (where none does)")
    return _per_mol(lambda m: float(any(m.HasSubstructMatch(q) for q in compiled) == present))


def _objective(spec: str, where: str) -> Callable[[list[str]], list[float]]:
    from towerlab.chem import objectives

    if not isinstance(spec, str) or not spec or spec.startswith("scoring:"):
        raise ConfigError(f"{where}: objective needs spec: one of {objectives.SPECS} (got {spec!r})")
    inner = objectives.get(spec)

    def score(smiles: list[str]) -> list[float]:
        values = inner.serial(smiles)
        if inner.errors:  # the inner objective counted a failure: the whole objective finds it one by one
            error, inner.errors = inner.errors[0], []
            raise ValueError(f"{spec}: {error}")
        return values

    return score


def _chemvae(c: dict, where: str) -> Callable[[list[str]], list[float]]:
    import torch

    from towerlab.generate import latent
    from towerlab.generate import model as gen

    run, prop = c.get("run"), c.get("property")
    if not run or not prop:
        raise ConfigError(f"{where}: chemvae needs run: DIR (a trained chemvae) and property: NAME (what it predicts)")
    if not Path(run).is_dir():
        raise ConfigError(f"{where}: chemvae run {run} is not a folder; train one with `towerlab train chemvae`")
    m = gen.load(run, str(c.get("checkpoint", "best")), "autoencode", f"{where} (chemvae)")
    names = list(getattr(m.net, "property_names", []))
    if prop not in names:
        raise ConfigError(
            f"{where}: the chemvae run {run} predicts {', '.join(names) or 'no properties'}, not {prop!r}"
        )
    j = names.index(prop)

    @torch.no_grad()
    def score(smiles: list[str]) -> list[float]:
        z, kept, skipped = latent.encode(m, smiles)
        if len(kept) < len(smiles):
            raise ValueError(f"the chemvae run cannot encode every molecule ({skipped.report()})")
        return m.net.properties(z)[:, j].tolist()

    return score


def component(c: dict, i: int) -> tuple[str, Callable[[list[str]], list[float]], bool]:
    """(its name in messages, SMILES list -> raw values, whether the raw values lie in [0, 1])."""
    kind = c.get("type") if isinstance(c, dict) else None
    where = f"component {i + 1} ({kind})" if kind else f"component {i + 1}"
    if kind not in TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(TYPES)} (got {kind!r})")
    takes = ("type", "weight", "transform", *OWN_KEYS.get(kind, ()))
    if unknown := sorted(set(c) - set(takes)):  # a misspelt key is never silently ignored
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a {kind} component takes {', '.join(takes)}")
    if kind in DESCRIPTORS or kind == "heavy_atoms":
        fn = _per_mol(_descriptor(kind))
    elif kind == "similarity":
        fn = _similarity(c, where)
    elif kind == "smarts":
        fn = _smarts(c, where)
    elif kind == "objective":
        fn = _objective(c.get("spec"), where)
    elif kind == "callable":
        if not isinstance(c.get("function"), str) or ":" not in c["function"]:
            raise ConfigError(f"{where}: callable needs function: package.module:function (SMILES -> float)")
        fn = _objective(c["function"], where)
    else:
        fn = _chemvae(c, where)
    return where, fn, kind in BOUNDED


@dataclass
class Part:
    where: str
    raw: Callable[[list[str]], list[float]]
    transform: Callable[[float], float]
    weight: float


def parts_of(doc: dict, path: str) -> tuple[list[Part], str]:
    if not isinstance(doc, dict) or not isinstance(doc.get("components"), list) or not doc["components"]:
        raise ConfigError(f"{path}: a scoring config is components: [{{type: qed}}, ...] (and optionally aggregate:)")
    aggregate = doc.get("aggregate", "geometric")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"{path}: aggregate must be geometric or arithmetic (got {aggregate!r})")
    if unknown := sorted(set(doc) - {"components", "aggregate"}):
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; a scoring config has components: and aggregate:")
    parts = []
    for i, c in enumerate(doc["components"]):
        where, raw, bounded = component(c, i)
        transform, transformed_bounded = transform_of(c.get("transform"), where)
        weight = c.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ConfigError(f"{where}: weight must be a number > 0 (got {weight!r})")
        if aggregate == "geometric" and not (bounded or transformed_bounded):
            raise ConfigError(
                f"{where}: its values may leave [0, 1], where a geometric mean is taken; give it a transform "
                f"(sigmoid, reverse_sigmoid, double_sigmoid, step, value_mapping) or use aggregate: arithmetic"
            )
        parts.append(Part(where, raw, transform, float(weight)))
    return parts, aggregate


def combine(values: list[float], weights: list[float], aggregate: str) -> float:
    total = sum(weights)
    if aggregate == "arithmetic":
        return sum(w * v for w, v in zip(weights, values)) / total
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(sum(w * math.log(min(v, 1.0)) for w, v in zip(weights, values)) / total)


def objective(spec: str):
    """What a design command's --objective names: a scoring config (scoring:FILE), or any objective chem/objectives
    knows. (A scoring config lives here, above chem/, because a chemvae component loads a trained run.)"""
    from towerlab.chem import objectives

    return load(spec.removeprefix("scoring:")) if spec.startswith("scoring:") else objectives.get(spec)


def load(path: str):
    """The Objective a scoring config describes (named scoring:PATH#<first 8 hex of its SHA-256>, so a search
    continued with an edited file is refused as another search)."""
    from towerlab.chem.objectives import Objective

    file = Path(path)
    if not file.is_file():
        raise DataError(f"scoring config {path} not found; write one (see `towerlab chem reinvent --help`)")
    text = file.read_bytes()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(f"scoring config {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    parts, aggregate = parts_of(doc, path)

    def score(smiles: list[str]) -> list[float]:
        columns = [[p.transform(v) for v in p.raw(smiles)] for p in parts]
        weights = [p.weight for p in parts]
        return [combine([col[i] for col in columns], weights, aggregate) for i in range(len(smiles))]

    return Objective(f"scoring:{path}#{hashlib.sha256(text).hexdigest()[:8]}", on_smiles=score)
