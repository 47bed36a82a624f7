"""A graph-based genetic algorithm for molecules (after Jensen 2019, "A graph-based genetic algorithm and generative
model/Monte Carlo tree search for the exploration of chemical space"; GuacaMol's strongest baseline). It needs no
trained model: a population of molecules, parents drawn in proportion to their scores, crossover that joins a
fragment of one parent to a fragment of the other (cut at an acyclic bond, or half of a ring to half of another's
ring, half the time each), and mutations that edit the graph (append, insert, delete or change an atom; change a
bond order; close or open a ring). Every child is sanitized by RDKit, so every molecule it scores is valid; a child
larger than a size drawn for it from Jensen's distribution (39 +- 3.5 heavy atoms) is dropped.

Resumable generation by generation: every score is appended to scored.jsonl as it is made and each generation's
summary to history.jsonl, and after each generation the population, the objective's counts and how many lines of
each are the run's own go into state.json (written atomically; a start scored from a large file resumes chunk by
chunk). As GuacaMol's baseline, it stops early when the population's scores have not changed for --patience
generations. Each generation's randomness comes from (seed, generation), so a run stopped at any moment and
started again continues to the same molecules. Each molecule is scored once (by canonical SMILES), and --max-calls
bounds the objective calls, never exceeded."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

from rdkit import Chem, RDLogger

from towerlab.chem import props
from towerlab.chem.objectives import Objective
from towerlab.errors import ConfigError, DataError
from towerlab.files import atomic_write, held, json_text, make_dir
from towerlab.generate.outputs import write_outputs
from towerlab.generate.scoring import Journal, JsonLines, best_of_file, ranked, score_new
from towerlab.generate.settings import GraphGaSettings as Settings
from towerlab.generate.settings import other_settings

RDLogger.DisableLog("rdApp.*")  # the operators try edits RDKit refuses; each refusal is a dropped child, not news
# A child must have more than MIN_ATOMS heavy atoms and fewer than a size drawn from N(SIZE) for it: Jensen's rule,
# with the mean and spread GuacaMol's baseline uses; it keeps a score that grows with size (logP) from growing chains
MIN_ATOMS, SIZE = 5, (39.15, 3.50)
# Recorded in state.json: a run begun with other operators (before the ring crossover: none recorded) is not
# continued by these, which would not make the molecules it would have made
OPERATORS = "jensen"
ELEMENTS = (6, 6, 6, 6, 7, 7, 8, 8, 9, 16, 17)  # what an added atom is: carbon most often, as in organic molecules
CUT = Chem.MolFromSmarts("[*]-;!@[*]")  # a single bond outside any ring: where chain crossover cuts
# where ring crossover cuts: two bonds of one ring (atom pairs of the match), as in Jensen's crossover
RING_CUTS = (
    (Chem.MolFromSmarts("[R]@[R]@[R]@[R]"), ((0, 1), (2, 3))),
    (Chem.MolFromSmarts("[R]@[R;!D2]@[R]"), ((0, 1), (1, 2))),
)


def _kekule(m: Chem.Mol) -> Chem.RWMol:
    """An editable copy with explicit single/double bonds: a fragment cut out of an aromatic ring keeps them."""
    w = Chem.RWMol(Chem.Mol(m))
    Chem.Kekulize(w, clearAromaticFlags=True)
    return w


def _cut(m: Chem.Mol, bonds: list[int]) -> tuple[Chem.Mol, Chem.Mol] | None:
    """m cut at these bonds into exactly two fragments, each with a dummy atom labelled k where the k-th bond was."""
    labels = [(k + 1, k + 1) for k in range(len(bonds))]
    cut = Chem.FragmentOnBonds(m, bonds, addDummies=True, dummyLabels=labels)
    parts = Chem.GetMolFrags(cut, asMols=True, sanitizeFrags=False)
    return (parts[0], parts[1]) if len(parts) == 2 else None


class _Parent:
    """A parent kekulized once, with each cut pattern's matches found once for all of crossover's tries."""

    def __init__(self, m: Chem.Mol):
        self.mol = _kekule(m)
        self._matches: dict[Chem.Mol, tuple] = {}

    def matches(self, pattern: Chem.Mol) -> tuple:
        # keyed by the pattern object (hashed by identity, and kept alive by the key, so a key is never reused)
        if pattern not in self._matches:
            self._matches[pattern] = self.mol.GetSubstructMatches(pattern)
        return self._matches[pattern]


def _chain_fragments(p: _Parent, rng: random.Random) -> tuple[Chem.Mol, Chem.Mol] | None:
    """Cut at one random acyclic single bond."""
    m, bonds = p.mol, p.matches(CUT)
    if not bonds:
        return None
    a, b = rng.choice(bonds)
    return _cut(m, [m.GetBondBetweenAtoms(a, b).GetIdx()])


def _ring_fragments(parent: _Parent, rng: random.Random) -> tuple[Chem.Mol, Chem.Mol] | None:
    """Cut at two bonds of one ring (two bonds apart, or adjacent at a branching ring atom, as Jensen's
    crossover does): each fragment carries half a ring, to be closed with half of another molecule's."""
    pattern, (p, q) = rng.choice(RING_CUTS)
    m, matches = parent.mol, parent.matches(pattern)
    if not matches:
        return None
    match = rng.choice(matches)
    return _cut(m, [m.GetBondBetweenAtoms(match[i], match[j]).GetIdx() for i, j in (p, q)])


