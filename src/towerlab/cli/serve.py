"""`towerlab serve CONFIG.yaml`: its flags live beside the service (serve/options.py)."""

from __future__ import annotations

from towerlab.serve import options


def add(sub) -> None:
    s = sub.add_parser("serve", help="watch SQL tables, grade new rows with a trained model, write results back")
    options.add_arguments(s)
    s.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from towerlab.serve.run import serve

    serve(args.config, **options.values(args))
    return 0
