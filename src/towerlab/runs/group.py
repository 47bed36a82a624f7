"""A jobs folder (towerlab jobs run: summary.json and .csv, a folder per job) and an ensemble folder (towerlab
ensemble: ensemble.json, a folder per member): many runs side by side."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from towerlab.files import atomic_write, json_text

SUMMARY, ENSEMBLE = "summary.json", "ensemble.json"


class GroupFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def kind(self) -> str | None:
        """ensemble, jobs, or None."""
        return "ensemble" if (self.path / ENSEMBLE).is_file() else "jobs" if (self.path / SUMMARY).is_file() else None

    def write_summary(self, rows: list[dict]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / SUMMARY, json_text(rows, indent=2))
        with open(self.path / "summary.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            w.writeheader()
            w.writerows(rows)

    def write_ensemble(self, report: dict) -> Path:
        return atomic_write(self.path / ENSEMBLE, json_text(report, indent=2))

    def rows(self) -> tuple[str, list[dict]]:
        """(the column that names a member, one row per member: its metrics; an ensemble's own row last)."""
        if self.kind == "ensemble":
            data = json.loads((self.path / ENSEMBLE).read_text())
            return "member", [
                *({"member": name, **m} for name, m in data["members"].items()),
                {"member": "ensemble", **data["ensemble"]},
            ]
        return "job", json.loads((self.path / SUMMARY).read_text())
