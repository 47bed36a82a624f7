"""Goal-directed molecule design against the published figures, task by task. Never part of `make test`.

    TOWERLAB_DATA=../shared/data python bench/mol_design.py pmo graph-ga [--seeds 0 1 2] [--tasks qed median1]
    TOWERLAB_DATA=../shared/data python bench/mol_design.py pmo hillclimb --run PRIOR_RUN
    TOWERLAB_DATA=../shared/data python bench/mol_design.py pmo mcts --run PRIOR_RUN
    TOWERLAB_DATA=../shared/data python bench/mol_design.py pmo reinvent --run PRIOR_RUN [--seeds 0 1 2] [--agent pmo]
    TOWERLAB_DATA=../shared/data python bench/mol_design.py guacamol graph-ga --ga pmo --max-calls 40000 [--patience N]
    TOWERLAB_DATA=../shared/data python bench/mol_design.py guacamol graph-ga --ga pmo --max-calls 30000 \
        --start-limit 0 --free-start --holdout-filter   # all the corpus but GuacaMol's holdout, outside the budget
    TOWERLAB_DATA=../shared/data python bench/mol_design.py guacamol hillclimb --run PRIOR_RUN --max-calls 30000 \
        --start-limit 0 --free-start --holdout-filter [--start-scores GRAPH_GA_RUN_FOLDER]   # 20 rounds of 1,024
    TOWERLAB_DATA=../shared/data python bench/mol_design.py plogp mcts --run ZINC_PRIOR_RUN [--runs 10 --budget 5000]
    TOWERLAB_DATA=../shared/data python bench/mol_design.py plogp graph-ga --budget 1000
    python bench/mol_design.py curves [--tasks qed median1 osimertinib_mpo]   # top-10 mean vs calls, from the samples
    TOWERLAB_DATA=../shared/data python bench/mol_design.py corpus      # writes bench/out/design/broad.smi
    TOWERLAB_DATA=../shared/data python bench/mol_design.py holdout-filtered   # broad-guacamol.smi (GuacaMol's filter)

pmo: the 20 PMO tasks that run offline (Gao et al. 2022, "Sample efficiency matters"; drd2, gsk3b and jnk3 need
classifier files), 10,000 oracle calls each; per task the area under the top-10 curve (PMO's main metric,
towerlab.generate.scoring.auc_top) beside PMO's published means for REINVENT, Graph GA and SMILES LSTM-HC. The
graph GA runs with PMO's tuned settings (population 120, offspring 70, mutation rate 0.067, the first population
120 random ZINC molecules, all counted as calls); hill-climb with its defaults (GuacaMol's baseline) from the prior
alone, as PMO ran it.
plogp: penalized logP as ChemTS and Jensen 2019 measured it: 10 runs, each run's best on ChemTS's scale (plogp-z,
what both optimise) and on the raw scale; ChemTS counts 5,000 valid molecules, Jensen's GA 1,000 (population 20,
20 children per generation, mutation rate 1%, the first population 20 random molecules of the first 1,000 of ZINC).
guacamol: the 20 GuacaMol goal-directed v2 benchmarks, each scored by GuacaMol's own assess_model with the
optimiser as the generator; per task the score, the oracle calls and CPU seconds, beside Brown et al. 2019 Table 2.
The first population: the best molecules of a scored draw of --start-limit molecules of the broad corpus (the
baselines score all of ChEMBL, which is not here).

Every task is resumable: a finished one (result.json in its folder) is skipped on a re-run, a half-done one
continues where the optimiser's own checkpoint stopped (graph GA: by generation, hill-climb: by round). The
molecules behind every figure are written under docs/samples/: guacamol/<method>/<benchmark>.smi (what GuacaMol
scored), plogp/<method>/run<k>.csv (each run's 100 best, both scales), pmo/<method>/seed<k>/<task>.csv
(call,smiles,score of every molecule that was ever among the ten best, with
the total calls: enough to rescore each molecule and recompute the curve). Tables print; JSON in bench/out/design/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

OUT = Path("bench/out/design")
SAMPLES = Path("docs/samples")
DATA = Path(os.environ.get("TOWERLAB_DATA", "../shared/data"))
ZINC = DATA / "zinc250k_jtvae" / "valid.txt"

# Gao et al. 2022 (PMO), Table 3 (AUC top-10 at 10,000 calls, mean of 5 runs), as reproduced in Lee et al. 2024
# (f-RAG) Table 1 and its appendix table: REINVENT, Graph GA, SMILES LSTM-HC. Celecoxib rediscovery as quoted by
# the PSV-PPO paper (2025): REINVENT 0.713, LSTM-HC 0.539 (f-RAG's appendix has 0.710 and 0.380; with 0.539 the
# LSTM-HC rows add up to PMO's 23-task sum, 12.223, within 0.011; with 0.380 they miss it by 0.17).
PMO_PUBLISHED = {
    "albuterol_similarity": (0.882, 0.838, 0.719),
    "amlodipine_mpo": (0.635, 0.661, 0.593),
    "celecoxib_rediscovery": (0.713, 0.630, 0.539),
    "deco_hop": (0.666, 0.619, 0.826),
    "fexofenadine_mpo": (0.784, 0.760, 0.725),
    "isomers_c7h8n2o2": (0.852, 0.862, 0.485),
    "isomers_c9h10n2o2pf2cl": (0.642, 0.719, 0.342),
    "median1": (0.356, 0.294, 0.255),
    "median2": (0.276, 0.273, 0.248),
    "mestranol_similarity": (0.618, 0.579, 0.526),
    "osimertinib_mpo": (0.837, 0.831, 0.796),
    "perindopril_mpo": (0.537, 0.538, 0.489),
    "qed": (0.941, 0.940, 0.939),
    "ranolazine_mpo": (0.760, 0.728, 0.714),
    "scaffold_hop": (0.560, 0.517, 0.533),
    "sitagliptin_mpo": (0.021, 0.433, 0.066),
    "thiothixene_rediscovery": (0.534, 0.479, 0.438),
    "troglitazone_rediscovery": (0.441, 0.390, 0.354),
    "valsartan_smarts": (0.178, 0.000, 0.000),
    "zaleplon_mpo": (0.358, 0.346, 0.206),
}
# The graph GA's two published settings: GuacaMol's baseline (it stops when the population has not changed for 5
# generations) and PMO's tuned ones (PMO runs go on to the budget: it stops a run whose top 100 stalls and extends
# its curve flat, and going on can only add)
GA_SETTINGS = {
    "guacamol": dict(population=100, offspring=200, mutation_rate=0.01, patience=5),
    "pmo": dict(population=120, offspring=70, mutation_rate=0.067, patience=0),
}
# Brown et al. 2019 (GuacaMol), Table 2: Graph GA and SMILES LSTM per v2 benchmark.
GUACAMOL_PUBLISHED = {
    "Celecoxib rediscovery": (1.000, 1.000),
    "Troglitazone rediscovery": (1.000, 1.000),
    "Thiothixene rediscovery": (1.000, 1.000),
    "Aripiprazole similarity": (1.000, 1.000),
    "Albuterol similarity": (1.000, 1.000),
    "Mestranol similarity": (1.000, 1.000),
    "C11H24": (0.971, 0.993),
    "C9H10N2O2PF2Cl": (0.982, 0.879),
    "Median molecules 1": (0.406, 0.438),
    "Median molecules 2": (0.432, 0.422),
    "Osimertinib MPO": (0.953, 0.907),
    "Fexofenadine MPO": (0.998, 0.959),
    "Ranolazine MPO": (0.920, 0.855),
    "Perindopril MPO": (0.792, 0.808),
    "Amlodipine MPO": (0.894, 0.894),
    "Sitagliptin MPO": (0.891, 0.545),
    "Zaleplon MPO": (0.754, 0.669),
    "Valsartan SMARTS": (0.990, 0.978),
    "Deco Hop": (1.000, 0.996),
    "Scaffold Hop": (1.000, 0.998),
}


def machine() -> str:
    import torch

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


# -- the broad corpus -------------------------------------------------------------------------------------------
def corpus(_args=None) -> Path:
    """MOSES train + ZINC (valid, test) + Tox21, canonical and deduplicated, one SMILES per line; mixtures (a '.'
    in the SMILES: salts, counter-ions) are left out. Written once."""
    path = OUT / "broad.smi"
    if path.is_file():
        return path
    from towerlab.chem.file_cache import canonical_forms
    from towerlab.data import smiles as smiles_data

    files = [
        DATA / "moses" / "train.csv.gz",
        DATA / "zinc250k_jtvae" / "valid.txt",
        DATA / "zinc250k_jtvae" / "test.txt",
        DATA / "tox21" / "tox21.csv",
    ]
    forms: set[str] = set()
    for f in files:
        got = {c for c in canonical_forms(smiles_data.read(f)) if c and "." not in c}
        print(f"{f}: {len(got)} molecules")
        forms |= got
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sorted(forms)) + "\n")
    print(f"wrote {path}: {len(forms)} molecules")
    return path


def holdout_filtered(_args=None) -> Path:
    """The broad corpus as GuacaMol filtered ChEMBL for its benchmarks (guacamol/data/get_data.py): without its ten
    holdout molecules (the rediscovery and similarity targets and the drugs behind three MPO tasks) and without
    every molecule whose ECFP4 (radius 2, 4,096 bits) Tanimoto similarity to one of them is above 0.323. Without
    it the start would hold the targets themselves (six are Tox21 compounds) and a rediscovery would be a lookup.
    GuacaMol's own holdout file, fingerprints and threshold; written once."""
    path = OUT / "broad-guacamol.smi"
    if path.is_file():
        return path
    from rdkit import DataStructs

    from towerlab.chem import guacamol_adapter

    guacamol_adapter.guacamol()  # provides SciPy's removed histogram before guacamol is imported
    from guacamol.data import get_data
    from guacamol.utils.chemistry import canonicalize_list, get_fingerprints_from_smileslist

    raw = Path(get_data.__file__).with_name("holdout_set_gcm_v1.smiles").read_text().split("\n")
    holdout = canonicalize_list([line.split(" ")[0] for line in raw if line.strip()], False)
    holdout_fps = get_fingerprints_from_smileslist(holdout)
    molecules = corpus().read_text().split()
    kept = []
    for i in range(0, len(molecules), 10_000):
        chunk = molecules[i : i + 10_000]
        for smiles, fp in zip(chunk, get_fingerprints_from_smileslist(chunk)):
            if max(DataStructs.BulkTanimotoSimilarity(fp, holdout_fps)) <= get_data.TANIMOTO_CUTOFF:
                kept.append(smiles)
    path.write_text("\n".join(kept) + "\n")
    print(
        f"wrote {path}: {len(kept)} of the {len(molecules)} molecules of {corpus()} (GuacaMol's holdout filter: "
        f"{len(holdout)} holdout molecules, ECFP4 Tanimoto > {get_data.TANIMOTO_CUTOFF} removed)"
    )
    return path


