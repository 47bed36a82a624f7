"""`towerlab search`: a genetic (or grid) search over a recipe's config, trials run side by side by the executor.

    towerlab search mlp --space space.yaml --algo ga --population 20 --generations 10 --workers 2 --out runs/s1
    towerlab search cifar10 --space space.yaml --gpus 0,1,2,3 --set epochs=20      # fixed overrides for every trial

The search folder (its files: runs/search.py) holds a trial folder per genome, the fitness per generation, the best
genome and its config (best.yaml, ready for `towerlab train RECIPE --config best.yaml`) and the search's state:
rerun the same command to resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from towerlab import recipes
from towerlab.errors import ConfigError
from towerlab.executor import Executor
from towerlab.files import in_turn
from towerlab.runs import SearchFolder, Trial
from towerlab.runs.best import Best, Metric
from towerlab.search import SEARCHERS
from towerlab.search.prune import Pruner
from towerlab.search.space import Space, genome_key


def search(
    recipe_name: str,
    space_path: str,
    out: str | Path,
    executor: Executor,
    algo: str = "ga",
    fixed: dict | None = None,
    points: int = 4,
    prune: str | None = None,
    storage: str | None = None,
    study: str | None = None,
    trials: int | None = None,
    heartbeat: float = 10.0,
    **options,
) -> dict:
    """Search `recipe_name`'s config over the space with `algo` (a name of SEARCHERS, given the `options` it takes:
    population, generations, seed, ...), each trial trained through `executor`; returns the best genome. With
    `trials`, a study of that many trials shared by every worker that runs the same search (search/workers.py)."""
    if trials:
        return _search_shared(
            recipe_name,
            space_path,
            Path(out),
            executor,
            algo,
            fixed or {},
            prune,
            storage,
            study,
            trials,
            heartbeat,
            options,
        )
    recipe = recipes.get(recipe_name)
    space = Space.load(space_path)
    space.check_fields(recipe.Config)
    main = Metric.of(recipe)
    metric = main.name
    out, fixed = Path(out), fixed or {}
    folder = SearchFolder(out)
    recipes.check_overrides(recipe_name, fixed, "--set")
    pruner = Pruner(prune, metric, maximize=main.maximize) if prune else None
    searcher = None
    seen: dict[str, float] = {}  # trial -> fitness, for the best-so-far line after each batch

    def fitness(genomes: list[dict]) -> list[float | None]:
        trials = [folder.trial(genome_key(g), recipe_name, {**fixed, **g}) for g in genomes]
        if pruner:  # judged against the trials of earlier batches only, in the order they were evaluated
            done = searcher.cache if searcher is not None else {}
            pruner.reference = [folder.trial(key).curve(metric) for key in done]
        results = executor.run(trials, pruner=pruner)
        write_trials(folder, fixed, metric, [*(searcher.cache if searcher else {}), *(t.name for t in trials)])
        scores = [r.fitness(metric) for r in results]
        seen.update({t.name: f for t, f in zip(trials, scores) if f is not None})
        if seen:
            name = main.best_of(seen)
            print(f"best so far: {metric}={seen[name]:.4g} ({name}; {len(seen)} trials finished)", flush=True)
        return scores

    parent = _tracking_parent(fixed, folder, recipe_name)
    mirror = None
    if storage:
        from towerlab.search.storage import StudyMirror

        mirror = StudyMirror(storage, study or out.resolve().name, space, main.maximize, metric, folder)
    searcher = SEARCHERS[algo].build(space, fitness, maximize=main.maximize, out=out, points=points, **options)
    searcher.on_batch = mirror.record_batch if mirror else None
    best = searcher.run()
    folder.write_generations_csv(searcher.history)
    plot_generations(searcher.history, out / "fitness.png", metric)
    winner = folder.trial(genome_key(best["genome"])).result()
    test = Best.of(winner.metrics).test if winner else {}
    folder.write_best(
        {"recipe": recipe_name, "metric": metric, **best, **({"test": test} if test else {})},
        {**fixed, **best["genome"]},
    )
    rows = write_trials(folder, fixed, metric, [*searcher.cache] or folder.trial_keys())
    write_hparams(out, rows, metric)
    if parent:
        parent.artifact(folder.trials_table)
        parent.finish({f"best_{metric}": best["fitness"]} if best.get("fitness") is not None else {})
    return best


def _search_shared(
    recipe_name, space_path, out: Path, executor, algo, fixed, prune, storage, study, trials, heartbeat, options
) -> dict:
    """This process's workers on the study (one per local slot), then the search's outputs from the study."""
    from towerlab.search.workers import SharedStudy, run_workers

    recipe = recipes.get(recipe_name)
    space = Space.load(space_path)
    space.check_fields(recipe.Config)
    recipes.check_overrides(recipe_name, fixed, "--set")
    main, folder = Metric.of(recipe), SearchFolder(out)
    if not hasattr(executor, "each_slot"):
        raise ConfigError(
            "--trials runs a worker per slot of this machine (--workers, --gpus); start the same "
            "command on each machine (a SLURM array) instead of --executor ray"
        )
    out.mkdir(parents=True, exist_ok=True)
    name = study or out.resolve().name
    shared = SharedStudy(
        storage or f"journal:{folder.journal}",
        name,
        space,
        folder,
        algo=algo,
        trials=trials,
        maximize=main.maximize,
        metric=main.name,
        seed=options.get("seed", 0),
        heartbeat=heartbeat,
        ga={k: options[k] for k in ("population", "retain", "random_select", "mutate") if k in options},
    )
    ended = shared.budget().ended
    if ended >= trials:
        print(f"study {name} is complete: {ended} of {trials} trials ended; nothing to do", flush=True)
    pruner = Pruner(prune, main.name, maximize=main.maximize) if prune else None

    def make_trial(key: str, genome: dict) -> Trial:
        return folder.trial(key, recipe_name, {**fixed, **genome})

    run_workers(shared, executor.each_slot(), make_trial, pruner)
    with in_turn(folder.outputs_lock):  # every worker writes them as it ends: one at a time
        return _shared_outputs(shared, folder, recipe_name, fixed, name, main)


def _shared_outputs(shared, folder: SearchFolder, recipe_name: str, fixed: dict, name: str, main: Metric) -> dict:
    """trials.csv, best.json/.yaml and TensorBoard's HPARAMS tab, from the study as it stands."""
    out = folder.path
    keys = [t.user_attrs["towerlab_key"] for t in shared.ended()]
    rows = write_trials(folder, fixed, main.name, keys)
    winner = shared.best(main.maximize)
    if winner is None:
        raise ConfigError(f"no trial of study {name} completed; see the trials' log.txt under {out / 'trials'}")
    best = {"genome": shared.genome(winner), "fitness": winner.value, "evaluations": len(keys)}
    result = folder.trial(winner.user_attrs["towerlab_key"]).result()
    test = Best.of(result.metrics).test if result else {}
    folder.write_best(
        {"recipe": recipe_name, "metric": main.name, "study": name, **best, **({"test": test} if test else {})},
        {**fixed, **best["genome"]},
    )
    write_hparams(out, rows, main.name)
    return best


