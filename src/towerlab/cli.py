"""towerlab command line: parse, call the library, print.

    towerlab recipes
    towerlab train RECIPE [--data DIR] [--gpus N] [--config FILE.yaml] [--out DIR] [--FIELD VALUE ...]
    towerlab train --resume RUN_DIR
    towerlab eval RUN_DIR [--data DIR]
    towerlab predict RUN_DIR FILE...
    towerlab data fetch mnist|cifar10 DIR
    towerlab data export RECIPE DIR [--n 8]
    towerlab serve CONFIG.yaml [--once] [--http PORT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from towerlab import __version__, config, recipes
from towerlab.errors import TowerlabError, missing_extra
from towerlab.serve import options as serve_options


class Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line instead of a page of usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _launch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus", default=None, metavar="N|I,J,...",
                   help="GPUs to train on: a count (0 = CPU; N > 1 = N processes under torchrun) or a list of indices "
                        "(default: 1 if a GPU is visible)")
    p.add_argument("--procs", type=POSITIVE, default=None,
                   help="processes to launch (default: --gpus; on --resume, as many as the run was trained with); "
                        "with --gpus 0, N CPU processes over gloo")
    p.add_argument("--out", default=None, help="run directory (default: runs/<recipe>-<time>)")
    p.add_argument("--max-restarts", type=_count(0), default=0,
                   help="restart every process this many times when one fails; each restart resumes from the newest "
                        "checkpoint (torchrun's --max-restarts; towerlab does the same under a hand-run torchrun)")
    p.add_argument("--auto-resume", action="store_true",
                   help="continue the run in --out if it has checkpoints, else start it (for schedulers that requeue)")
    p.add_argument("--dist-timeout", type=_at_least(0.0, strict=True), default=300.0, metavar="SECONDS",
                   help="how long the processes wait for one that does not answer before the run stops (default: 300)")
    p.add_argument("--allow-world-size-change", action="store_true",
                   help="on --resume, continue on another number of processes (not bit-exact)")


LAUNCH_ARGS = ("recipe", "resume", "config", "gpus", "procs", "out", "max_restarts", "auto_resume", "dist_timeout",
               "allow_world_size_change", "no_report")


def _train_parser(recipe_name: str | None) -> argparse.ArgumentParser:
    p = Parser(prog="towerlab train", description="Train a recipe; write a run directory.")
    p.add_argument("recipe", nargs="?", help="recipe name (`towerlab recipes` lists them)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint; "
                                                       "flags after it change what may change (steps, intervals)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of field: value overrides")
    p.add_argument("--no-report", action="store_true", help="do not write report.html at the end (also: "
                                                            "TOWERLAB_REPORT=0)")
    _launch_args(p)
    if recipe_name in recipes.REGISTRY:
        config.add_arguments(p.add_argument_group(f"{recipe_name} config fields"), recipes.config_class(recipe_name))
    return p


def parse_gpus(value: str) -> list[int]:
    """--gpus, the same in every command: a count N (the first N GPUs; 0: none, the CPU) or indices I,J,..."""
    text = value.strip().lower()
    try:
        if text == "none":
            return []
        gpus = list(range(int(text))) if "," not in text else [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        gpus = None
    if gpus is None or text.startswith("-") or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise TowerlabError(f"--gpus {value}: write a count (0 for the CPU, 4) or distinct GPU indices (0,1,3)")
    return gpus


def check_visible(value: str, gpus: list[int], pinned: bool = False) -> None:
    """GPUs asked for must be there: trials 'on 0' and 'on 1' that quietly train on the CPU are a wrong answer.
    pinned: CUDA_VISIBLE_DEVICES already holds exactly these GPUs (train), so torch renumbers them from 0."""
    if not gpus:
        return
    import torch

    seen = torch.cuda.device_count()
    if (len(gpus) if pinned else max(gpus) + 1) > seen:
        raise TowerlabError(f"--gpus {value} asks for GPU {', '.join(map(str, gpus))} but torch sees {seen} GPU(s) "
                            f"here; pass --gpus 0 to use the CPU")


def _train_gpus(value: str | None) -> int | None:
    """The GPU count of `train`; a list of indices also pins them (CUDA_VISIBLE_DEVICES) before torch sees a GPU."""
    if value is None:
        return None
    gpus = parse_gpus(value)
    pinned = "," in value
    if pinned:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    check_visible(value, gpus, pinned)
    return len(gpus)


def _count(minimum: int):
    """An argparse type: an integer >= minimum, refused in one line otherwise."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{n} is too small; give {minimum} or more")
        return n
    return parse


