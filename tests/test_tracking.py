"""MLflow tracking against a real `mlflow server` on 127.0.0.1 (SQLite backend store, local artifact root), read back
with MlflowClient: a run's config, metrics, tags and report; a search's trials as child runs; a server that goes
away mid-run costs a warning, never the run."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import free_port as _port
from helpers import run_cli
from helpers import start_mlflow as _start
from helpers import stop_mlflow as _stop

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra: pip install 'towerlab[mlflow]'")


SERVERS: dict[str, subprocess.Popen] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _port()
    url = f"http://127.0.0.1:{port}"
    SERVERS[url] = _start(tmp_path_factory.mktemp("mlflow"), port)
    yield url
    if SERVERS[url].poll() is None:
        _stop(SERVERS[url])


def test_a_run_logs_config_metrics_tags_and_its_report(server, tmp_path):
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    run_cli(
        "train",
        "digits",
        "--max-steps",
        "20",
        "--log-every",
        "5",
        "--eval-every-steps",
        "10",
        "--out",
        str(run),
        "--mlflow",
        server,
        "--mlflow-experiment",
        "towerlab-test",
        env={"TOWERLAB_REPORT": "1"},
    )
    client = MlflowClient(server)
    found = client.search_runs([client.get_experiment_by_name("towerlab-test").experiment_id])
    assert len(found) == 1
    r = found[0]
    assert r.data.params["lr"] == "0.001" and r.data.tags["towerlab.recipe"] == "digits"
    assert r.data.tags["towerlab.world_size"] == "1" and r.info.status == "FINISHED"
    losses = client.get_metric_history(r.info.run_id, "train/loss")
    assert [m.step for m in losses] == [5, 10, 15, 20]
    assert len(client.get_metric_history(r.info.run_id, "val/accuracy")) == 2
    assert "final/accuracy" in r.data.metrics and "sys/rss_mb" in r.data.metrics
    assert "report.html" in [a.path for a in client.list_artifacts(r.info.run_id)]


def test_search_trials_are_child_runs(server, tmp_path):
    from mlflow.tracking import MlflowClient

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"units": {"choices": [16, 32]}}))
    run_cli(
        "search",
        "mlp",
        "--space",
        str(space),
        "--algo",
        "grid",
        "--out",
        str(tmp_path / "s"),
        "--no-report",
        "--set",
        "dataset=digits",
        "--set",
        "max_steps=5",
        "--set",
        f"mlflow={server}",
        "--set",
        "mlflow_experiment=towerlab-search",
    )
    client = MlflowClient(server)
    runs = client.search_runs([client.get_experiment_by_name("towerlab-search").experiment_id])
    parents = [r for r in runs if r.data.tags.get("towerlab.kind") == "search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2 and "final/best_accuracy" in parents[0].data.metrics


def _files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_no_password_reaches_a_file_the_output_or_mlflow(server, tmp_path):
    """A password inside MLFLOW_TRACKING_URI and a TOWERLAB_* secret in the environment: the run trains and logs to
    MLflow, and neither appears in its folder (config, env.json, tracking.json, report.html), its output, or MLflow's
    params; --mlflow with a password in it is refused in one line (issue 43)."""
    from mlflow.tracking import MlflowClient

    secret = "hunter2-xyzzy"
    with_password = server.replace("http://", f"http://grader:{secret}@")
    run = tmp_path / "run"
    proc = run_cli(
        "train",
        "digits",
        "--max-steps",
        "10",
        "--eval-every-steps",
        "10",
        "--out",
        str(run),
        "--mlflow-experiment",
        "towerlab-secrets",
        env={"MLFLOW_TRACKING_URI": with_password, "TOWERLAB_DB_PASSWORD": secret, "TOWERLAB_REPORT": "1"},
    )
    assert secret not in proc.stdout + proc.stderr
    assert _files_holding(run, secret) == []
    assert (run / "report.html").is_file() and "127.0.0.1" in (run / "tracking.json").read_text()
    client = MlflowClient(server)
    r = client.search_runs([client.get_experiment_by_name("towerlab-secrets").experiment_id])[0]
    assert r.info.status == "FINISHED" and not [k for k, v in r.data.params.items() if secret in v]
    refused = run_cli(
        "train",
        "digits",
        "--max-steps",
        "2",
        "--out",
        str(tmp_path / "refused"),
        "--mlflow",
        with_password,
        check=False,
    )
    assert refused.returncode == 2 and secret not in refused.stderr and "MLFLOW_TRACKING_PASSWORD" in refused.stderr
    assert not (tmp_path / "refused").exists()


def test_a_server_that_goes_away_costs_a_warning_not_the_run(server, tmp_path):
    """Last in this module: it stops the module's server."""
    run = tmp_path / "run"
    train = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "towerlab",
            "train",
            "digits",
            "--max-steps",
            "200",
            "--log-every",
            "5",
            "--out",
            str(run),
            "--no-report",
            "--mlflow",
            server,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.1)
    _stop(SERVERS[server])  # the server dies while the run logs to it
    out, err = train.communicate(timeout=300)
    assert train.returncode == 0, err[-2000:]
    assert err.count("towerlab: warning: MLflow at") == 1 and "Traceback" not in err