# -- one optimiser on one objective -----------------------------------------------------------------------------
def optimise(method: str, objective, out: Path, args, start: str, start_limit: int, max_calls: int, seed: int) -> None:
    if method == "graph-ga":
        from towerlab.generate.graph_ga import Settings, graph_ga

        ga = GA_SETTINGS[getattr(args, "ga", None) or ("pmo" if args.bench == "pmo" else "guacamol")]
        patience = ga["patience"] if getattr(args, "patience", None) is None else args.patience
        s = Settings(**{**ga, "patience": patience}, generations=10**6, max_calls=max_calls, seed=seed)
        graph_ga(objective, start, out, s, start_limit)
    elif method in ("hillclimb", "mcts", "reinvent"):
        from towerlab.generate import model as gen

        m = gen.load(args.run)
        if method == "reinvent":  # on to the last call, as PMO runs REINVENT
            from towerlab.generate.reinvent import Settings, reinvent

            agent = AGENTS[getattr(args, "agent", None) or "reinvent4"]
            reinvent(m, objective, out, Settings(**agent, steps=10**6, max_calls=max_calls, seed=seed))
        elif method == "hillclimb":
            from towerlab.generate.hillclimb import Settings, hillclimb

            rounds = getattr(args, "rounds", None) or 100_000  # pmo: on to the last call, as PMO runs it
            hillclimb(m, objective, out, Settings(rounds=rounds, max_calls=max_calls, seed=seed), start, start_limit)
        else:
            from towerlab.generate.mcts import Settings, mcts

            mcts(m, objective, out, Settings(budget=10**9, max_calls=max_calls, seed=seed))
    else:
        raise SystemExit(f"unknown method {method!r}")


