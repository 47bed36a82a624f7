"""`towerlab train`: its flags depend on the recipe, so it is parsed apart from the other commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from towerlab import config, recipes
from towerlab.cli.args import POSITIVE, Parser, add_no_report, at_least, check_visible, count, parse_gpus, write_report
from towerlab.errors import TowerlabError

LAUNCH_ARGS = (
    "recipe",
    "resume",
    "config",
    "gpus",
    "procs",
    "out",
    "max_restarts",
    "auto_resume",
    "dist_timeout",
    "allow_world_size_change",
    "no_report",
    "print_config",
    "plan",
)


def add(sub) -> None:
    """Listed in `towerlab --help`; main() hands `train ...` to cmd_train before the shared parser sees it."""
    sub.add_parser("train", help="train a recipe (towerlab train RECIPE --help lists its fields)", add_help=False)


def _launch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gpus",
        default=None,
        metavar="N|I,J,...",
        help="GPUs to train on: a count (0 = CPU; N > 1 = N processes under torchrun) or a list of indices "
        "(default: 1 if a GPU is visible)",
    )
    p.add_argument(
        "--procs",
        type=POSITIVE,
        default=None,
        help="processes to launch (default: --gpus; on --resume, as many as the run was trained with); "
        "with --gpus 0, N CPU processes over gloo",
    )
    p.add_argument("--out", default=None, help="run directory (default: runs/<recipe>-<time>)")
    p.add_argument(
        "--max-restarts",
        type=count(0),
        default=0,
        help="restart every process this many times when one fails; each restart resumes from the newest "
        "checkpoint (torchrun's --max-restarts; towerlab does the same under a hand-run torchrun)",
    )
    p.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue the run in --out if it has checkpoints, else start it (for schedulers that requeue)",
    )
    p.add_argument(
        "--dist-timeout",
        type=at_least(0.0, strict=True),
        default=300.0,
        metavar="SECONDS",
        help="how long the processes wait for one that does not answer before the run stops (default: 300)",
    )
    p.add_argument(
        "--allow-world-size-change",
        action="store_true",
        help="on --resume, continue on another number of processes (not bit-exact)",
    )


def parser(recipe_name: str | None) -> argparse.ArgumentParser:
    p = Parser(prog="towerlab train", description="Train a recipe; write a run directory.")
    p.add_argument("recipe", nargs="?", help="recipe name (`towerlab recipes` lists them)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest checkpoint; "
        "flags after it change what may change (steps, intervals)",
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of field: value overrides")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (defaults < --config < flags; on --resume, the run's own) as the YAML "
        "--config accepts, and exit without training",
    )
    p.add_argument("--plan", help=argparse.SUPPRESS)  # the processes train.launch starts: the command's run plan
    add_no_report(p)
    _launch_args(p)
    if recipe_name in recipes.REGISTRY:
        config.add_arguments(p.add_argument_group(f"{recipe_name} config fields"), recipes.config_class(recipe_name))
    return p


def _gpu_count(value: str | None) -> int | None:
    """The GPU count of `train`; a list of indices also pins them (CUDA_VISIBLE_DEVICES) before torch sees a GPU."""
    if value is None:
        return None
    gpus = parse_gpus(value)
    pinned = "," in value
    if pinned:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    check_visible(value, gpus, pinned)
    return len(gpus)


def _recipe_of(argv: list[str]) -> str | None:
    """The recipe decides which flags exist, so it is found before parsing: a registered name, or the resumed run's."""
    name = next((a for a in argv if a in recipes.REGISTRY), None)
    resume_dir = config.flag_value(argv, "--resume")
    if name is None and not resume_dir and argv and not argv[0].startswith("-"):
        recipes.get(argv[0])  # `train resnet50 --lr 0.1`: name the unknown recipe, not its flags
    if resume_dir:
        from towerlab.runs import read_config

        saved = read_config(resume_dir)[0]
        if name and name != saved:
            raise TowerlabError(f"{resume_dir} is a {saved} run, not {name}; drop the recipe name or pass another run")
        name = saved
    return name


