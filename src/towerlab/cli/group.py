"""Commands that run many trainings side by side through an executor: jobs, ensemble, search."""

from __future__ import annotations

import os
from pathlib import Path

from towerlab import recipes
from towerlab.cli.args import (
    POSITIVE,
    add_devices,
    add_no_report,
    add_set,
    at_least,
    count,
    executor,
    overrides,
    share,
    write_report,
)
from towerlab.files import json_text
from towerlab.search import SEARCHERS


def _report_group(out: Path, members: list[str]) -> None:
    """The members' reports (the side-by-side table links to them), then the group's."""
    for name in members:
        write_report(out / name)
    write_report(out)


def add_jobs(sub) -> None:
    s = sub.add_parser("jobs", help="run a list of trainings side by side, one per device")
    add_no_report(s, " (the group's and each member's)")
    s.add_argument("action", choices=("run",))
    s.add_argument("file", help="JOBS.yaml: jobs: [{name, recipe, overrides}, ...]")
    s.add_argument("--out", default="runs/jobs", help="folder of the job runs and summary (default: runs/jobs)")
    add_devices(s)
    s.set_defaults(func=cmd_jobs)


def cmd_jobs(args) -> int:
    from towerlab import jobs

    rows = jobs.run(args.file, args.out, executor(args))
    keys = [k for k in rows[0] if k != "error"]
    print("  ".join(f"{k:>12s}" for k in keys))
    for r in rows:
        print(
            "  ".join(f"{r[k]:>12.4g}" if isinstance(r[k], float) else f"{str(r[k]):>12s}" for k in keys)
            + (f"  {r['error']}" if r["error"] else "")
        )
    print(f"summary: {Path(args.out) / 'summary.csv'}")
    if not args.no_report:
        _report_group(Path(args.out), [r["job"] for r in rows if r["status"] != "failed"])
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def add_ensemble(sub) -> None:
    s = sub.add_parser("ensemble", help="train K seeds of a recipe side by side; evaluate their averaged probabilities")
    add_no_report(s, " (the group's and each member's)")
    s.add_argument("recipe")
    s.add_argument("--members", type=POSITIVE, default=4)
    s.add_argument("--out", default="runs/ensemble")
    add_set(s, "every member")
    add_devices(s)
    s.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args) -> int:
    from towerlab import jobs
    from towerlab.runs.group import ENSEMBLE

    report = jobs.ensemble(args.recipe, args.members, args.out, executor(args), overrides(args.set))
    keys = list(report["ensemble"])
    print(f"{'':10s}" + "".join(f"{k:>22s}" for k in keys))
    for name, m in [*report["members"].items(), ("ensemble", report["ensemble"])]:
        print(f"{name:10s}" + "".join(f"{m.get(k, float('nan')):22.4f}" for k in keys))
    print(f"report: {Path(args.out) / ENSEMBLE}")
    if not args.no_report:
        _report_group(Path(args.out), list(report["members"]))
    return 0


def add_search(sub) -> None:
    s = sub.add_parser("search", help="genetic or grid search over a recipe's config")
    add_no_report(s, " (the search's and its ten best trials')")
    s.add_argument("recipe")
    s.add_argument("--space", required=True, help="SPACE.yaml: field: {choices|int|float|logfloat: [...]}")
    s.add_argument(
        "--algo",
        choices=tuple(SEARCHERS),
        default="ga",
        help="ga (default), tpe or random (Optuna's samplers: population trials per batch, generations batches), grid",
    )
    s.add_argument("--out", default="runs/search", help="search folder (rerun the command to resume)")
    s.add_argument("--population", type=count(2), default=20)
    s.add_argument("--generations", type=POSITIVE, default=10)
    s.add_argument("--retain", type=share, default=0.4, help="share of the fittest kept as parents")
    s.add_argument("--random-select", type=share, default=0.1, help="chance to keep a less fit genome")
    s.add_argument("--mutate", type=share, default=0.2, help="chance that a child gets one gene drawn afresh")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--points", type=count(2), default=4, help="grid: values per numeric range")
    s.add_argument(
        "--prune",
        choices=("median", "asha"),
        help="stop hopeless trials at an evaluation: below the median "
        "of earlier trials there, or outside the best third at "
        "ASHA's rungs (the local and the Ray executor; off by default)",
    )
    s.add_argument(
        "--storage",
        metavar="journal:PATH|URL",
        help="also keep every finished trial in this Optuna "
        "storage (journal:PATH, sqlite:///FILE, "
        "postgresql://...), for optuna-dashboard",
    )
    s.add_argument(
        "--trials",
        type=count(1),
        help="a study of this many trials shared by every worker that runs this same command (several shells, "
        "a SLURM array, several machines; with --storage): each asks for its next trial, no batch barrier; "
        "with --workers K each local slot is a worker (default storage: journal:OUT/study.journal)",
    )
    s.add_argument(
        "--heartbeat",
        type=at_least(0.1, strict=False),
        default=10.0,
        metavar="SECONDS",
        help="with --trials: how often a worker says it is alive; a trial whose worker missed six beats is "
        "retried by another, from its checkpoints (default: 10)",
    )
    s.add_argument(
        "--study",
        help="the study's name in --storage (default: the --out folder's name); a study that "
        "holds another search's trials is refused",
    )
    add_set(s, "every trial (fixed)")
    add_devices(s)
    s.set_defaults(func=cmd_search)


def cmd_search(args) -> int:
    from towerlab.search.run import search

    ga = {
        "population": args.population,
        "generations": args.generations,
        "retain": args.retain,
        "random_select": args.random_select,
        "mutate": args.mutate,
        "seed": args.seed,
    }
    best = search(
        args.recipe,
        args.space,
        args.out,
        executor(args),
        args.algo,
        overrides(args.set),
        args.points,
        args.prune,
        args.storage,
        study=args.study,
        trials=args.trials,
        heartbeat=args.heartbeat,
        **ga,
    )
    print(json_text(best, indent=1))
    print(f"best config: {Path(args.out) / 'best.yaml'}")
    if not args.no_report and os.environ.get("TOWERLAB_REPORT", "1") != "0":
        _report_search(Path(args.out), args.recipe)
    return 0


def _report_search(out: Path, recipe: str) -> None:
    """Reports for the ten best finished trials (their rows in the search's table link to them), then the search's."""
    from towerlab.runs import SearchFolder
    from towerlab.runs.best import Metric

    main = Metric.of(recipes.get(recipe))
    search = SearchFolder(out)
    for key in search.ranked(main.name, maximize=main.maximize)[:10]:
        write_report(search.trial(key).out)
    write_report(out)