def task(folder: Path, run) -> dict:
    """Run one task unless its result.json exists; the result with its CPU and wall seconds over every sitting (a
    sitting's running totals go to clock.json every 20 s, so a task stopped and continued counts what it spent
    before the stop, to within 20 s)."""
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    resumed = any(folder.iterdir())
    clock = folder / "clock.json"
    before = json.loads(clock.read_text()) if clock.is_file() else {"cpu_s": 0.0, "wall_s": 0.0, "sittings": 0}
    t0, cpu0 = time.time(), time.process_time()

    def spent() -> dict:
        return {
            "cpu_s": before["cpu_s"] + time.process_time() - cpu0,
            "wall_s": before["wall_s"] + time.time() - t0,
            "sittings": before["sittings"] + 1,
        }

    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(20):
            clock.write_text(json.dumps(spent()))

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        result = run()
    finally:
        stop.set()
        ticker.join()
    result.update(**spent(), resumed=resumed)
    done.write_text(json.dumps(result, indent=1))
    return result


def _entrants(seen: dict, k: int = 10) -> list[dict]:
    """Every molecule that was among the k best when it was scored, with its call number: the top-k curve."""
    from towerlab.generate.scoring import top_k_walk

    walk = top_k_walk(list(seen.values()), k)
    return [{"call": i, "smiles": smiles, "score": v} for smiles, (i, v, entered, _) in zip(seen, walk) if entered]


def _seen(out: Path) -> dict:
    """The optimiser's scores in call order (its calls.csv)."""
    return {r["smiles"]: float(r["score"]) if r["score"] else None for r in csv.DictReader(open(out / "calls.csv"))}


# -- PMO --------------------------------------------------------------------------------------------------------
# the agent's settings: REINVENT 4's defaults (generate/settings.py), or the ones PMO tuned for REINVENT on its
# 10,000-call budget (mol_opt's main/reinvent/hparams_default.yaml: lr 5e-4, batch 64, sigma 500, experience
# replay 24; the 2017 REINVENT code it runs has no diversity filter) with PMO's stop (the 100 best's mean rising by
# less than 0.001 in 5 steps in a row past 1,000 calls; the rest of the budget scored at the last top-10)
AGENTS = {
    "reinvent4": {},
    "pmo": {"lr": 5e-4, "batch_size": 64, "sigma": 500.0, "replay": 24, "diversity_filter": "none", "patience": 5},
    # Augmented Memory's own defaults (Guo & Schwaller: lr 5e-4, batch 64, sigma 500, a memory of 100 with 10
    # replayed, 2 augmentation rounds) with PMO's stop; for a prior trained with --randomize
    "augmem": {
        **{"lr": 5e-4, "batch_size": 64, "sigma": 500.0, "memory_size": 100, "replay": 10, "augment": 2},
        **{"diversity_filter": "none", "patience": 5},
    },
}