def _join(fa: Chem.Mol, fb: Chem.Mol, rng: random.Random) -> Chem.Mol | None:
    """Bond fa to fb where each was cut: the atom beside fa's dummy k to the atom beside fb's dummy k, for every
    label k; a ring's new bonds single or double at random (RDKit's sanitizing keeps what valences allow)."""
    combo = Chem.RWMol(Chem.CombineMols(fa, fb))
    split = fa.GetNumAtoms()
    dummies = {}
    for atom in combo.GetAtoms():
        if atom.GetAtomicNum() == 0:
            dummies.setdefault(atom.GetIsotope(), []).append(atom.GetIdx())
    if not dummies or any(len(d) != 2 or (d[0] < split) == (d[1] < split) for d in dummies.values()):
        return None
    orders = (Chem.BondType.SINGLE,) if len(dummies) == 1 else (Chem.BondType.SINGLE, Chem.BondType.DOUBLE)
    for pair in dummies.values():
        ends = [combo.GetAtomWithIdx(d).GetNeighbors()[0].GetIdx() for d in pair]
        if ends[0] == ends[1] or combo.GetBondBetweenAtoms(*ends) is not None:
            return None
        combo.AddBond(ends[0], ends[1], rng.choice(orders))
    for d in sorted((d for pair in dummies.values() for d in pair), reverse=True):
        combo.RemoveAtom(d)
    return _sanitized(combo)


def crossover(a: Chem.Mol, b: Chem.Mol, rng: random.Random) -> Chem.Mol | None:
    """Half the time a ring crossover, else a chain one (Jensen's split): a fragment of a joined to a fragment of b
    cut the same way; up to ten tries for a valid child."""
    cutter = _ring_fragments if rng.random() < 0.5 else _chain_fragments
    ka, kb = _Parent(a), _Parent(b)
    for _ in range(10):
        fa, fb = cutter(ka, rng), cutter(kb, rng)
        if fa is not None and fb is not None and (kid := _join(rng.choice(fa), rng.choice(fb), rng)) is not None:
            return kid
    return None


def _sanitized(m: Chem.RWMol) -> Chem.Mol | None:
    try:
        out = m.GetMol()
        for atom in out.GetAtoms():
            atom.SetNoImplicit(False)
            atom.SetNumExplicitHs(0)
            atom.SetIsAromatic(atom.GetIsAromatic() and atom.IsInRing())
        Chem.SanitizeMol(out)
        smiles = Chem.MolToSmiles(out)
        return Chem.MolFromSmiles(smiles) if smiles and "." not in smiles else None
    except Exception:  # noqa: BLE001 -- RDKit refuses impossible valences in many ways; the child is dropped
        return None


def _free(m: Chem.Mol, need: int = 1) -> list[int]:
    return [a.GetIdx() for a in m.GetAtoms() if a.GetTotalNumHs() >= need]