def cmd_train(argv: list[str]) -> int:
    args = parser(_recipe_of(argv)).parse_args(argv)
    if not args.recipe and not args.resume and not args.plan:
        raise TowerlabError("name a recipe (`towerlab recipes` lists them) or pass --resume RUN_DIR")
    fields = {k: v for k, v in vars(args).items() if k not in LAUNCH_ARGS}  # only the fields given
    from towerlab import train

    request = train.Request(
        recipe=args.recipe,
        resume=args.resume,
        config=args.config,
        gpus=_gpu_count(args.gpus),
        procs=args.procs,
        out=args.out,
        max_restarts=args.max_restarts,
        auto_resume=args.auto_resume,
        dist_timeout=args.dist_timeout,
        allow_world_size_change=args.allow_world_size_change,
        fields=fields,
        plan=args.plan,
        passthrough=_passthrough(args),
    )
    # the run plan, made once here: a fresh run's bad value or file ends in one line before torch starts (0.2 s)
    plan = None if args.plan else train.resolve(request)
    if args.print_config:
        print(resolved_yaml(plan), end="")
        return 0
    return train.train(request, report=lambda m: print_result(m, not args.no_report), plan=plan)


def _passthrough(args: argparse.Namespace) -> list[str]:
    """What the launched processes need besides the plan: the devices, the collective timeout, the report."""
    flags = ["--dist-timeout", str(args.dist_timeout)]
    if args.gpus is not None:
        flags += ["--gpus", args.gpus]
    return flags + (["--no-report"] if args.no_report else [])


def resolved_yaml(plan) -> str:
    """The config this command would train with, as a YAML file `--config` takes back unchanged (LightningCLI's
    --print_config habit). The fields --fast chooses are left out: it chooses them again where the run starts."""
    import yaml

    values = dict(plan.config)
    if plan.resume:
        how = f"towerlab train --resume {plan.out} --config FILE"
    else:
        how = f"towerlab train {plan.recipe} --config FILE"
    if values.get("fast"):
        from towerlab.perf import FAST_FIELDS

        values = {k: v for k, v in values.items() if k not in FAST_FIELDS}
    return f"# {plan.recipe}: the resolved config; train it with `{how}`\n" + yaml.safe_dump(values, sort_keys=False)


def print_result(m: dict, report: bool = True) -> None:
    shown = {
        k: v
        for k, v in m.items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k not in ("wall_s", "step", "world_size")
        and "/" not in k
    }  # not per class
    print(
        "final: "
        + "  ".join(f"{k}={v}" if isinstance(v, int) else f"{k}={v:.4g}" for k, v in shown.items())
        + "  (the last checkpoint)"
    )
    from towerlab.runs.best import Best

    best = Best.of(m)
    if best:
        print(
            f"best:  {best.metric}={best.value:.4g} at step {best.step} (the best checkpoint: what "
            f"`towerlab eval` uses by default)"
        )
    if best.test:
        print(
            "test:  "
            + "  ".join(f"{k}={v:.4g}" for k, v in best.test.items())
            + "  (the test split, scored with the best checkpoint's weights)"
        )
    print(f"run directory: {m['run_dir']}")
    board = Path(sys.executable).parent / "tensorboard"  # the venv's, which a plain `tensorboard` may not be
    print(f"TensorBoard:   {board if board.is_file() else 'tensorboard'} --logdir {m['run_dir']}/tb")
    if m.get("unchanged"):  # a finished run resumed with nothing more to train: its report and artifacts stand
        return
    if m.get("signal"):  # a signal came during the last step: the run is complete; the report waits for a command
        print(
            f"{m['signal']} during the last step: the run is complete; report skipped (`towerlab report "
            f"{m['run_dir']}` writes it)"
        )
        return
    if report:
        write_report(m["run_dir"])
    upload_to_tracking(m["run_dir"])


def upload_to_tracking(run_dir) -> None:
    """With MLflow tracking on: the report (and with --mlflow-log-model the model as ONNX) as the run's artifacts."""
    from towerlab.runs import RunRecord

    rec = RunRecord.load(run_dir)
    where = rec.tracking()
    if not where:
        return
    from towerlab import tracking

    tracker = tracking.Tracker(where["uri"], "")
    tracker.run_id = where["run_id"]
    tracker.artifact(Path(run_dir) / "report.html")
    if rec.config.get("mlflow_log_model"):
        from towerlab.export import export

        tracker.artifact(Path(export(run_dir, "onnx")["path"]))
