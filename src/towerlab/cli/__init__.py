"""towerlab command line: parse, call the library, print.

    towerlab recipes
    towerlab train RECIPE [--data DIR] [--gpus N] [--config FILE.yaml] [--out DIR] [--FIELD VALUE ...]
    towerlab train --resume RUN_DIR
    towerlab eval RUN_DIR [--data DIR]
    towerlab predict RUN_DIR FILE...
    towerlab data fetch mnist|cifar10 DIR
    towerlab data export RECIPE DIR [--n 8]
    towerlab serve CONFIG.yaml [--once] [--http PORT]

Each command is a small `add_<command>(sub)` beside its `cmd_<command>(args)`: train.py (its flags depend on the
recipe), use.py (recipes, eval, predict, report, board, export, data), chem.py, group.py (jobs, ensemble,
search), serve.py; args.py holds what they share.
"""

from __future__ import annotations

import argparse
import os
import sys

from towerlab import __version__
from towerlab.cli import chem, group, serve, train, use
from towerlab.cli.args import Parser, parse_gpus
from towerlab.cli.train import cmd_train
from towerlab.errors import EXIT_PREEMPTED, Preempted, TowerlabError, missing_extra

__all__ = ["cmd_train", "main", "parse_gpus"]

# in the order `towerlab --help` lists them
COMMANDS = (
    use.add_recipes,
    train.add,
    use.add_eval,
    use.add_predict,
    use.add_report,
    use.add_board,
    use.add_export,
    use.add_data,
    chem.add,
    group.add_jobs,
    group.add_ensemble,
    group.add_search,
    serve.add,
)


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="towerlab",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"towerlab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
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
            print(f"towerlab: {'stopped' if isinstance(e, Preempted) else 'error'}: {e}", file=sys.stderr)
        return EXIT_PREEMPTED if isinstance(e, Preempted) else 2
    except ModuleNotFoundError as e:
        why = missing_extra(e)
        if why is None:
            raise
        print(f"towerlab: error: {' '.join(argv[:2])}: {why}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("towerlab: interrupted (the last checkpoint is kept; continue with --resume)", file=sys.stderr)
        return 130
