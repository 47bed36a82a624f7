"""Commands that put runs to work or look at them: recipes, eval, predict, export, report, board, data."""

from __future__ import annotations

import sys
from pathlib import Path

from towerlab import recipes
from towerlab.cli.args import POSITIVE, add_checkpoint, at_least
from towerlab.files import json_text


def add_recipes(sub) -> None:
    sub.add_parser("recipes", help="list the registered recipes").set_defaults(func=cmd_recipes)


def cmd_recipes(args) -> int:
    for e in recipes.ENTRIES:
        print(f"{e.name:9s} {e.summary}\n{'':9s} can: {', '.join(e.capabilities)}")
    return 0


def add_eval(sub) -> None:
    s = sub.add_parser("eval", help="evaluate a run on its validation data")
    s.add_argument("run_dir")
    add_checkpoint(s, "best")  # as ckpt_path="best" users expect
    s.add_argument("--data", help="dataset folder (default: the run's)")
    s.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from towerlab import infer
    from towerlab.checkpoint import find, step_of
    from towerlab.runs import RunRecord

    overrides = {"data": args.data} if args.data else {}
    RunRecord.load(args.run_dir)  # "not a run directory" before "no checkpoint"
    folder = find(Path(args.run_dir), args.checkpoint)  # verified once (a fallback is said), named below
    metrics = infer.evaluate(args.run_dir, args.checkpoint, folder=folder, **overrides)
    print(json_text({**metrics, "checkpoint": args.checkpoint, "checkpoint_step": step_of(folder)}, indent=2))
    print(
        f"evaluated the {args.checkpoint} checkpoint ({folder.name}, step {step_of(folder)})"
        + ("; --checkpoint last for the other" if args.checkpoint == "best" else ""),
        file=sys.stderr,
    )
    return 0


def add_predict(sub) -> None:
    s = sub.add_parser("predict", help="classify image files (or label their pixels) with a trained run")
    s.add_argument("run_dir")
    add_checkpoint(s, "last")
    s.add_argument(
        "files",
        nargs="+",
        help="image files (PNG, JPEG, ...), or one folder: every image under it, one "
        "CSV row each (resized to the model's input, as training on a folder)",
    )
    s.add_argument("--top", type=POSITIVE, default=3, help="probabilities shown per file")
    s.add_argument(
        "--out-dir",
        help="where segmentation and defect recipes write their PNGs (default: beside each "
        "input file; for a folder, a folder beside the CSV); a file towerlab did not "
        "write is never overwritten",
    )
    s.add_argument("--json", action="store_true", help="one JSON object per file")
    s.add_argument("--out", help="a folder's results: the CSV to write (default: RUN_DIR/predict-<folder>.csv)")
    s.add_argument(
        "--resize", action="store_true", help="resize images of another size to the model's input (otherwise refused)"
    )
    s.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    from towerlab import infer

    if len(args.files) == 1 and Path(args.files[0]).is_dir():
        out = args.out or str(Path(args.run_dir) / f"predict-{Path(args.files[0]).resolve().name}.csv")
        # a folder's pictures (overlays, label maps) go beside the CSV, never among the images they came from
        out_dir = args.out_dir or str(Path(out).with_suffix(""))
        done = infer.predict_folder(args.run_dir, args.files[0], out, args.checkpoint, out_dir)
        print(f"{done['rows']} images predicted, {done['skipped']} skipped (unreadable); CSV: {done['csv']}")
        return 0
    results = infer.predict(args.run_dir, args.files, args.checkpoint, args.out_dir, args.resize)
    for r in results:
        if args.json:
            print(json_text(r))
        elif "probabilities" not in r:  # a recipe with outputs of its own: show what it wrote
            print(
                f"{r['file']}: "
                + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items() if k != "file")
            )
        else:
            top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[: args.top]
            print(f"{r['file']}: {r['class']} ({r['probability']:.3f})   " + "  ".join(f"{k}={v:.3f}" for k, v in top))
    return 0


