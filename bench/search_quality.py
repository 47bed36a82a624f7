"""Search quality: does the genetic algorithm find what grid search finds best, with fewer evaluations?

    TOWERLAB_DATA=../shared/data python bench/search_quality.py [--workers 2] [--epochs 10] [--seeds 10]

The mlp recipe on the digits scans (real data, no download) over the classic space (examples/mlp_space.yaml:
1-4 hidden layers x 6 widths x 4 activations x 7 optimizers = 672 configurations). Grid search trains every one
(in-process `fit`, `--workers` at a time; results cached in bench/out/search_cache.json, so a re-run is cheap);
then the GA (population 20, 10 generations as in the issue, and 20) and random search run with `--seeds` seeds,
each looking up the same cached trainings, so both are charged only their distinct evaluations. Reported: how often
and after how many evaluations each reaches the grid's best accuracy (and within 0.5 points of it).
Writes bench/out/search_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench/out/search_cache.json"


def _train(args: tuple[dict, float]) -> float:
    """One trial in a worker process: the genome trained on digits, its best validation accuracy."""
    genome, epochs = args
    import torch

    from towerlab import config
    from towerlab.engine import fit
    from towerlab.recipes import mlp

    torch.set_num_threads(1)
    cfg = config.build(mlp.Config, None, {**genome, "dataset": "digits", "epochs": epochs, "log_every": 1000,
                                          "eval_every_epochs": 1.0})
    with tempfile.TemporaryDirectory() as tmp:
        m = fit(mlp, cfg, out=tmp)
    return (m.get("best") or {}).get("value", m["accuracy"])


def grid(space, workers: int, epochs: float) -> dict[str, float]:
    from towerlab.search.space import genome_key

    cache = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    todo = [g for g in space.grid(4) if genome_key(g) not in cache]
    print(f"grid: {len(space.grid(4))} configurations, {len(todo)} still to train", flush=True)
    os.environ["TQDM_DISABLE"] = "1"
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        for i, (g, acc) in enumerate(zip(todo, pool.map(_train, [(g, epochs) for g in todo]))):
            cache[genome_key(g)] = acc
            if i % 25 == 0 or i == len(todo) - 1:
                CACHE.parent.mkdir(parents=True, exist_ok=True)
                CACHE.write_text(json.dumps(cache))
                print(f"  {i + 1}/{len(todo)}", flush=True)
    return cache


def reached(curve: list[tuple[int, float]], target: float) -> int | None:
    """Evaluations spent when the best-so-far first reaches target (None: never)."""
    return next((n for n, best in curve if best >= target - 1e-9), None)


def ga_curve(space, lookup, seed: int, generations: int) -> list[tuple[int, float]]:
    from towerlab.search.ga import GeneticSearch

    search = GeneticSearch(space, lambda gs: [lookup(g) for g in gs], population=20, generations=generations,
                           seed=seed)
    search.run()
    best, curve = 0.0, []
    for h in search.history:
        best = max(best, h["best"])
        curve.append((h["evaluated"], best))
    return curve


def random_curve(space, lookup, seed: int, budget: int) -> list[tuple[int, float]]:
    from towerlab.search.space import genome_key

    rng, seen, best, curve = random.Random(seed), set(), 0.0, []
    while len(seen) < budget:
        g = space.sample(rng)
        if genome_key(g) in seen:
            continue
        seen.add(genome_key(g))
        best = max(best, lookup(g))
        curve.append((len(seen), best))
    return curve


def summarize(name: str, curves: list, target: float) -> dict:
    hits = [reached(c, target) for c in curves]
    near = [reached(c, target - 0.005) for c in curves]
    return {"method": name, "seeds": len(curves), "reached_best": sum(h is not None for h in hits),
            "median_evals_to_best": statistics.median([h for h in hits if h]) if any(hits) else None,
            "reached_within_0.5pt": sum(h is not None for h in near),
            "median_evals_within_0.5pt": statistics.median([h for h in near if h]) if any(near) else None,
            "median_final_best": statistics.median(c[-1][1] for c in curves),
            "median_evaluations": statistics.median(c[-1][0] for c in curves)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=float, default=10.0)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--generations", type=int, nargs="+", default=[10, 20], help="GA lengths to report")
    p.add_argument("--out", default="bench/out/search_quality.json")
    args = p.parse_args()
    from towerlab.search.space import Space, genome_key

    space = Space.load(REPO / "examples/mlp_space.yaml")
    cache = grid(space, args.workers, args.epochs)
    lookup = lambda g: cache[genome_key(g)]  # noqa: E731
    n_grid = len(space.grid(4))
    best_genome = max(space.grid(4), key=lambda g: cache[genome_key(g)])
    target = cache[genome_key(best_genome)]
    rows = [{"method": "grid", "seeds": 1, "reached_best": 1, "median_evals_to_best": n_grid,
             "reached_within_0.5pt": 1, "median_evals_within_0.5pt": n_grid, "median_final_best": target,
             "median_evaluations": n_grid}]
    for generations in args.generations:  # population 20; random search gets the GA's number of evaluations
        ga = [ga_curve(space, lookup, s, generations) for s in range(args.seeds)]
        budget = round(statistics.median(c[-1][0] for c in ga))
        rand = [random_curve(space, lookup, s, budget) for s in range(args.seeds)]
        rows += [summarize(f"ga ({generations} generations)", ga, target),
                 summarize(f"random ({budget} evals)", rand, target)]
    report = {"command": " ".join(["python", *sys.argv]), "machine": f"{platform.machine()} CPU",
              "epochs": args.epochs, "grid_best": target, "grid_best_genome": best_genome, "grid_size": n_grid, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"mlp on digits, {args.epochs:g} epochs per trial; grid best accuracy {target:.4f} of {n_grid} "
          f"configurations: {best_genome}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
