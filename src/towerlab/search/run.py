"""`towerlab search`: a genetic (or grid) search over a recipe's config, trials run side by side by the executor.

    towerlab search mlp --space space.yaml --algo ga --population 20 --generations 10 --workers 2 --out runs/s1
    towerlab search cifar10 --space space.yaml --gpus 0,1,2,3 --set epochs=20      # fixed overrides for every trial

The search folder holds trials/<genome key>/ (each a run directory), generations.json and .csv, fitness.png, best.json,
best.yaml (the winning config, ready for `towerlab train RECIPE --config best.yaml`) and search_state.json
(the checkpoint: rerun the same command to resume).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from towerlab import recipes
from towerlab.config import save_yaml
from towerlab.executor import Executor, Trial
from towerlab.search.ga import GeneticSearch, grid_search
from towerlab.search.space import Space, genome_key


def search(recipe_name: str, space_path: str, out: str | Path, executor: Executor, algo: str = "ga",
           fixed: dict | None = None, points: int = 4, **ga) -> dict:
    recipe = recipes.get(recipe_name)
    space = Space.load(space_path)
    space.check_fields(recipe.Config)
    metric, mode = recipe.MAIN_METRIC
    out, fixed = Path(out), fixed or {}

    def fitness(genomes: list[dict]) -> list[float | None]:
        trials = [Trial(genome_key(g), recipe_name, {**fixed, **g}, out / "trials" / genome_key(g)) for g in genomes]
        return [r.fitness(metric) for r in executor.run(trials)]

    if algo == "grid":
        best = grid_search(space, fitness, points, maximize=mode == "max")
        out.mkdir(parents=True, exist_ok=True)
    else:
        ga_search = GeneticSearch(space, fitness, maximize=mode == "max", out=out, **ga)
        best = ga_search.run()
        _write_generations(out, ga_search.history)
        plot_generations(ga_search.history, out / "fitness.png", metric)
    (out / "best.json").write_text(json.dumps({"recipe": recipe_name, "metric": metric, **best}, indent=1))
    save_yaml({**fixed, **best["genome"]}, out / "best.yaml")
    return best


def plot_generations(history: list[dict], path: Path, metric: str) -> None:
    """fitness.png: the best and the mean fitness of each generation."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    gens = [h["generation"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(gens, [h["best"] for h in history], "o-", label="best")
    ax.plot(gens, [h["mean"] for h in history], "s--", label="mean of the finished trials")
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_generations(out: Path, history: list[dict]) -> None:
    with open(out / "generations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["generation", "best", "mean", "failed", "evaluated", "best_genome"])
        for h in history:
            w.writerow([h["generation"], h["best"], h["mean"], h["failed"], h["evaluated"],
                        json.dumps(h["best_genome"], sort_keys=True)])