def _label(args) -> str:
    """The method's name in folders, samples and tables: the agent's settings other than REINVENT 4's named, and a
    prior other than bench/out/design/zinc-prior."""
    agent = getattr(args, "agent", None) or "reinvent4"
    if args.method != "reinvent" or agent == "reinvent4":
        return args.method
    prior = Path(args.run).name if args.run else "zinc-prior"
    return f"reinvent-{agent}" + ("" if prior == "zinc-prior" else f"-{prior}")


def _pmo_sample(args, name: str, seed: int, folder: Path) -> None:
    """The molecules behind a task's curve, written from its run folder on every pass (a task read back writes the
    same file): what is committed can always be made again from bench/out."""
    seen = _seen(folder / "run")
    sample = SAMPLES / "pmo" / _label(args) / f"seed{seed}" / f"{name}.csv"
    sample.parent.mkdir(parents=True, exist_ok=True)
    with open(sample, "w", newline="") as f:
        w = csv.DictWriter(f, ["call", "smiles", "score"])
        w.writeheader()
        w.writerows(_entrants(seen))
        f.write(f"# total calls {len(seen)}; budget {args.max_calls}\n")


def pmo(args) -> None:
    from towerlab.chem import guacamol_adapter, objectives

    rows = []
    for seed in args.seeds:
        for name in guacamol_adapter.pmo_offline():
            if args.tasks and name not in args.tasks:
                continue
            folder = OUT / "pmo" / _label(args) / f"calls{args.max_calls}" / f"seed{seed}" / name

            def run(name=name, folder=folder, seed=seed) -> dict:
                obj = objectives.get(f"guacamol:{name}")
                start, limit = (str(ZINC), 120) if args.method == "graph-ga" else ("", 0)
                optimise(args.method, obj, folder / "run", args, start, limit, args.max_calls, seed)
                from towerlab.generate.scoring import summary

                return {"task": name, "seed": seed, **summary(_seen(folder / "run"), args.max_calls), **obj.counts()}

            r = task(folder, run)
            _pmo_sample(args, name, seed, folder)
            rows.append(r)
            ref = PMO_PUBLISHED[name]
            print(
                f"| {name} | {seed} | {r['auc_top10']:.3f} | {r['top10_mean']:.3f} | {r['scoring_calls']} | "
                f"{r['cpu_s']:.0f} | {ref[0]:.3f} | {ref[1]:.3f} | {ref[2]:.3f} |",
                flush=True,
            )
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    print(
        f"\n| task | towerlab {_label(args)}: AUC top-10 (mean +- sd of {len(args.seeds)}) | top-10 mean at the end | "
        f"CPU s per run | REINVENT | Graph GA | SMILES LSTM-HC |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, runs in by_task.items():
        auc = [r["auc_top10"] for r in runs]
        sd = statistics.stdev(auc) if len(auc) > 1 else 0.0
        ref = PMO_PUBLISHED[name]
        top10, cpu = (statistics.mean(r[k] for r in runs) for k in ("top10_mean", "cpu_s"))
        print(
            f"| {name} | {statistics.mean(auc):.3f} +- {sd:.3f} | {top10:.3f} | {cpu:.0f} | "
            f"{ref[0]:.3f} | {ref[1]:.3f} | {ref[2]:.3f} |"
        )
    total = sum(statistics.mean(r["auc_top10"] for r in v) for v in by_task.values())
    published = [sum(PMO_PUBLISHED[t][i] for t in by_task) for i in range(3)]
    cpu_per_seed = sum(r["cpu_s"] for r in rows) / len(args.seeds)
    print(
        f"| **sum ({len(by_task)} tasks)** | **{total:.3f}** | | {cpu_per_seed:.0f} "
        f"| {published[0]:.3f} | {published[1]:.3f} | {published[2]:.3f} |"
    )
    report = {
        "bench": "pmo",
        "method": _label(args),
        "max_calls": args.max_calls,
        "seeds": args.seeds,
        "tasks": rows,
        "sum_auc_top10": total,
        "published_sums": dict(zip(("REINVENT", "Graph GA", "SMILES LSTM-HC"), published)),
    }
    _save(f"pmo-{_label(args)}", report)


def _curve(sample: Path) -> list[float]:
    """The top-10 mean after every call, rebuilt from a committed PMO sample (the molecules that entered the top 10,
    with their calls, and the total calls): a call that entered nothing could not have moved the curve."""
    from towerlab.generate.scoring import top_k_walk

    lines = sample.read_text().splitlines()
    total = int(lines[-1].split("total calls ")[1].split(";")[0])
    scores: list[float | None] = [None] * total
    for r in csv.DictReader(line for line in lines if not line.startswith("#")):
        scores[int(r["call"]) - 1] = float(r["score"])
    return [mean for _, _, _, mean in top_k_walk(scores, 10)]


def curves(args) -> None:
    """Sample efficiency: the top-10 mean against objective calls for every method with committed PMO samples, on
    the named tasks (the mean over each method's seeds); a table at 1k/2k/5k/10k calls, docs/samples/pmo/curves.png."""
    from towerlab.plots import pyplot, save

    if not (SAMPLES / "pmo").is_dir():
        raise SystemExit(f"no PMO samples in {SAMPLES / 'pmo'}: run from the repository root, after `pmo` benches")
    methods = sorted(p.name for p in (SAMPLES / "pmo").iterdir() if p.is_dir())
    plt = pyplot()
    fig, axes = plt.subplots(1, len(args.tasks), figsize=(4.2 * len(args.tasks), 3.4), squeeze=False)
    table = {}
    marks = (1000, 2000, 5000, 10_000)
    print("| task | method | seeds | " + " | ".join(f"top-10 mean at {m:,} calls" for m in marks) + " |")
    print("|---|---|---|" + "---|" * len(marks))
    for ax, name in zip(axes[0], args.tasks):
        for method in methods:
            runs = [_curve(f) for f in sorted((SAMPLES / "pmo" / method).glob(f"seed*/{name}.csv"))]
            if not runs:
                print(f"| {name} | {method} | 0 | (no committed run of this task) |")
                continue
            n = min(len(r) for r in runs)
            mean = [statistics.mean(r[i] for r in runs) for i in range(n)]
            ax.plot(range(1, n + 1), mean, label=f"{method} ({len(runs)} seed{'s' * (len(runs) > 1)})")
            table[f"{name}/{method}"] = {"seeds": len(runs), **{str(m): mean[min(m, n) - 1] for m in marks}}
            print(
                f"| {name} | {method} | {len(runs)} | " + " | ".join(f"{mean[min(m, n) - 1]:.3f}" for m in marks) + " |"
            )
        ax.set_title(name)
        ax.set_xlabel("objective calls")
        ax.set_ylabel("top-10 mean")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, SAMPLES / "pmo" / "curves.png")
    _save("pmo-curves", {"bench": "curves", "tasks": args.tasks, "at_calls": table})
    print(f"plot: {SAMPLES / 'pmo' / 'curves.png'}")


