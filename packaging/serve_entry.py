"""Entry point of the stand-alone `towerlab-serve` executable (PyInstaller; `make exe`)."""

import multiprocessing
import sys

from towerlab.serve.__main__ import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen program must not re-run itself in spawned children
    raise SystemExit(main(sys.argv[1:]))
