"""MLflow tracking, optional (the `mlflow` extra): on when MLFLOW_TRACKING_URI is set (MLflow's own convention) or
`--mlflow URI` is given. Rank 0 alone talks to the server:

  start   one MLflow run per towerlab run (a resumed run continues the same one: its id is kept in the run
          directory), the config as params, tags for recipe, world size, strategy, git commit; a trial of a search
          is a child run of the search's (TOWERLAB_MLFLOW_PARENT, set by the search for its trials)
  log     every log and evaluation line's numbers as metrics at their step, in one batch request
  finish  the final metrics; the report (and with --mlflow-log-model the exported ONNX model) as artifacts

A server that is down or goes away costs one warning line, and the metrics wait in memory (up to MAX_PENDING) for
the next attempt; the training run never fails or waits for it (each request: a few seconds at most, no retries).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from towerlab import secrets

MAX_PENDING = 50_000  # metric values kept while the server is away; older ones are dropped past this
PARENT_ENV = "TOWERLAB_MLFLOW_PARENT"


def uri_of(cfg) -> str:
    return getattr(cfg, "mlflow", "") or os.environ.get("MLFLOW_TRACKING_URI", "")


class Tracker:
    def __init__(self, uri: str, experiment: str):
        # fail fast instead of MLflow's minutes of retries: a tracking server never holds up training
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        if secrets.has_password(uri):  # MLflow prints "View run ... at <the URI>" with the password in it
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        from mlflow.tracking import MlflowClient

        self.client, self.experiment = MlflowClient(tracking_uri=uri), experiment
        self.uri = secrets.mask_url(uri)  # what is printed and written; the client alone holds the credentials
        self.run_id: str | None = None
        self.pending: list = []
        self.down = False

    # -- every call goes through here: an error is a warning, never the run's failure ----------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 -- any failure of the server or the client library
            if not self.down:
                first = secrets.mask((str(e).strip().splitlines() or [type(e).__name__])[0])[:200]
                print(
                    f"towerlab: warning: MLflow at {self.uri}: {what} failed ({first}); training goes on, the "
                    f"metrics wait and are sent when it answers again",
                    file=sys.stderr,
                    flush=True,
                )
            self.down = True
            return None
        if self.down:
            print(f"towerlab: MLflow at {self.uri} answers again", file=sys.stderr, flush=True)
        self.down = False
        return out

    def start(self, run_id: str | None, run_name: str, params: dict, tags: dict) -> str | None:
        """Continue run_id, or create the run (under the experiment, a child of the parent if there is one)."""
        from mlflow.entities import Param

        if run_id:
            self.run_id = run_id
            return run_id
        experiment = self._call("finding the experiment", self._experiment_id)
        if experiment is None:
            return None
        parent = os.environ.get(PARENT_ENV)
        run = self._call(
            "creating the run",
            self.client.create_run,
            experiment,
            run_name=run_name,
            tags={**tags, **({"mlflow.parentRunId": parent} if parent else {})},
        )
        if run is None:
            return None
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes 100 params per request
            self._call("logging the config", self.client.log_batch, self.run_id, params=items[i : i + 100])
        return self.run_id

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        return found.experiment_id if found else self.client.create_experiment(self.experiment)

    def log(self, step: int, values: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [
            Metric(k, float(v), now, step)
            for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        self.pending = self.pending[-MAX_PENDING:]
        if self.run_id is None:
            return
        while self.pending:
            batch = self.pending[:1000]  # MLflow's limit per request
            if self._call("logging metrics", self.client.log_batch, self.run_id, metrics=batch) is None and self.down:
                return
            self.pending = self.pending[len(batch) :]

    def finish(self, final: dict, status: str = "FINISHED") -> None:
        self.log(int(final.get("step", 0)), {f"final/{k}": v for k, v in final.items()})
        if self.run_id:
            self._call("ending the run", self.client.set_terminated, self.run_id, status)

    def artifact(self, path: Path) -> None:
        if self.run_id and Path(path).is_file():
            self._call(f"uploading {Path(path).name}", self.client.log_artifact, self.run_id, str(path))


def tags_for(recipe: str, cfg, world_size: int, git: dict | None) -> dict:
    return {
        "towerlab.recipe": recipe,
        "towerlab.world_size": str(world_size),
        "towerlab.strategy": getattr(cfg, "strategy", ""),
        "mlflow.source.git.commit": (git or {}).get("commit", ""),
        "towerlab.git_dirty": str((git or {}).get("dirty", "")),
    }
