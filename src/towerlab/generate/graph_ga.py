"""A graph-based genetic algorithm for molecules (after Jensen 2019, "A graph-based genetic algorithm and generative
model/Monte Carlo tree search for the exploration of chemical space"; GuacaMol's strongest baseline). It needs no
trained model: a population of molecules, parents drawn in proportion to their scores, crossover that joins a
fragment of one parent to a fragment of the other at a cut acyclic bond, and mutations that edit the graph (append,
insert, delete or change an atom; change a bond order; close or open a ring). Every child is sanitized by RDKit, so
every molecule it scores is valid; children larger than the population's size range are dropped.

Resumable generation by generation: after each one the population, every score so far, the history and the
objective's counts go into state.json (written atomically). As GuacaMol's baseline, it stops early when the
population's scores have not changed for --patience generations. Each generation's randomness comes from (seed,
generation), so a run stopped at any moment and started again continues to the same molecules. Each molecule is
scored once (by canonical SMILES), and --max-calls bounds the objective calls, never exceeded."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

from rdkit import Chem, RDLogger

from towerlab.chem import props
from towerlab.chem.objectives import Objective
from towerlab.errors import ConfigError, DataError
from towerlab.files import atomic_write, make_dir
from towerlab.generate.hillclimb import write_outputs
from towerlab.generate.settings import GraphGaSettings as Settings
from towerlab.generate.scoring import best_of_file, ranked, score_new

RDLogger.DisableLog("rdApp.*")  # the operators try edits RDKit refuses; each refusal is a dropped child, not news
ELEMENTS = (6, 6, 6, 6, 7, 7, 8, 8, 9, 16, 17)  # what an added atom is: carbon most often, as in organic molecules
CUT = Chem.MolFromSmarts("[*]-;!@[*]")  # a single bond outside any ring: where crossover cuts


def _fragments(m: Chem.Mol, rng: random.Random) -> tuple[Chem.Mol, Chem.Mol] | None:
    """The molecule cut at one random acyclic single bond: two fragments, each with a dummy atom where it was cut."""
    bonds = m.GetSubstructMatches(CUT)
    if not bonds:
        return None
    a, b = rng.choice(bonds)
    cut = Chem.FragmentOnBonds(m, [m.GetBondBetweenAtoms(a, b).GetIdx()], addDummies=True, dummyLabels=[(1, 1)])
    parts = Chem.GetMolFrags(cut, asMols=True, sanitizeFrags=False)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def crossover(a: Chem.Mol, b: Chem.Mol, rng: random.Random) -> Chem.Mol | None:
    """A fragment of a joined to a fragment of b where each was cut (their dummy atoms removed, one bond made)."""
    fa, fb = _fragments(a, rng), _fragments(b, rng)
    if fa is None or fb is None:
        return None
    combo = Chem.RWMol(Chem.CombineMols(rng.choice(fa), rng.choice(fb)))
    dummies = [at.GetIdx() for at in combo.GetAtoms() if at.GetAtomicNum() == 0]
    if len(dummies) != 2:
        return None
    ends = [combo.GetAtomWithIdx(d).GetNeighbors()[0].GetIdx() for d in dummies]
    combo.AddBond(ends[0], ends[1], Chem.BondType.SINGLE)
    for d in sorted(dummies, reverse=True):
        combo.RemoveAtom(d)
    return _sanitized(combo)


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
    w = Chem.RWMol(Chem.Mol(m))
    Chem.Kekulize(w, clearAromaticFlags=True)
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


def child(pool: list[tuple[str, float]], rng: random.Random, rate: float, max_atoms: int) -> str | None:
    """Two parents drawn in proportion to their scores (shifted to be positive), crossed, maybe mutated: the
    child's canonical SMILES, or None when no valid child came out."""
    weights = [v for _, v in pool]
    low = min(weights)
    weights = [v - low + 1e-6 for v in weights]
    a, b = (props.mol(s) for s, _ in rng.choices(pool, weights=weights, k=2))
    kid = crossover(a, b, rng)
    if kid is not None and rng.random() < rate:
        kid = mutate(kid, rng)
    if kid is None or kid.GetNumHeavyAtoms() > max_atoms:
        return None
    return Chem.MolToSmiles(kid)


