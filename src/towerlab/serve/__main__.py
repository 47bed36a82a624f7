"""python -m towerlab.serve CONFIG.yaml [--once] [--http PORT] (also the entry of the one-file executable)."""

from towerlab import drop_cwd_from_path

drop_cwd_from_path()  # before anything else is imported: not the current folder's yaml.py or sqlalchemy/

import argparse  # noqa: E402
import sys  # noqa: E402

from towerlab.errors import TowerlabError, missing_extra  # noqa: E402
from towerlab.serve import options  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="towerlab-serve", description="Watch SQL tables, grade new rows, write results.")
    options.add_arguments(p)
    args = p.parse_args(argv)
    try:
        from towerlab.serve.run import serve

        serve(args.config, **options.values(args))
    except TowerlabError as e:
        print(f"towerlab: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if missing_extra(e) is None:
            raise
        print(f"towerlab: error: serve: {missing_extra(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