def _at_least(minimum: float, strict: bool = False):
    """An argparse type: a finite number >= minimum (> minimum when strict)."""
    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(x) or x < minimum or (strict and x == minimum):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if strict else '>='} {minimum:g}")
        return x
    return parse


POSITIVE = _count(1)


def _share(text: str) -> float:
    """An argparse type: a fraction in [0, 1]."""
    x = _at_least(0.0)(text)
    if x > 1:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1")
    return x


def cmd_train(argv: list[str]) -> int:
    # the recipe decides which flags exist, so find it before parsing: a registered name, or the resumed run's
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
    args = _train_parser(name).parse_args(argv)
    if not args.recipe and not args.resume:
        raise TowerlabError("name a recipe (`towerlab recipes` lists them) or pass --resume RUN_DIR")
    from towerlab import train  # after parsing: --help starts no torch

    request = train.Request(
        argv=argv, recipe=args.recipe, resume=args.resume, config=args.config, gpus=_train_gpus(args.gpus),
        procs=args.procs, out=args.out, max_restarts=args.max_restarts, auto_resume=args.auto_resume,
        dist_timeout=args.dist_timeout, allow_world_size_change=args.allow_world_size_change,
        fields={k: v for k, v in vars(args).items() if k not in LAUNCH_ARGS})  # only the fields given
    return train.train(request, report=lambda m: _print_result(m, not args.no_report))


def _print_result(m: dict, write_report: bool = True) -> None:
    shown = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and k not in ("wall_s", "step", "world_size") and "/" not in k}  # not per class
    print("final: " + "  ".join(f"{k}={v}" if isinstance(v, int) else f"{k}={v:.4g}" for k, v in shown.items())
          + "  (the last checkpoint)")
    best = m.get("best") or {}
    if "value" in best:
        print(f"best:  {best['metric']}={best['value']:.4g} at step {best['step']} (the best checkpoint: what "
              f"`towerlab eval` uses by default)")
    if best.get("test"):
        print("test:  " + "  ".join(f"{k}={v:.4g}" for k, v in best["test"].items())
              + "  (the test split, scored with the best checkpoint's weights)")
    print(f"run directory: {m['run_dir']}")
    board = Path(sys.executable).parent / "tensorboard"  # the venv's, which a plain `tensorboard` may not be
    print(f"TensorBoard:   {board if board.is_file() else 'tensorboard'} --logdir {m['run_dir']}/tb")
    if write_report:
        _write_report(m["run_dir"])


def _write_report(folder) -> None:
    """report.html at the end of a command, unless TOWERLAB_REPORT=0. The run is done and kept whatever happens:
    a report that cannot be written is one warning line, never a failed command."""
    if os.environ.get("TOWERLAB_REPORT", "1") == "0":
        return
    from towerlab.progress import say
    from towerlab.report import write

    say(f"writing {Path(folder) / 'report.html'} (TOWERLAB_REPORT=0 or --no-report skips it)")
    try:
        print(f"report:        {write(folder)}")
    except Exception as e:  # noqa: BLE001 -- the training result stands; say why the page is missing
        print(f"towerlab: warning: no report.html for {folder} ({type(e).__name__}: {e}); "
              f"`towerlab report {folder}` retries", file=sys.stderr)


def cmd_eval(args) -> int:
    from towerlab import infer
    from towerlab.checkpoint import find, step_of
    from towerlab.runs import RunRecord

    overrides = {"data": args.data} if args.data else {}
    RunRecord.load(args.run_dir)  # "not a run directory" before "no checkpoint"
    folder = find(Path(args.run_dir), args.checkpoint, quiet=True)  # verified once, named below
    metrics = infer.evaluate(args.run_dir, args.checkpoint, folder=folder, **overrides)
    print(json.dumps({**metrics, "checkpoint": args.checkpoint, "checkpoint_step": step_of(folder)}, indent=2))
    print(f"evaluated the {args.checkpoint} checkpoint ({folder.name}, step {step_of(folder)})"
          + ("; --checkpoint last for the other" if args.checkpoint == "best" else ""), file=sys.stderr)
    return 0


def cmd_predict(args) -> int:
    from towerlab import infer

    results = infer.predict(args.run_dir, args.files, args.checkpoint, args.out_dir, args.resize)
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "probabilities" not in r:  # a recipe with outputs of its own: show what it wrote
            print(f"{r['file']}: " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in r.items() if k != "file"))
        else:
            top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:args.top]
            print(f"{r['file']}: {r['class']} ({r['probability']:.3f})   " + "  ".join(f"{k}={v:.3f}" for k, v in top))
    return 0