def mutate(m: Chem.Mol, rng: random.Random) -> Chem.Mol | None:
    """One random graph edit; None when RDKit refuses the result."""
    w = _kekule(m)
    kind = rng.choice(("append", "insert", "delete", "change_atom", "bond_order", "close_ring", "open_ring"))
    atoms = list(range(w.GetNumAtoms()))
    if kind == "append" and (free := _free(m)):
        new = w.AddAtom(Chem.Atom(rng.choice(ELEMENTS)))
        w.AddBond(rng.choice(free), new, Chem.BondType.SINGLE)
    elif kind == "insert" and (acyclic := [b for b in w.GetBonds() if not b.IsInRing()]):
        bond = rng.choice(acyclic)
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        w.RemoveBond(i, j)
        new = w.AddAtom(Chem.Atom(rng.choice((6, 6, 7, 8, 16))))
        w.AddBond(i, new, Chem.BondType.SINGLE)
        w.AddBond(new, j, Chem.BondType.SINGLE)
    elif kind == "delete" and (ends := [a.GetIdx() for a in w.GetAtoms() if a.GetDegree() == 1]) and len(atoms) > 2:
        w.RemoveAtom(rng.choice(ends))
    elif kind == "change_atom":
        w.GetAtomWithIdx(rng.choice(atoms)).SetAtomicNum(rng.choice(ELEMENTS))
    elif kind == "bond_order" and w.GetNumBonds():
        bond = w.GetBondWithIdx(rng.randrange(w.GetNumBonds()))
        bond.SetBondType(rng.choice((Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)))
    elif kind == "close_ring" and len(free := _free(m)) >= 2:
        dist = Chem.GetDistanceMatrix(m)
        pairs = [(i, j) for i in free for j in free if i < j and 4 <= dist[i][j] <= 6]  # rings of 5 to 7 atoms
        if not pairs:
            return None
        w.AddBond(*rng.choice(pairs), Chem.BondType.SINGLE)
    elif kind == "open_ring" and (ring := [b for b in w.GetBonds() if b.IsInRing()]):
        bond = rng.choice(ring)
        w.RemoveBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
    else:
        return None
    return _sanitized(w)


def child(pool: list[tuple[str, float]], rng: random.Random, rate: float) -> str | None:
    """Two parents drawn in proportion to their scores (shifted to be positive), crossed, maybe mutated (up to ten
    tries for a valid mutant, as Jensen's): the child's canonical SMILES, or None when no valid child came out or
    it is larger than a size drawn for it (Jensen's rule)."""
    weights = [v for _, v in pool]
    low = min(weights)
    weights = [v - low + 1e-6 for v in weights]
    a, b = (props.mol(s) for s, _ in rng.choices(pool, weights=weights, k=2))
    kid = crossover(a, b, rng)
    if kid is not None and rng.random() < rate:
        kid = next((m for m in (mutate(kid, rng) for _ in range(10)) if m is not None), None)
    if kid is None or not MIN_ATOMS < kid.GetNumHeavyAtoms() < rng.gauss(*SIZE):
        return None
    return Chem.MolToSmiles(kid)


# -- the run ---------------------------------------------------------------------------------------------------
JOURNAL = "scored.jsonl"  # every score in call order (scoring.Journal)
HISTORY = "history.jsonl"  # one line a generation


def _differ(theirs: dict, mine: dict) -> str:
    """What makes a search the same search: all but its budget (it may be given more time). '' when the same,
    else the settings that differ, for the refusal."""
    return ", ".join(other_settings(theirs, mine, free=("generations", "max_calls", "patience")))


def _load(out: Path, mine: dict, objective: Objective) -> dict | None:
    state_file = out / "state.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as e:
        raise DataError(
            f"{state_file} is damaged ({type(e).__name__}); delete {out} to start the search again"
        ) from None
    if differ := _differ(state["settings"], mine):
        raise ConfigError(f"{out} holds a graph GA with other settings ({differ}: {state_file}); choose another --out")
    objective.restore(state["objective"])
    journal, history = Journal(out / JOURNAL), JsonLines(out / HISTORY)
    if "seen" in state:  # a run begun before the journal kept every score in state.json: moved to the journal
        journal.read(0)
        journal.append(state["seen"], 0)
    else:
        state["seen"] = journal.read(state["scored"])
    if "history" in state:  # and its history: moved to history.jsonl
        history.items(0)
        history.add(state["history"])
    else:
        # one line a generation, and one for the start (generation 0) in runs begun since it is recorded
        state["history"] = history.items(state.get("history_lines", state["generation"]))
    print(f"resuming {out} after generation {state['generation']}")
    return state


