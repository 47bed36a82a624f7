"""Models served from an MLflow model registry (issue 48), against a real `mlflow server` on 127.0.0.1:
`towerlab export RUN --register NAME --alias champion` logs the ONNX model with MLflow's onnx flavour (metadata,
the run's metrics and data hash as tags, a model card), and `serve` with `model: models:/NAME@champion` grades with
the version the alias points at, follows the alias when it moves (between batches), and names the version that
graded each outcome row."""

import os
import subprocess

import pytest

import dbcases
from helpers import free_port, run_cli, start_mlflow, stop_mlflow
from serve_helpers import run_serve, serve_cmd, stop_process, wait_for, write_config

pytest.importorskip("mlflow", reason="the mlflow extra: pip install 'towerlab[mlflow]'")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    port = free_port()
    proc = start_mlflow(tmp_path_factory.mktemp("mlflow"), port)
    yield f"http://127.0.0.1:{port}"
    stop_mlflow(proc)


@pytest.fixture
def env(registry, tmp_path):
    """The registry's address from the environment, as a service gets it; a cache of downloads of its own."""
    return {"MLFLOW_TRACKING_URI": registry, "XDG_CACHE_HOME": str(tmp_path / "cache")}


def _second_run(tmp_path):
    run = tmp_path / "digits-b"
    run_cli("train", "digits", "--max-steps", "40", "--seed", "3", "--eval-every-epochs", "0", "--out", str(run))
    return run


def test_a_registered_version_carries_metadata_tags_and_a_model_card(registry, env, tmp_path):
    import json

    from mlflow.tracking import MlflowClient

    run = tmp_path / "mnist"  # a run on a data folder: its data hash goes with the model
    run_cli("train", "mnist", "--max-steps", "3", "--eval-limit", "64", "--out", str(run), "--no-report")
    out = run_cli("export", str(run), "--register", "mnist-card", "--alias", "champion", env=env).stdout
    assert "registered: models:/mnist-card/1, alias champion" in out
    client = MlflowClient(registry)
    version = client.get_model_version_by_alias("mnist-card", "champion")
    assert (
        version.version == "1"
        and "# mnist-card" in version.description
        and "probabilities [N, 10]" in version.description
    )
    recorded = json.loads((run / "env.json").read_text())["provenance"]["data"]["sha256"]
    assert version.tags["recipe"] == "mnist" and version.tags["data_sha256"] == recorded
    assert float(version.tags["accuracy"]) == json.loads((run / "final_metrics.json").read_text())["accuracy"]
    logged = client.get_run(version.run_id)
    assert logged.data.tags["towerlab.run"] == "mnist"
    import mlflow

    mlflow.set_tracking_uri(registry)
    info = mlflow.models.get_model_info("models:/mnist-card/1")
    assert "onnx" in info.flavors and json.loads(info.metadata["towerlab.input_shape"]) == [1, 28, 28]


def test_serve_follows_the_alias_and_names_the_version_of_each_row(registry, env, model_run, digit_rows, tmp_path):
    from mlflow.tracking import MlflowClient

    run_cli(
        "export",
        str(model_run),
        "--out",
        str(tmp_path / "a.onnx"),
        "--register",
        "parts",
        "--alias",
        "champion",
        env=env,
    )
    run_cli("export", str(_second_run(tmp_path)), "--out", str(tmp_path / "b.onnx"), "--register", "parts", env=env)
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    db = dbcases.Db(url)
    cfg = write_config(tmp_path / "serve.yaml", url, "models:/parts@champion")
    cfg.write_text(cfg.read_text() + "reload_check_s: 0.3\n")
    db.insert(dbcases.rows(digit_rows, 1, 20))
    proc = subprocess.Popen(serve_cmd(cfg), env={**os.environ, **env}, stderr=open(tmp_path / "serve.log", "w"))
    inserted = 20
    try:
        wait_for(lambda: len(db.outcomes()) == 20, 120, "the first rows graded by version 1")
        MlflowClient(registry).set_registered_model_alias("parts", "champion", "2")  # promote version 2

        def a_batch_graded_by_version_2() -> bool:
            nonlocal inserted
            db.insert(dbcases.rows(digit_rows, inserted + 1, 5))
            inserted += 5
            wait_for(lambda: len(db.outcomes()) == inserted, 120, "a batch graded")
            return db.outcomes()[-1]["model_run"] == "models:/parts/2"

        wait_for(a_batch_graded_by_version_2, 120, "the alias followed to version 2")
    finally:
        assert stop_process(proc) == 0
    versions = [o["model_run"] for o in db.outcomes()]  # in key order
    assert set(versions[:20]) == {"models:/parts/1"}
    switch = versions.index("models:/parts/2")
    assert set(versions[switch:]) == {"models:/parts/2"}  # one swap, between batches, never back
    dbcases.assert_each_graded_once(db, range(1, inserted + 1))


def test_registry_mistakes_are_one_line(registry, env, model_run, tmp_path):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    dbcases.Db(url)
    cfg = write_config(tmp_path / "serve.yaml", url, "models:/no-such-model@champion")
    proc = run_serve(cfg, "--once", env=env)
    assert proc.returncode == 2 and "looking up models:/no-such-model@champion" in proc.stderr
    assert "Traceback" not in proc.stderr
    unset = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cfg = write_config(tmp_path / "serve.yaml", url, "models:/parts@champion")
    proc = subprocess.run(serve_cmd(cfg, "--once"), env=unset, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "set MLFLOW_TRACKING_URI" in proc.stderr
    bad = run_cli("export", str(model_run), "--format", "torchscript", "--register", "x", check=False, env=env)
    assert bad.returncode == 2 and "--register logs an ONNX model" in bad.stderr


@pytest.mark.parametrize("uri", ["models:/../1", "models:/./1", "models:/a/b@c", "models:/parts"])
def test_a_model_uri_that_is_no_registry_name_is_one_line(uri):
    """A name becomes a folder of the download cache: one of dots would lead out of it."""
    from towerlab.errors import ConfigError
    from towerlab.registry import ModelRef

    with pytest.raises(ConfigError, match="is not a registry model"):
        ModelRef.parse(uri)