def add_report(sub) -> None:
    s = sub.add_parser(
        "report",
        help="write report.html (self-contained: curves, confusion matrix, molecules, a "
        "search's trials) into a run or search folder",
    )
    s.add_argument("path", help="a run directory or a search folder")
    s.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from towerlab.report import write

    print(f"report: {write(args.path)}")
    return 0


def add_board(sub) -> None:
    s = sub.add_parser("board", help="a web page on 127.0.0.1 listing every run under DIR, live, with their reports")
    s.add_argument("dir", help="the folder your runs are in")
    s.add_argument("--port", type=int, default=8800, help="port on 127.0.0.1 (0: any free one; default 8800)")
    s.add_argument("--every", type=at_least(0.1), default=3.0, help="seconds between refreshes of the page")
    s.add_argument(
        "--serve",
        metavar="CONFIG",
        help="also show what the service of this config wrote: rows graded, error rate, grades per minute (read only)",
    )
    s.set_defaults(func=cmd_board)


def cmd_board(args) -> int:
    from towerlab.board import serve

    serve(args.dir, args.port, args.every, args.serve)
    return 0


def add_export(sub) -> None:
    s = sub.add_parser(
        "export",
        help="write a run's image model as one ONNX or TorchScript file (pixels in, "
        "probabilities out), checked against PyTorch",
    )
    s.add_argument("run_dir")
    s.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    s.add_argument("--out", help="file to write (default: RUN/model.onnx or RUN/model.pt)")
    s.add_argument(
        "--register",
        metavar="NAME",
        help="also log the ONNX model as a new version of NAME in the MLflow model registry "
        "(MLFLOW_TRACKING_URI's, or --mlflow's); serve it with model: models:/NAME@ALIAS",
    )
    s.add_argument("--alias", help="with --register: point this alias (e.g. champion) at the new version")
    s.add_argument(
        "--mlflow", default="", metavar="URI", help="the registry's MLflow address (default: $MLFLOW_TRACKING_URI)"
    )
    add_checkpoint(s, "last")
    s.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from towerlab.errors import ConfigError
    from towerlab.export import export

    if args.register and args.format != "onnx":
        raise ConfigError("--register logs an ONNX model: drop --format torchscript")
    if args.alias and not args.register:
        raise ConfigError("--alias names the version --register makes: add --register NAME")
    if args.register:  # the registry's address is checked before minutes of export
        from towerlab import registry

        uri = registry.tracking_uri(args.mlflow)
        from towerlab import secrets

        if args.mlflow and secrets.has_password(args.mlflow):
            raise ConfigError(
                "--mlflow holds a password, which would stay in your shell history: put it in "
                "MLFLOW_TRACKING_PASSWORD (or the whole URI in MLFLOW_TRACKING_URI)"
            )
    done = export(args.run_dir, args.format, args.out, args.checkpoint)
    print(
        f"{done['format']}: {done['path']} ({done['towerlab.recipe']}, step {done['towerlab.step']}); largest "
        f"difference from PyTorch on {done['inputs']} images: {done['max_abs_diff']:.2e}"
    )
    if args.register:
        from pathlib import Path

        meta = {k: v for k, v in done.items() if k.startswith("towerlab.")}
        reg = registry.register(Path(done["path"]), args.register, Path(args.run_dir), meta, uri, args.alias)
        alias = f", alias {reg['alias']}" if reg["alias"] else ""
        print(f"registered: models:/{reg['name']}/{reg['version']}{alias} at {reg['uri']}")
    return 0


def add_data(sub) -> None:
    s = sub.add_parser("data", help="download datasets; export sample images")
    s.add_argument("action", choices=("fetch", "export"))
    s.add_argument("name", help="fetch: mnist|cifar10; export: a recipe name")
    s.add_argument("dir", help="destination folder")
    s.add_argument("--n", type=POSITIVE, default=8, help="export: how many validation images")
    s.add_argument("--data", help="export: dataset folder (default: $TOWERLAB_DATA/<dataset>)")
    s.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    if args.action == "fetch":
        from towerlab.data.fetch import fetch

        print(f"{args.name} data in {fetch(args.name, args.dir)}")
        return 0
    from towerlab.infer import export_validation

    for path in export_validation(args.name, args.dir, args.n, args.data or ""):
        print(path)
    return 0
