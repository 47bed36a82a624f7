"""The service's command-line options, shared by `towerlab serve` and `python -m towerlab.serve` (imports nothing
heavy: building a parser must not start torch)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="service config (YAML)")
    p.add_argument("--once", action="store_true", help="grade what is pending, then exit (for cron and tests)")
    p.add_argument("--http", type=int, metavar="PORT", help="serve /healthz, /readyz and /metrics on this port")
    p.add_argument("--install-trigger", action="store_true",
                   help="create the NOTIFY trigger on each PostgreSQL source table with notify: true, then exit")
    p.add_argument("--http-host", default="127.0.0.1", help="address for --http (default: 127.0.0.1)")