# -- penalized logP (ChemTS's protocol) ---------------------------------------------------------------------------
CHEMTS_PUBLISHED = "ChemTS (Yang et al. 2017, as tabulated by Jensen 2019 Table 1): 4.9 +- 0.5 at ~5,000 molecules"
JENSEN_PUBLISHED = (
    "GB-GA (Jensen 2019, Chem. Sci. 10:3567, Table 1): 7.4 +- 0.9 (mutation rate 1%), 6.8 +- 0.7 "
    "(50%), 1,000 molecules per run, 10 runs"
)


def _prior_tag(args) -> str:
    """mcts runs from a prior other than ChemTS's (the ZINC one, bench/out/design/zinc-prior) go in their own
    folders and samples, named by the prior's run folder."""
    name = Path(args.run).name if args.method in ("mcts", "reinvent") and args.run else "zinc-prior"
    return "" if name == "zinc-prior" else f"-{name}"


def _plogp_scoring():
    from towerlab.generate import scoring_config

    path = OUT / "plogp-z-sigmoid.yaml"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "components:\n  - type: objective\n    spec: plogp-z\n"
        "    transform: {type: sigmoid, low: -1, high: 5, k: 0.15}\n"
    )
    return scoring_config.load(str(path))


def plogp(args) -> None:
    """10 runs on ChemTS's scale (plogp-z, what ChemTS optimises); each run's best on both scales."""
    from towerlab.chem import objectives

    raw = objectives.get("plogp")
    first = OUT / "zinc_first1000.smi"  # Jensen's first mating pool: 20 random molecules of the first 1,000 of ZINC
    if not first.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        first.write_text("\n".join(ZINC.read_text().split()[:1000]) + "\n")
    rows = []
    for k in range(args.runs):
        folder = OUT / "plogp" / args.method / f"budget{args.budget}{_prior_tag(args)}" / f"run{k}"

        def run(k=k, folder=folder) -> dict:
            obj = objectives.get("plogp-z")
            if args.method == "graph-ga":
                from towerlab.generate.graph_ga import Settings, graph_ga

                # Jensen's count is molecules made (20 a generation after the first 20), repeats included: the
                # budget sets the generations; repeats are not scored again, so the calls can be fewer
                s = Settings(
                    population=20,
                    offspring=20,
                    mutation_rate=0.01,
                    generations=(args.budget - 20) // 20,
                    patience=0,
                    seed=k,
                )
                graph_ga(obj, str(first), folder / "run", s, start_limit=20)
            elif args.method == "reinvent":
                from towerlab.generate import model as gen
                from towerlab.generate.reinvent import Settings, reinvent

                # the agent learns from a score in [0, 1] (sigma * score is its reward): plogp-z through a sigmoid
                # (0.24 at 0, the ZINC mean; 0.85 at 5, ChemTS's best); --budget distinct valid molecules scored
                reinvent(gen.load(args.run), _plogp_scoring(), folder / "run", Settings(max_calls=args.budget, seed=k))
            else:
                from towerlab.generate import model as gen
                from towerlab.generate.mcts import Settings, mcts

                mcts(gen.load(args.run), obj, folder / "run", Settings(budget=args.budget, seed=k))
            seen = {c: v for c, v in _seen(folder / "run").items() if v is not None}
            if args.method == "reinvent":  # its calls.csv holds the transformed score: the table reads plogp-z
                seen = dict(zip(seen, obj(list(seen))))
            both = sorted(
                ({"smiles": c, "plogp_z": v, "plogp": r} for (c, v), r in zip(seen.items(), raw(list(seen)))),
                key=lambda r: -r["plogp_z"],
            )
            # ChemTS's budget (5,000) under the method's name; another budget beside it (graph-ga-1000: Jensen's)
            kind = args.method + ("" if args.budget == 5000 else f"-{args.budget}") + _prior_tag(args)
            sample = SAMPLES / "plogp" / kind / f"run{k}.csv"
            sample.parent.mkdir(parents=True, exist_ok=True)
            with open(sample, "w", newline="") as f:
                w = csv.DictWriter(f, ["smiles", "plogp_z", "plogp"])
                w.writeheader()
                w.writerows(both[:100])
            summary = json.loads((folder / "run" / "outcome.json").read_text())
            progress = folder / "run" / ("progress.csv")
            last = list(csv.DictReader(open(progress)))[-1] if progress.is_file() else {}
            made = int(last["molecules"]) if "molecules" in last else 20 + 20 * int(last.get("generation", 0))
            return {
                "run": k,
                "best_z": both[0]["plogp_z"],
                "best_raw": max(r["plogp"] for r in both),
                "raw_of_best_z": both[0]["plogp"],
                "best_smiles": both[0]["smiles"],
                "scoring_calls": summary["scoring_calls"],
                "molecules": made,
                **obj.counts(),
            }

        r = task(folder, run)
        rows.append(r)
        print(
            f"run {k}: best {r['best_z']:.2f} (ChemTS scale), {r['best_raw']:.2f} (raw); {r['molecules']} "
            f"molecules, {r['scoring_calls']} objective calls, {r['cpu_s']:.0f} s CPU",
            flush=True,
        )
    stat = {}
    for key in ("best_z", "best_raw"):
        v = [r[key] for r in rows]
        stat[key] = (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, max(v))
    print(
        "| method | best per run, ChemTS scale (mean +- sd) | best of all | raw scale (mean +- sd) | molecules per "
        "run | CPU s per run |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| towerlab {args.method} | {stat['best_z'][0]:.2f} +- {stat['best_z'][1]:.2f} | {stat['best_z'][2]:.2f} | "
        f"{stat['best_raw'][0]:.2f} +- {stat['best_raw'][1]:.2f} | "
        f"{statistics.mean(r['molecules'] for r in rows):.0f} | {statistics.mean(r['cpu_s'] for r in rows):.0f} |"
    )
    print(CHEMTS_PUBLISHED)
    print(JENSEN_PUBLISHED)
    _save(
        f"plogp-{args.method}-{args.budget}{_prior_tag(args)}",
        {
            "bench": "plogp",
            "method": args.method,
            "budget": args.budget,
            "run_dir": args.run,
            "runs": rows,
            "stats": stat,
        },
    )