# -- the run ---------------------------------------------------------------------------------------------------
def _size_limit(population: list[str]) -> int:
    """Children may grow to the starting population's mean heavy-atom count plus three standard deviations."""
    import statistics

    sizes = [props.mol(c).GetNumHeavyAtoms() for c in population]
    spread = statistics.pstdev(sizes) if len(sizes) > 1 else 0.0
    return max(10, round(statistics.mean(sizes) + 3 * spread))


def _load(out: Path, mine: dict, objective: Objective) -> dict | None:
    state_file = out / "state.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{state_file} is damaged ({type(e).__name__}); delete {out} to start the search again") from None
    free = ("generations", "max_calls", "patience")  # a search may be given more time
    theirs = {k: v for k, v in state["settings"].items() if k not in free}
    if theirs != {k: v for k, v in mine.items() if k not in free}:
        raise ConfigError(f"{out} holds a graph GA with other settings ({state_file}); choose another --out")
    objective.restore(state["objective"])
    print(f"resuming {out} after generation {state['generation']}")
    return state


def graph_ga(objective: Objective, start: str, out: Path, s: Settings, start_limit: int = 0) -> list[dict]:
    """Run (or continue) the graph GA into `out`, from the molecules of the SMILES file `start`."""
    s.validate()
    make_dir(out, "the output folder (--out)")
    mine = {**asdict(s), "objective": objective.name, "start": str(Path(start).absolute()), "start_limit": start_limit}
    state = _load(out, mine, objective)
    if state is None:
        seen: dict[str, float | None] = {}
        population = best_of_file(start, objective, s.population, seen, start_limit, s.seed, s.max_calls)
        state = {"generation": 0, "population": population, "seen": seen, "history": [],
                 "max_atoms": _size_limit(population), "settings": mine, "objective": objective.state()}
        atomic_write(out / "state.json", json.dumps(state).encode())  # the starting scores are never paid twice
    seen, population, history = state["seen"], state["population"], state["history"]
    stale = state.get("stale", 0)  # generations in a row that left the population's scores as they were
    for gen in range(state["generation"] + 1, s.generations + 1):
        if s.max_calls and objective.calls >= s.max_calls:
            print(f"--max-calls {s.max_calls} reached after generation {gen - 1}")
            break
        if s.patience and stale >= s.patience:
            print(f"the population's scores have not changed for {stale} generations (--patience {s.patience}): "
                  f"stopped after generation {gen - 1}")
            break
        rng = random.Random(s.seed * 1_000_003 + gen)
        pool = [(c, seen[c]) for c in population]
        children = [c for c in (child(pool, rng, s.mutation_rate, state["max_atoms"]) for _ in range(s.offspring)) if c]
        before = objective.calls
        score_new(children, objective, seen, s.max_calls)
        scores_before = [seen[c] for c in population]
        population = ranked(seen, population + children)[:s.population]
        stale = stale + 1 if [seen[c] for c in population] == scores_before else 0  # GuacaMol's test: the scores
        top = [seen[c] for c in population]
        history.append({"generation": gen, "best": top[0], "top10_mean": sum(top[:10]) / len(top[:10]),
                        "mean_kept": sum(top) / len(top), "children": len(children),
                        "new_molecules": objective.calls - before, "scoring_calls": objective.calls})
        print(json.dumps(history[-1]), flush=True)
        state = {"generation": gen, "population": population, "seen": seen, "history": history, "stale": stale,
                 "max_atoms": state["max_atoms"], "settings": mine, "objective": objective.state()}
        atomic_write(out / "state.json", json.dumps(state).encode())
    write_outputs(out, seen, history, objective.name, x="generation", max_calls=s.max_calls)
    return history
