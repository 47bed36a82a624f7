"""A search folder (towerlab search): every file a search writes and every reader of them.

trials/<genome key>/   one trial folder per genome (trial.py)
search_state.json      what a re-run resumes from (the algorithm's own state, with its name)
generations.json, .csv best and mean fitness per generation or batch (none for a grid)
best.json, best.yaml   the winning genome with its fitness (and its test-split metrics under --val-fraction);
                       best.yaml is the winning config, ready for `towerlab train RECIPE --config best.yaml`
trials.csv             every trial so far: genes, fitness, status, seconds
tracking.json          the search's MLflow run, when tracking is on (its trials are its children)
study.journal          under --trials N without --storage: the Optuna study its workers share
.outputs.lock          under --trials N: the workers write the outputs above one at a time
fitness.png, tb/       the curve, TensorBoard's HPARAMS tab
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from towerlab import secrets
from towerlab.config import save_yaml
from towerlab.errors import ConfigError
from towerlab.files import atomic_write, json_text
from towerlab.runs.run import TRACKING, _json
from towerlab.runs.trial import Trial

STATE, GENERATIONS, BEST, TRIALS = "search_state.json", "generations.json", "best.json", "trials.csv"
JOURNAL, OUTPUTS_LOCK = "study.journal", ".outputs.lock"


class SearchFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def trial(self, key: str, recipe: str = "", overrides: dict | None = None) -> Trial:
        return Trial(key, recipe, overrides or {}, self.path / "trials" / key)

    @property
    def journal(self) -> Path:
        """The shared study's default storage (`--trials` without `--storage`)."""
        return self.path / JOURNAL

    @property
    def outputs_lock(self) -> Path:
        return self.path / OUTPUTS_LOCK

    def trial_keys(self) -> list[str]:
        return [p.name for p in sorted((self.path / "trials").glob("*"))]

    # -- the algorithm's state -------------------------------------------------------------------------------------
    def state(self, algo: str) -> dict | None:
        """search_state.json of an earlier run of this search, if any; one by another algorithm is refused."""
        path = self.path / STATE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        if state.get("algo", "ga") != algo:
            raise ConfigError(
                f"{path} holds a search by {state.get('algo', 'ga')}; continue it with --algo "
                f"{state.get('algo', 'ga')}, or choose another --out"
            )
        return state

    def algo(self) -> str | None:
        """The algorithm the search ran with (search_state.json), or None before it saved any state."""
        path = self.path / STATE
        try:
            return json.loads(path.read_text()).get("algo", "ga")
        except (OSError, ValueError):
            return None

    def save_progress(self, algo: str, state: dict, generations: list[dict], best: dict) -> None:
        """After each batch, each file whole (a kill leaves the old one or the new)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / STATE, json_text({"algo": algo, **state}).encode())
        atomic_write(self.path / GENERATIONS, json_text(generations, indent=1).encode())
        atomic_write(self.path / BEST, json_text(best, indent=1).encode())

    # -- the result ------------------------------------------------------------------------------------------------
    def best(self) -> dict | None:
        try:
            return json.loads((self.path / BEST).read_text())
        except (OSError, ValueError):
            return None

    def write_best(self, best: dict, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / BEST, json_text(best, indent=1).encode())
        save_yaml(config, self.path / "best.yaml")

    def generations(self) -> list[dict]:
        """[] for a grid search, which has none."""
        try:
            return json.loads((self.path / GENERATIONS).read_text())
        except (OSError, ValueError):
            return []

    def write_generations_csv(self, history: list[dict]) -> None:
        with open(self.path / "generations.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["generation", "best", "mean", "failed", "evaluated", "best_genome"])
            for h in history:
                w.writerow(
                    [
                        h["generation"],
                        h["best"],
                        h["mean"],
                        h["failed"],
                        h["evaluated"],
                        json.dumps(h["best_genome"], sort_keys=True),
                    ]
                )

    def trials(self) -> list[dict]:
        """trials.csv's rows (values as text), in the order the trials were asked for."""
        if not (self.path / TRIALS).is_file():
            return []
        with open(self.path / TRIALS, newline="") as f:
            return list(csv.DictReader(f))

    def write_trials(self, rows: list[dict]) -> None:
        names = list(dict.fromkeys(k for r in rows for k in r))
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / TRIALS, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=names)
            w.writeheader()
            w.writerows(rows)

    @property
    def trials_table(self) -> Path:
        return self.path / TRIALS

    def tracking(self) -> dict:
        """{uri, run_id} of the search's MLflow run (its trials are its children); {} without tracking."""
        return _json(self.path / TRACKING) or {}

    def write_tracking(self, uri: str, run_id: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / TRACKING, json.dumps({"uri": secrets.mask_url(uri), "run_id": run_id}).encode())

    def ranked(self, metric: str, maximize: bool) -> list[str]:
        """The finished trials' keys, best first."""
        done = [r for r in self.trials() if r.get("status") == "ok" and r.get(metric)]
        done.sort(key=lambda r: float(r[metric]), reverse=maximize)
        return [r["trial"] for r in done]


def is_search(path: Path) -> bool:
    return (path / GENERATIONS).is_file() or (path / BEST).is_file()  # GA, TPE, random; grid