# -- GuacaMol ---------------------------------------------------------------------------------------------------
def submitted(ranked, n: int) -> list[str]:
    """The n best molecules as GuacaMol will count them: assess_model strips stereocentres, removes duplicates and
    pads the list with zeros, so stereoisomers of one molecule are one entry; the best-ranked of each is submitted
    (a search that keeps stereo, as the graph GA carries its parents', would otherwise hand in fewer distinct ones)."""
    from guacamol.utils.chemistry import canonicalize

    out, keys = [], set()
    for smiles in ranked:
        key = canonicalize(smiles, include_stereocenters=False)
        if key and key not in keys:
            keys.add(key)
            out.append(smiles)
            if len(out) == n:
                break
    return out


class _Generator:
    """GuacaMol's GoalDirectedGenerator: one towerlab optimiser, fresh per benchmark, its molecules kept."""

    def __init__(self, args, name: str, folder: Path):
        self.args, self.name, self.folder, self.counts = args, name, folder, {}

    def generate_optimized_molecules(self, scoring_function, number_molecules, starting_population=None):
        from towerlab.chem.objectives import Objective

        a = self.args
        obj = Objective(f"guacamol:{self.name}", on_smiles=scoring_function.score_list)
        start, size = ("", 0) if a.method in ("mcts", "reinvent") else (str(_start_file(a)), _start_size(a))
        calls = a.max_calls + (size if a.free_start else 0)
        if a.start_scores:
            _reuse_start(
                Path(a.start_scores) / self.folder.name / "run",
                self.folder / "run",
                start,
                a.start_limit,
                size,
                obj.name,
            )
        optimise(a.method, obj, self.folder / "run", a, start, a.start_limit, calls, a.seed)
        self.counts = obj.counts()
        return submitted(
            (r["smiles"] for r in csv.DictReader(open(self.folder / "run" / "best.csv"))), number_molecules
        )


class _Fixed:
    """A GuacaMol generator that hands in a list already made."""

    def __init__(self, smiles: list[str]):
        self.smiles = smiles

    def generate_optimized_molecules(self, scoring_function, number_molecules, starting_population=None):
        return self.smiles


