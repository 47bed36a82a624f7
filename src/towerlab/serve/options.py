"""The service's command-line options, shared by `towerlab serve` and `python -m towerlab.serve` (imports nothing
heavy: building a parser must not start torch)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="service config (YAML)")
    p.add_argument("--once", action="store_true", help="grade what is pending, then exit (for cron and tests)")
    p.add_argument("--http", type=int, metavar="PORT", help="serve /healthz, /readyz and /metrics on this port")
    p.add_argument(
        "--install-trigger",
        action="store_true",
        help="create the NOTIFY trigger on each PostgreSQL source table with notify: true, then exit",
    )
    p.add_argument("--http-host", default="127.0.0.1", help="address for --http (default: 127.0.0.1)")
    p.add_argument(
        "--regrade",
        choices=("errors",),
        help="errors: first grade again every row whose outcome is an error (after a fix of the config or "
        "the model); a row that grades ok replaces its error, once, then the service goes on",
    )
    p.add_argument(
        "--accept-errors",
        action="store_true",
        help="grade a source even when every row of its first batch fails the same way (the service "
        "otherwise stops there: that is how a wrong config looks, and it must not use up the table)",
    )


def values(args: argparse.Namespace) -> dict:
    """The keyword arguments of serve.run.serve, from parsed options (both command lines call it this way)."""
    return {
        "once": args.once,
        "http_port": args.http,
        "http_host": args.http_host,
        "install_trigger": args.install_trigger,
        "regrade": args.regrade,
        "accept_errors": args.accept_errors,
    }