def cmd_recipes(args) -> int:
    for e in recipes.ENTRIES:
        print(f"{e.name:9s} {e.summary}\n{'':9s} can: {', '.join(e.capabilities)}")
    return 0


def cmd_data(args) -> int:
    if args.action == "fetch":
        from towerlab.data.fetch import fetch

        print(f"{args.name} data in {fetch(args.name, args.dir)}")
        return 0
    from towerlab.infer import export_validation

    for path in export_validation(args.name, args.dir, args.n, args.data or ""):
        print(path)
    return 0


def cmd_chem(args) -> int:
    from towerlab.generate.commands import run

    run(args)
    return 0


def _overrides(items: list[str]) -> dict:
    """--set FIELD=VALUE, repeated -> {field: value}; values read as YAML scalars (3, 0.1, true, text)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TowerlabError(f"--set {item!r}: write FIELD=VALUE, e.g. --set epochs=20")
        out[key] = config.safe_yaml(value, f"--set {key}")
    return out


def _executor(args):
    from towerlab.executor import LocalExecutor, RayExecutor

    gpus = parse_gpus(args.gpus) if args.gpus else None
    if args.executor == "ray":
        return RayExecutor(args.address, gpus=gpus != [], per_gpu=args.per_gpu, cpus_per_trial=args.cpus_per_trial)
    if gpus:
        check_visible(args.gpus, gpus)
    return LocalExecutor(gpus=gpus or None, per_gpu=args.per_gpu, workers=args.workers)


def cmd_jobs(args) -> int:
    from towerlab import jobs

    rows = jobs.run(args.file, args.out, _executor(args))
    keys = [k for k in rows[0] if k != "error"]
    print("  ".join(f"{k:>12s}" for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]:>12.4g}" if isinstance(r[k], float) else f"{str(r[k]):>12s}" for k in keys)
              + (f"  {r['error']}" if r["error"] else ""))
    print(f"summary: {Path(args.out) / 'summary.csv'}")
    if not args.no_report:
        _report_group(Path(args.out), [r["job"] for r in rows if r["status"] != "failed"])
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def cmd_search(args) -> int:
    from towerlab.search.run import search

    fixed = _overrides(args.set)
    ga = {"population": args.population, "generations": args.generations, "retain": args.retain,
          "random_select": args.random_select, "mutate": args.mutate, "seed": args.seed}
    best = search(args.recipe, args.space, args.out, _executor(args), args.algo, fixed, args.points, args.prune, **ga)
    print(json.dumps(best, indent=1))
    print(f"best config: {Path(args.out) / 'best.yaml'}")
    if not args.no_report:
        _report_search(Path(args.out), args.recipe)
    return 0


def _report_group(out: Path, members: list[str]) -> None:
    """The members' reports (the side-by-side table links to them), then the group's."""
    for name in members:
        _write_report(out / name)
    _write_report(out)


def _report_search(out: Path, recipe: str) -> None:
    """Reports for the ten best finished trials (their rows in the search's table link to them), then the search's."""
    from towerlab.runs import SearchFolder

    if os.environ.get("TOWERLAB_REPORT", "1") == "0":
        return
    metric, mode = recipes.get(recipe).MAIN_METRIC
    search = SearchFolder(out)
    for key in search.ranked(metric, maximize=mode == "max")[:10]:
        _write_report(search.trial(key).out)
    _write_report(out)


def cmd_ensemble(args) -> int:
    from towerlab import jobs

    fixed = _overrides(args.set)
    report = jobs.ensemble(args.recipe, args.members, args.out, _executor(args), fixed)
    keys = list(report["ensemble"])
    print(f"{'':10s}" + "".join(f"{k:>22s}" for k in keys))
    for name, m in [*report["members"].items(), ("ensemble", report["ensemble"])]:
        print(f"{name:10s}" + "".join(f"{m.get(k, float('nan')):22.4f}" for k in keys))
    from towerlab.runs.group import ENSEMBLE

    print(f"report: {Path(args.out) / ENSEMBLE}")
    if not args.no_report:
        _report_group(Path(args.out), list(report["members"]))
    return 0


def _add_devices(p) -> None:
    p.add_argument("--gpus", metavar="N|I,J,...", help="GPUs to run trials on: a count (the first N; 0 = none, CPU "
                                                        "trials) or indices (0,2,3); with --executor ray, any count but 0 "
                                                        "uses the cluster's GPUs")
    p.add_argument("--per-gpu", type=POSITIVE, default=1, help="runs at once on each GPU")
    p.add_argument("--workers", type=POSITIVE, default=1, help="without --gpus: CPU processes at once")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: processes on this machine; ray: Ray tasks on a cluster (trial folders on shared storage)")
    p.add_argument("--address", default="auto",
                   help="with --executor ray: the cluster (auto = the one `ray start` runs here, HOST:PORT, or local)")
    p.add_argument("--cpus-per-trial", type=POSITIVE, default=1, help="with --executor ray: CPU cores each trial asks for")


def cmd_export(args) -> int:
    from towerlab.export import export

    done = export(args.run_dir, args.format, args.out, args.checkpoint)
    print(f"{done['format']}: {done['path']} ({done['towerlab.recipe']}, step {done['towerlab.step']}); largest "
          f"difference from PyTorch on {done['inputs']} images: {done['max_abs_diff']:.2e}")
    return 0


def cmd_report(args) -> int:
    from towerlab.report import write

    print(f"report: {write(args.path)}")
    return 0


def cmd_board(args) -> int:
    from towerlab.board import serve

    serve(args.dir, args.port, args.every, args.serve)
    return 0


def cmd_serve(args) -> int:
    from towerlab.serve.run import serve

    serve(args.config, once=args.once, http_port=args.http, http_host=args.http_host,
              install_trigger=args.install_trigger)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="towerlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"towerlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("recipes", help="list the registered recipes").set_defaults(func=cmd_recipes)
    sub.add_parser("train", help="train a recipe (towerlab train RECIPE --help lists its fields)", add_help=False)
    for name, func, helptext in (("eval", cmd_eval, "evaluate a run on its validation data"),
                                 ("predict", cmd_predict, "classify image files (or label their pixels) with a trained run")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("run_dir")
        default = "best" if name == "eval" else "last"  # eval: as ckpt_path="best" users expect
        s.add_argument("--checkpoint", choices=("last", "best"), default=default,
                       help=f"which checkpoint (default: {default}; best = the best validation score)")
        s.set_defaults(func=func)
    sub.choices["eval"].add_argument("--data", help="dataset folder (default: the run's)")
    sub.choices["predict"].add_argument("files", nargs="+", help="image files (PNG, JPEG, ...)")
    sub.choices["predict"].add_argument("--top", type=POSITIVE, default=3, help="probabilities shown per file")
    sub.choices["predict"].add_argument("--out-dir", help="where segmentation and defect recipes write their PNGs "
                                                          "(default: beside each input)")
    sub.choices["predict"].add_argument("--json", action="store_true", help="one JSON object per file")
    sub.choices["predict"].add_argument("--resize", action="store_true", help="resize images of another size to the "
                                                                           "model's input (otherwise refused)")
    rp = sub.add_parser("report", help="write report.html (self-contained: curves, confusion matrix, molecules, a "
                                       "search's trials) into a run or search folder")
    rp.add_argument("path", help="a run directory or a search folder")
    rp.set_defaults(func=cmd_report)
    bd = sub.add_parser("board", help="a web page on 127.0.0.1 listing every run under DIR, live, with their reports")
    bd.add_argument("dir", help="the folder your runs are in")
    bd.add_argument("--port", type=int, default=8800, help="port on 127.0.0.1 (0: any free one; default 8800)")
    bd.add_argument("--every", type=_at_least(0.1), default=3.0, help="seconds between refreshes of the page")
    bd.add_argument("--serve", metavar="CONFIG", help="also show what the service of this config wrote: rows graded, "
                                                      "error rate, grades per minute (read only)")
    bd.set_defaults(func=cmd_board)
    x = sub.add_parser("export", help="write a run's image model as one ONNX or TorchScript file (pixels in, "
                                      "probabilities out), checked against PyTorch")
    x.add_argument("run_dir")
    x.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    x.add_argument("--out", help="file to write (default: RUN/model.onnx or RUN/model.pt)")
    x.add_argument("--checkpoint", choices=("last", "best"), default="last", help="which checkpoint (default: last)")
    x.set_defaults(func=cmd_export)
    d = sub.add_parser("data", help="download datasets; export sample images")
    d.add_argument("action", choices=("fetch", "export"))
    d.add_argument("name", help="fetch: mnist|cifar10; export: a recipe name")
    d.add_argument("dir", help="destination folder")
    d.add_argument("--n", type=POSITIVE, default=8, help="export: how many validation images")
    d.add_argument("--data", help="export: dataset folder (default: $TOWERLAB_DATA/<dataset>)")
    d.set_defaults(func=cmd_data)
    c = sub.add_parser("chem", help="use a molecule generator: sample; encode, decode, optimize (autoencoders); "
                                    "hillclimb, mcts (smiles-lstm); graph-ga (no model: molecules from --start)")
    c.add_argument("action", choices=("sample", "encode", "decode", "optimize", "hillclimb", "mcts", "graph-ga"))
    c.add_argument("run_dir", nargs="?", help="the trained run (every action but graph-ga)")
    c.add_argument("input", nargs="?", help="encode: SMILES file; decode: latents CSV; optimize: seed SMILES (default: "
                                            "--n-seeds drawn at random from the run's held-out molecules)")
    c.add_argument("--checkpoint", choices=("last", "best"), default="best")
    c.add_argument("--out", help="sample/encode/decode/optimize: the CSV to write (default: RUN_DIR/<action>.csv; a PNG "
                                 "grid beside it); hillclimb/mcts: the folder (default: RUN_DIR/<action>-<objective>-"
                                 "seed<N>)")
    c.add_argument("--seed", type=int, default=0, help="random seed (sampling, seed choice, search)")
    c.add_argument("--temperature", type=_at_least(0.0), default=None, help="sampling temperature (0: the most probable token; "
                                                                   "default: 1 for smiles-lstm, 0 for autoencoders)")
    g = c.add_argument_group("sample")
    g.add_argument("--n", type=POSITIVE, default=1000, help="how many molecules")
    g.add_argument("--sample-tokens", action="store_true", help="draw each token (= --temperature 1)")
    g.add_argument("--train-data", help="the training SMILES for novelty (default: the file the run trained on)")
    g.add_argument("--reference", help="also report novelty against this SMILES file, e.g. "
                                       "$TOWERLAB_DATA/moses/train.csv.gz (canonical set cached)")
    g.add_argument("--fcd", action="store_true", help="also report the Frechet ChemNet Distance (fcd_torch)")
    g.add_argument("--fcd-reference", help="the FCD's reference set (default: $TOWERLAB_DATA/moses/test.csv.gz; "
                                           "its statistics cached)")
    g.add_argument("--kl", action="store_true", help="also report GuacaMol's KL-divergence score against the "
                                                     "training set")
    g = c.add_argument_group("optimize")
    g.add_argument("--property", default="qed", help="which predicted property to raise")
    g.add_argument("--steps", type=POSITIVE, default=50, help="gradient steps in latent space")
    g.add_argument("--lr", type=_at_least(0.0, strict=True), default=None, help="optimize: Adam step in latent space (default 0.05); "
                                                          "hillclimb: fine-tuning lr (default 1e-3)")
    g.add_argument("--n-seeds", type=POSITIVE, default=20, help="seed molecules")
    g = c.add_argument_group("hillclimb and mcts")
    g.add_argument("--objective", default="qed", help="qed, plogp, logp, similarity:SMILES, guacamol:NAME (a "
                                                      "goal-directed v2 benchmark) or package.module:function")
    g.add_argument("--rounds", type=POSITIVE, default=20, help="hillclimb: rounds (GuacaMol baseline: 20)")
    g.add_argument("--samples", type=POSITIVE, default=1024, help="hillclimb: molecules sampled per round")
    g.add_argument("--keep", type=POSITIVE, default=512, help="hillclimb: best molecules kept and fine-tuned on")
    g.add_argument("--epochs", type=POSITIVE, default=2, help="hillclimb: fine-tuning epochs per round")
    g.add_argument("--batch-size", type=POSITIVE, default=256, help="hillclimb: fine-tuning batch")
    g.add_argument("--budget", type=POSITIVE, default=5000, help="mcts: valid molecules to generate (ChemTS's count)")
    g.add_argument("--expand", type=POSITIVE, default=30, help="mcts: next tokens drawn from the RNN per expansion; "
                                                               "the distinct ones are candidate children (ChemTS: 30)")
    g.add_argument("--rollouts", type=POSITIVE, default=1, help="mcts: completions per candidate child (ChemTS: 1)")
    g.add_argument("--c", type=_at_least(0.0), default=1.0, help="mcts: UCB exploration constant")
    g.add_argument("--start", help="hillclimb: SMILES file whose best --keep molecules seed the pool (default: the "
                                   "run's training file, as GuacaMol's baseline; `none`: no seeding); graph-ga: the "
                                   "first population is its best (default: $TOWERLAB_DATA/zinc250k_jtvae/valid.txt)")
    g.add_argument("--start-limit", type=_count(0), default=0, help="score a seeded draw of this many molecules "
                                                                       "of --start (0: all of them)")
    g.add_argument("--max-calls", type=_count(0), default=0, help="hillclimb, mcts, graph-ga: bound on objective calls, "
                                                                  "never exceeded (0: none)")
    g = c.add_argument_group("graph-ga (Jensen 2019; GuacaMol's baseline settings by default)")
    g.add_argument("--population", type=POSITIVE, default=100, help="molecules kept per generation")
    g.add_argument("--offspring", type=POSITIVE, default=200, help="children per generation")
    g.add_argument("--generations", type=POSITIVE, default=1000, help="generations")
    g.add_argument("--mutation-rate", type=_share, default=0.01, help="share of children mutated")
    c.set_defaults(func=cmd_chem)
    j = sub.add_parser("jobs", help="run a list of trainings side by side, one per device")
    j.add_argument("--no-report", action="store_true", help="do not write report.html (the group's and each "
                                                             "member's) at the end (also: TOWERLAB_REPORT=0)")
    j.add_argument("action", choices=("run",))
    j.add_argument("file", help="JOBS.yaml: jobs: [{name, recipe, overrides}, ...]")
    j.add_argument("--out", default="runs/jobs", help="folder of the job runs and summary (default: runs/jobs)")
    _add_devices(j)
    j.set_defaults(func=cmd_jobs)
    en = sub.add_parser("ensemble", help="train K seeds of a recipe side by side; evaluate their averaged probabilities")
    en.add_argument("--no-report", action="store_true", help="do not write report.html (the group's and each "
                                                             "member's) at the end (also: TOWERLAB_REPORT=0)")
    en.add_argument("recipe")
    en.add_argument("--members", type=POSITIVE, default=4)
    en.add_argument("--out", default="runs/ensemble")
    en.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override for every member")
    _add_devices(en)
    en.set_defaults(func=cmd_ensemble)
    se = sub.add_parser("search", help="genetic or grid search over a recipe's config")
    se.add_argument("--no-report", action="store_true", help="do not write report.html (the search's and its ten "
                                                             "best trials') at the end (also: TOWERLAB_REPORT=0)")
    se.add_argument("recipe")
    se.add_argument("--space", required=True, help="SPACE.yaml: field: {choices|int|float|logfloat: [...]}")
    se.add_argument("--algo", choices=("ga", "tpe", "random", "grid"), default="ga",
                    help="ga (default), tpe or random (Optuna's samplers: population trials per batch, generations "
                         "batches), grid")
    se.add_argument("--out", default="runs/search", help="search folder (rerun the command to resume)")
    se.add_argument("--population", type=_count(2), default=20)
    se.add_argument("--generations", type=POSITIVE, default=10)
    se.add_argument("--retain", type=_share, default=0.4, help="share of the fittest kept as parents")
    se.add_argument("--random-select", type=_share, default=0.1, help="chance to keep a less fit genome")
    se.add_argument("--mutate", type=_share, default=0.2, help="chance that a child gets one gene drawn afresh")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--points", type=_count(2), default=4, help="grid: values per numeric range")
    se.add_argument("--prune", choices=("median", "asha"), help="stop hopeless trials at an evaluation: below the median "
                                                              "of earlier trials there, or outside the best third at "
                                                              "ASHA's rungs (local executor; off by default)")
    se.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="fixed override for every trial")
    _add_devices(se)
    se.set_defaults(func=cmd_search)
    s = sub.add_parser("serve", help="watch SQL tables, grade new rows with a trained model, write results back")
    serve_options.add_arguments(s)
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] == "train":
            return cmd_train(argv[1:])
        args = _parser().parse_args(argv)
        return args.func(args)
    except TowerlabError as e:
        if not (e.all_ranks and os.environ.get("RANK", "0") != "0"):  # an error every process raised: said once
            print(f"towerlab: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        why = missing_extra(e)
        if why is None:
            raise
        print(f"towerlab: error: {' '.join(argv[:2])}: {why}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("towerlab: interrupted (the last checkpoint is kept; continue with --resume)", file=sys.stderr)
        return 130