def _reuse_start(source: Path, run: Path, start: str, start_limit: int, n: int, objective: str) -> None:
    """Give the hill-climb's start journal the scores another search of this task (the graph GA's) already paid
    for on the same start file: the same objective on the same molecules gives the same scores, so the first pool
    is read back instead of scored again (~2.5 CPU hours over the 20 tasks). Counted as calls all the same."""
    mine = run / "start.jsonl"
    if mine.exists() or (run / "checkpoints").exists():
        return
    missing = [f for f in ("start.json", "scored.jsonl") if not (source / f).is_file() or (source / f).is_symlink()]
    if missing:
        raise SystemExit(
            f"--start-scores: {source} holds no graph GA start (start.json, scored.jsonl); give the "
            f"folder of a guacamol graph-ga run of this start, or leave it out"
        )
    marker = json.loads((source / "start.json").read_text())
    theirs = (marker["objective"], marker["start"], marker["start_limit"])
    if theirs != (objective, str(Path(start).absolute()), start_limit):
        raise SystemExit(f"--start-scores {source}: its start was {theirs}, not this task's; leave it out")
    with open(source / "scored.jsonl") as f:
        lines = [line for _, line in zip(range(n), f)]
    if len(lines) < n:
        raise SystemExit(f"--start-scores {source}: {len(lines)} scores journaled, the start has {n}; leave it out")
    run.mkdir(parents=True, exist_ok=True)
    mine.write_text("".join(lines))
    print(f"the start's {n} scores read from {source / 'scored.jsonl'}", flush=True)


def _start_file(args) -> Path:
    return holdout_filtered() if args.holdout_filter else corpus()


def _start_size(args) -> int:
    """The molecules scored for the first population: the corpus (canonical, deduplicated) or a draw of it."""
    if args.method in ("mcts", "reinvent"):  # they start from the prior alone
        return 0
    n = sum(1 for _ in open(_start_file(args)))
    return min(n, args.start_limit) if args.start_limit else n


def _picked(args, bench, folder: Path) -> dict:
    """What a finished search hands in (written to docs/samples) and GuacaMol's score for it, beside the score of
    the start's best alone, before any search (GuacaMol's "best of dataset" for this start)."""
    n = max(bench.contribution_specification.top_counts)
    best = submitted((r["smiles"] for r in csv.DictReader(open(folder / "run" / "best.csv"))), n)
    path = SAMPLES / "guacamol" / (args.samples or args.method) / f"{bench.name}.smi"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(best) + "\n")
    out = {
        "score": bench.assess_model(_Fixed(best)).score,
        "start_calls": _start_size(args),
        "submitted": "the best distinct without stereo (GuacaMol's own dedup)",
        "best_of_start": None,
    }
    if out["start_calls"]:
        rows = list(csv.DictReader(open(folder / "run" / "calls.csv")))[: out["start_calls"]]
        rows = sorted((r for r in rows if r["score"]), key=lambda r: (-float(r["score"]), r["smiles"]))
        out["best_of_start"] = bench.assess_model(_Fixed(submitted((r["smiles"] for r in rows), n))).score
    return out


def _variant(args) -> str:
    """The folder a guacamol run's tasks go in: its budget, and its GA settings where they are not the default."""
    tag = f"calls{args.max_calls}" + (f"-rounds{args.rounds}" if args.method == "hillclimb" else "")
    if args.method == "graph-ga" and (args.ga != "guacamol" or args.patience is not None):
        tag += f"-{args.ga}" + ("" if args.patience is None else f"-patience{args.patience}")
    return (
        tag
        + ("" if args.start_limit == 10_000 else f"-start{args.start_limit}")
        + ("-freestart" if getattr(args, "free_start", False) else "")
        + ("-holdout-filtered" if getattr(args, "holdout_filter", False) else "")
    )


def guacamol(args) -> None:
    from towerlab.chem import guacamol_adapter

    rows = []
    print(
        "| benchmark | score | best of the start alone | start calls | search calls | CPU s | Graph GA "
        "(Brown et al. 2019) | SMILES LSTM |\n|---|---|---|---|---|---|---|---|"
    )
    for key, bench in guacamol_adapter.goal_directed_v2().items():
        if args.tasks and key not in args.tasks and bench.name not in args.tasks:
            continue
        folder = OUT / "guacamol" / args.method / _variant(args) / bench.name.replace(" ", "_")

        def run(bench=bench, folder=folder) -> dict:
            gen = _Generator(args, bench.name, folder)
            result = bench.assess_model(gen)
            summary = json.loads((folder / "run" / "outcome.json").read_text())
            picked = _picked(args, bench, folder)
            if abs(picked["score"] - result.score) > 1e-9:  # the hand-in is GuacaMol's: the same list, the same score
                raise SystemExit(f"{bench.name}: {picked['score']} rescored against {result.score} by assess_model")
            return {
                "task": bench.name,
                "score": result.score,
                "scoring_calls": summary["scoring_calls"],
                **picked,
                **gen.counts,
            }

        r = task(folder, run)
        if "submitted" not in r:  # finished before the hand-in counted stereoisomers as GuacaMol does: picked again
            r = {**r, "score_as_first_handed_in": r["score"], **_picked(args, bench, folder)}
            (folder / "result.json").write_text(json.dumps(r, indent=1))
        rows.append(r)
        ref = GUACAMOL_PUBLISHED[r["task"]]
        start = r.get("best_of_start")
        print(
            f"| {r['task']} | {r['score']:.3f} | {'-' if start is None else f'{start:.3f}'} | "
            f"{r.get('start_calls', '-')} | {r['scoring_calls'] - r.get('start_calls', 0)} | {r['cpu_s']:.0f} | "
            f"{ref[0]:.3f} | {ref[1]:.3f} |",
            flush=True,
        )
    total = sum(r["score"] for r in rows)
    starts = [r["best_of_start"] for r in rows if r.get("best_of_start") is not None]
    print(
        f"| total ({len(rows)} tasks) | {total:.2f} | {sum(starts):.2f} | | "
        f"{sum(r['scoring_calls'] - r.get('start_calls', 0) for r in rows)} | "
        f"{sum(r['cpu_s'] for r in rows):.0f} | {sum(GUACAMOL_PUBLISHED[r['task']][0] for r in rows):.2f} | "
        f"{sum(GUACAMOL_PUBLISHED[r['task']][1] for r in rows):.2f} |"
    )
    _save(
        f"guacamol-{args.method}-{_variant(args)}",
        {
            "bench": "guacamol",
            "method": args.method,
            "max_calls": args.max_calls,
            "start_limit": args.start_limit,
            "ga": args.ga,
            "patience": args.patience,
            "free_start": args.free_start,
            "holdout_filter": args.holdout_filter,
            "start": str(_start_file(args)),
            "tasks": rows,
            "total": total,
        },
    )


