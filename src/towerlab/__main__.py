"""python -m towerlab ... (the processes towerlab relaunches run it this way)."""

from towerlab import drop_cwd_from_path

drop_cwd_from_path()

from towerlab.cli import main  # noqa: E402 (after the import path is made safe)

raise SystemExit(main())
