"""python -m towerlab.serve CONFIG.yaml [--once] [--http PORT]"""

import sys

from towerlab.cli import main

raise SystemExit(main(["serve", *sys.argv[1:]]))
