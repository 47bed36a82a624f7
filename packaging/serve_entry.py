"""Entry point of the stand-alone `towerlab-serve` executable (PyInstaller; `make exe`)."""

import multiprocessing
import sys

from towerlab.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen program must not re-run itself in spawned children
    raise SystemExit(main(["serve", *sys.argv[1:]]))