def _save(out: Path, state: dict, settings: dict, objective: Objective) -> None:
    """The generation's checkpoint: the scores and the history stay in their journals (already on disk), how many
    lines of each are the run's goes here."""
    small = {k: v for k, v in state.items() if k not in ("seen", "history")}
    small.update(
        scored=len(state["seen"]), history_lines=len(state["history"]), settings=settings, objective=objective.state()
    )
    atomic_write(out / "state.json", json.dumps(small).encode())


def _same_start(out: Path, mine: dict) -> None:
    """Scores journaled by a start that was cut off are reused only by the same search (the same objective)."""
    marker = out / "start.json"
    differ = _differ(json.loads(marker.read_text()), mine) if marker.is_file() else "not recorded"
    if (out / JOURNAL).is_file() and differ:
        raise ConfigError(
            f"{out} holds the start of a graph GA with other settings ({differ}: {marker}); choose another --out"
        )
    atomic_write(marker, json.dumps(mine).encode())


def _generation(gen: int, top: list[float | None], children: int, new: int, calls: int) -> dict:
    """One line of progress.csv: the kept population's scores (best first) after generation `gen`."""
    kept = [v for v in top if v is not None]
    return {
        "generation": gen,
        "best": kept[0] if kept else None,
        "top10_mean": sum(kept[:10]) / len(kept[:10]) if kept else None,
        "mean_kept": sum(kept) / len(kept) if kept else None,
        "children": children,
        "new_molecules": new,
        "scoring_calls": calls,
    }


def graph_ga(objective: Objective, start: str, out: Path, s: Settings, start_limit: int = 0) -> list[dict]:
    """Run (or continue) the graph GA into `out`, from the molecules of the SMILES file `start`. A second process
    in the same folder is refused while the first lives (both would append to one journal)."""
    s.validate()
    with held(make_dir(out, "the output folder (--out)"), "searched"):
        return _search(objective, start, out, s, start_limit)


def _search(objective: Objective, start: str, out: Path, s: Settings, start_limit: int) -> list[dict]:
    mine = {
        **asdict(s),
        "objective": objective.name,
        "start": str(Path(start).absolute()),
        "start_limit": start_limit,
        "operators": OPERATORS,
    }
    state, journal = _load(out, mine, objective), Journal(out / JOURNAL)
    if state is None:
        _same_start(out, mine)
        seen: dict[str, float | None] = {}
        population = best_of_file(start, objective, s.population, seen, start_limit, s.seed, s.max_calls, journal)
        # generation 0 is the start: its best is the run's best when the start uses the whole budget
        state = {
            "generation": 0,
            "population": population,
            "seen": seen,
            "history": [_generation(0, [seen[c] for c in population], 0, objective.calls, objective.calls)],
        }
        JsonLines(out / HISTORY).add(state["history"])
        _save(out, state, mine, objective)  # the starting scores are never paid twice
    seen, population, history = state["seen"], state["population"], state["history"]
    stale = state.get("stale", 0)  # generations in a row that left the population's scores as they were
    for gen in range(state["generation"] + 1, s.generations + 1):
        if s.max_calls and objective.calls >= s.max_calls:
            print(f"--max-calls {s.max_calls} reached after generation {gen - 1}")
            break
        if s.patience and stale >= s.patience:
            print(
                f"the population's scores have not changed for {stale} generations (--patience {s.patience}): "
                f"stopped after generation {gen - 1}"
            )
            break
        rng = random.Random(s.seed * 1_000_003 + gen)
        pool = [(c, seen[c]) for c in population]
        children = [c for c in (child(pool, rng, s.mutation_rate) for _ in range(s.offspring)) if c]
        before, known = objective.calls, len(seen)
        score_new(children, objective, seen, s.max_calls)
        journal.append(seen, known)
        scores_before = [seen[c] for c in population]
        population = ranked(seen, population + children)[: s.population]
        stale = stale + 1 if [seen[c] for c in population] == scores_before else 0  # GuacaMol's test: the scores
        history.append(
            _generation(gen, [seen[c] for c in population], len(children), objective.calls - before, objective.calls)
        )
        print(json_text(history[-1]), flush=True)
        JsonLines(out / HISTORY).add(history[-1:])
        state = {"generation": gen, "population": population, "seen": seen, "history": history, "stale": stale}
        _save(out, state, mine, objective)
    write_outputs(out, seen, history, objective.name, x="generation", max_calls=s.max_calls)
    return history
