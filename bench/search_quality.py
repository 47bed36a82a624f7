"""Search quality: GA, Optuna's TPE and random search, each with and without pruning, against the grid.

    TOWERLAB_DATA=../shared/data python bench/search_quality.py [--workers 2] [--epochs 5] [--seeds 10]

The mlp recipe on the digits scans (real data, no download) over the classic space (examples/mlp_space.yaml:
1-4 hidden layers x 6 widths x 4 activations x 7 optimizers = 672 configurations). Grid search trains every one
(in-process `fit`, `--workers` at a time), keeping each trial's validation accuracy after every epoch (cached in
bench/out/search_curves.json, so a re-run is cheap). Then every method runs with `--seeds` seeds through towerlab's
own search classes (GeneticSearch, OptunaSearch) over those cached trainings, population 20 for 10 generations:
each is charged its distinct evaluations and its trial-epochs (compute). With --prune median|asha the same
towerlab Pruner judges each trial's cached curve against the earlier batches' trials, as the executor does: a
pruned trial costs the epochs it ran and scores its accuracy there. Reported per method: how many seeds reach the
grid's best accuracy (and within 0.5 points), the median evaluations and trial-epochs to get there.
Writes bench/out/search_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench/out/search_curves.json"


def _train(args: tuple[dict, float]) -> list[float]:
    """One trial in a worker process: the genome trained on digits, its validation accuracy after each epoch."""
    genome, epochs = args
    import torch

    from towerlab import config
    from towerlab.engine import fit
    from towerlab.recipes import mlp

    torch.set_num_threads(1)
    cfg = config.build(
        mlp.Config, None, {**genome, "dataset": "digits", "epochs": epochs, "log_every": 1000, "eval_every_epochs": 1.0}
    )
    with tempfile.TemporaryDirectory() as tmp:
        fit(mlp, cfg, out=tmp)
        rows = [json.loads(line) for line in open(Path(tmp) / "metrics.jsonl")]
    return [r["val/accuracy"] for r in rows if "val/accuracy" in r]


def grid(space, workers: int, epochs: float) -> dict[str, list[float]]:
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


class Charged:
    """The fitness a search sees, from the cached curves: each distinct genome charged once, in evaluations and in
    trial-epochs; with a pruner, judged on its curve against the earlier batches' trials (as the executor does)."""

    def __init__(self, curves: dict, prune: str | None):
        from towerlab.search.prune import Pruner

        self.curves, self.evaluated, self.epochs, self.progress = curves, {}, 0, []
        self.pruner = Pruner(prune, "accuracy", maximize=True) if prune else None
        self.best = 0.0

    def __call__(self, genomes: list[dict]) -> list[float]:
        from towerlab.search.space import genome_key

        if self.pruner:
            self.pruner.reference = [c for c in self.evaluated.values()]
        out = []
        for g in genomes:
            key = genome_key(g)
            full = self.curves[key]
            k = self.pruner.decide(full) if self.pruner else None
            seen = full[:k] if k else full
            if key not in self.evaluated:
                self.epochs += len(seen)
                self.best = max(self.best, max(full) if k is None else seen[-1])
                self.progress.append((len(self.evaluated) + 1, self.epochs, self.best))
            self.evaluated[key] = seen
            out.append(seen[-1] if k else max(full))
        return out


def run_method(algo: str, space, curves: dict, seed: int, generations: int, prune: str | None) -> list[tuple]:
    """(evaluations, trial-epochs, best so far) after each distinct evaluation."""
    from towerlab.search import SEARCHERS

    charged = Charged(curves, prune)
    SEARCHERS[algo].build(
        space, charged, maximize=True, out=None, population=20, generations=generations, seed=seed
    ).run()
    return charged.progress


def reached(curve: list[tuple], target: float) -> tuple | None:
    """(evaluations, trial-epochs) when the best-so-far first reaches target (None: never)."""
    return next(((n, e) for n, e, best in curve if best >= target - 1e-9), None)


def summarize(name: str, curves: list, target: float) -> dict:
    hits = [reached(c, target) for c in curves]
    near = [reached(c, target - 0.005) for c in curves]
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {
        "method": name,
        "seeds": len(curves),
        "reached_best": sum(h is not None for h in hits),
        "median_evals_to_best": med([h[0] for h in hits if h]),
        "median_trial_epochs_to_best": med([h[1] for h in hits if h]),
        "reached_within_0.5pt": sum(h is not None for h in near),
        "median_final_best": statistics.median(c[-1][2] for c in curves),
        "median_evaluations": statistics.median(c[-1][0] for c in curves),
        "median_trial_epochs": statistics.median(c[-1][1] for c in curves),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--generations", type=int, default=10, help="batches of 20 trials for every method")
    p.add_argument("--out", default="bench/out/search_quality.json")
    args = p.parse_args()
    from towerlab.search.space import Space, genome_key

    space = Space.load(REPO / "examples/mlp_space.yaml")
    curves = grid(space, args.workers, args.epochs)
    n_grid = len(space.grid(4))
    best_genome = max(space.grid(4), key=lambda g: max(curves[genome_key(g)]))
    target = max(curves[genome_key(best_genome)])
    epochs = sum(len(c) for c in curves.values())
    rows = [
        {
            "method": "grid",
            "seeds": 1,
            "reached_best": 1,
            "median_evals_to_best": n_grid,
            "median_trial_epochs_to_best": epochs,
            "reached_within_0.5pt": 1,
            "median_final_best": target,
            "median_evaluations": n_grid,
            "median_trial_epochs": epochs,
        }
    ]
    for algo in ("ga", "tpe", "random"):
        for prune in (None, "median", "asha"):
            runs = [run_method(algo, space, curves, s, args.generations, prune) for s in range(args.seeds)]
            rows.append(summarize(f"{algo}{' + ' + prune if prune else ''}", runs, target))
            print(rows[-1], flush=True)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()} CPU",
        "epochs": args.epochs,
        "grid_best": target,
        "grid_best_genome": best_genome,
        "grid_size": n_grid,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(
        f"mlp on digits, {args.epochs:g} epochs per trial; grid best accuracy {target:.4f} of {n_grid} "
        f"configurations: {best_genome}"
    )
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