def _save(name: str, report: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join(["python", *sys.argv]), "machine": machine(), **report}
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {OUT / f'{name}.json'}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bench", required=True)
    sub.add_parser("corpus")
    sub.add_parser("holdout-filtered")
    c = sub.add_parser("curves")
    c.add_argument("--tasks", nargs="+", default=["qed", "median1", "osimertinib_mpo"])
    a = sub.add_parser("plogp")
    a.add_argument("method", choices=["graph-ga", "mcts", "reinvent"])
    a.add_argument("--run", help="the smiles-lstm prior (mcts, reinvent; ChemTS's was trained on ZINC)")
    a.add_argument("--runs", type=int, default=10)
    a.add_argument(
        "--budget",
        type=int,
        default=5000,
        help="molecules made: mcts, valid ones (ChemTS's count); "
        "graph-ga, children (Jensen's count), repeats included in both",
    )
    for name, calls in (("pmo", 10_000), ("guacamol", 30_000)):
        a = sub.add_parser(name)
        a.add_argument("method", choices=["graph-ga", "hillclimb", "mcts", "reinvent"])
        a.add_argument("--run", help="the smiles-lstm prior (hillclimb, mcts, reinvent)")
        a.add_argument("--tasks", nargs="*", help="task names (default: all)")
        a.add_argument("--max-calls", type=int, default=calls)
        if name == "pmo":
            a.add_argument("--seeds", type=int, nargs="*", default=[0])
            a.add_argument(
                "--agent",
                choices=sorted(AGENTS),
                default="reinvent4",
                help="reinvent: REINVENT 4's settings, or PMO's tuned ones (results under reinvent-pmo/)",
            )
        else:
            a.add_argument("--seed", type=int, default=0)
            a.add_argument(
                "--start-limit",
                type=int,
                default=10_000,
                help="molecules of the broad corpus scored for the first population (0: all)",
            )
            a.add_argument(
                "--ga",
                choices=sorted(GA_SETTINGS),
                default="guacamol",
                help="graph-ga: GuacaMol's baseline settings or PMO's tuned ones",
            )
            a.add_argument(
                "--patience",
                type=int,
                help="graph-ga: stop after this many generations without change "
                "(0: never; default: the settings' own, GuacaMol 5, PMO 0)",
            )
            a.add_argument(
                "--rounds",
                type=int,
                default=20,
                help="hillclimb: rounds (the baseline's 20 of 1,024 "
                "samples); the search ends at --max-calls or the last round, whichever comes first",
            )
            a.add_argument(
                "--samples",
                help="the folder under docs/samples/guacamol for what GuacaMol scored (default: the method's name)",
            )
            a.add_argument(
                "--holdout-filter",
                action="store_true",
                help="start from the broad corpus filtered as GuacaMol filtered ChEMBL: without its ten "
                "holdout molecules and anything of ECFP4 similarity > 0.323 to them (the benchmarks' own "
                "protocol; otherwise the rediscovery targets are in the start)",
            )
            a.add_argument(
                "--start-scores",
                help="hillclimb: a graph-ga run folder of this bench (its tasks "
                "started from the same file): each task's first-pool scores are read from its journal "
                "instead of scored again",
            )
            a.add_argument(
                "--free-start",
                action="store_true",
                help="the first population's scoring is not counted in --max-calls (GuacaMol's baselines "
                "score all of ChEMBL outside their budget); --max-calls is then the search's own calls",
            )
    args = p.parse_args()
    if args.bench not in ("corpus", "holdout-filtered", "curves") and args.method != "graph-ga" and not args.run:
        p.error(f"{args.method} needs --run PRIOR_RUN (a smiles-lstm run)")
    benches = {"corpus": corpus, "holdout-filtered": holdout_filtered, "curves": curves, "plogp": plogp, "pmo": pmo}
    {**benches, "guacamol": guacamol}[args.bench](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