def _tracking_parent(fixed: dict, folder: SearchFolder, recipe: str):
    """With MLflow tracking on, the search's own MLflow run (the same one when the search is resumed), whose child
    runs its trials are: told to them through the environment the executor passes on."""
    from towerlab import tracking

    uri = fixed.get("mlflow") or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        return None
    parent = tracking.Tracker(uri, fixed.get("mlflow_experiment") or recipe)
    known = folder.tracking().get("run_id")
    run_id = parent.start(
        known,
        f"search {folder.path.resolve().name}",
        {**fixed, "search": str(folder.path)},
        {"towerlab.kind": "search", "towerlab.recipe": recipe},
    )
    if run_id:
        if run_id != known:
            folder.write_tracking(uri, run_id)
        os.environ[tracking.PARENT_ENV] = run_id
    return parent


def trial_row(trial: Trial | None, fixed: dict, metric: str) -> dict | None:
    """One line of trials.csv: the trial's genes, status (ok, failed, pruned), its metric and time."""
    if trial is None:
        return None
    genes = {k: v for k, v in trial.overrides.items() if k not in fixed}
    pruned, result = trial.pruned(), trial.result()
    test = None
    if pruned:
        status, value = "pruned", pruned["value"]
    elif result is not None:
        best = Best.of(result.metrics)
        ok = result.status == "ok"
        status = result.status
        value = (best.value if best else result.metrics.get(metric)) if ok else None
        test = best.test.get(metric) if ok else None
    else:
        status, value = "unfinished", None
    # with --set val_fraction=F the fitness is the held-out validation split's, and test_<metric> the test split's
    return {
        "trial": trial.name,
        **genes,
        metric: value,
        **({f"test_{metric}": test} if test is not None else {}),
        "status": status,
        "seconds": round(result.seconds, 1) if result else None,
    }


def write_trials(folder: SearchFolder, fixed: dict, metric: str, keys: list[str]) -> list[dict]:
    """trials.csv: every trial of the search so far, in the order they were asked for."""
    rows = [r for key in dict.fromkeys(keys) if (r := trial_row(Trial.of_folder(folder.trial(key).out), fixed, metric))]
    if rows:
        folder.write_trials(rows)
    return rows


def write_hparams(out: Path, rows: list[dict], metric: str) -> None:
    """TensorBoard's HPARAMS tab: one entry per finished or pruned trial (out/tb)."""
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(out / "tb", ignore_errors=True)  # rewritten whole: a resumed search lists each trial once
    with SummaryWriter(str(out / "tb")) as writer:
        for r in rows:
            if r[metric] is None:
                continue
            genes = {
                k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
                for k, v in r.items()
                if k not in ("trial", metric, f"test_{metric}", "status", "seconds")
            }
            writer.add_hparams({**genes, "status": r["status"]}, {f"hparam/{metric}": r[metric]}, run_name=r["trial"])


def plot_generations(history: list[dict], path: Path, metric: str) -> None:
    """fitness.png: the best and the mean fitness of each generation."""
    from towerlab.plots import pyplot, save

    plt = pyplot()
    gens = [h["generation"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(gens, [h["best"] for h in history], "o-", label="best")
    ax.plot(gens, [h["mean"] for h in history], "s--", label="mean of the finished trials")
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save(fig, path)
