"""Models in an MLflow model registry, the way teams that serve models keep them (the `mlflow` extra):

    towerlab export RUN --register parts [--alias champion]    the ONNX model as a new version of `parts`
    serve model: models:/parts@champion                         the version the alias points at, followed as it moves
    serve model: models:/parts/3                                one version, fixed

A version is logged with MLflow's onnx flavour: the file `towerlab export` wrote (preprocessing inside the graph,
class names, input shape and operating threshold in its metadata, which the flavour's metadata repeats), the run's
final metrics and data hash as version tags, and a model card (README.md) as its description and an artifact. The
registry is MLFLOW_TRACKING_URI's (or --mlflow's); credentials come from the environment only, and no URL with a
password is printed. A version is downloaded once into ~/.cache/towerlab/registry/<name>/<version>/.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from towerlab import secrets
from towerlab.errors import ConfigError, TowerlabError
from towerlab.files import cache_dir

# a name starts with a letter, digit or _: it becomes a folder of the download cache, so "." and ".." must not be one
_NAME, _ALIAS = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}", r"[A-Za-z0-9_\-]{1,100}"
_URI = re.compile(rf"models:/(?P<name>{_NAME})(?:@(?P<alias>{_ALIAS})|/(?P<version>\d{{1,9}}))")


class RegistryError(TowerlabError):
    """The registry cannot be reached, or holds no such model, version or alias."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        m = _URI.fullmatch(uri)
        if not m:
            raise ConfigError(
                f"model: {uri!r} is not a registry model; write models:/NAME@ALIAS (follows the alias) or "
                f"models:/NAME/VERSION"
            )
        return cls(m["name"], m["alias"], m["version"])

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def is_registry(model: str) -> bool:
    return model.startswith("models:/")


def tracking_uri(given: str = "") -> str:
    uri = given or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise ConfigError(
            "a model registry needs MLflow's address: set MLFLOW_TRACKING_URI (credentials in "
            "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), or pass --mlflow URI"
        )
    return uri


def client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError:
        raise ConfigError("the model registry is MLflow's: pip install 'towerlab[mlflow]'") from None
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # one line now, not minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the service's stderr is JSON lines
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _failed(what: str, uri: str, e: Exception) -> RegistryError:
    first = secrets.mask((str(e).strip().splitlines() or [type(e).__name__])[0])[:300]
    return RegistryError(f"{what} at {secrets.mask_url(uri)} failed ({first})")


# -- register ----------------------------------------------------------------------------------------------------
def register(onnx_path: Path, name: str, run_dir: Path, meta: dict, uri: str, alias: str | None = None) -> dict:
    """Log onnx_path as a new version of `name` (MLflow's onnx flavour) with the run's metrics and data hash as tags
    and a model card; point `alias` at it when given. Returns {name, version, alias, uri}."""
    if not re.fullmatch(_NAME, name):
        raise ConfigError(f"--register {name!r}: a model name is letters, digits, '.', '_' and '-'")
    if alias is not None and not re.fullmatch(_ALIAS, alias):
        raise ConfigError(f"--alias {alias!r}: an alias is letters, digits, '_' and '-'")
    if secrets.has_password(uri):
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    try:
        import mlflow
        import mlflow.onnx
        import onnx
    except ModuleNotFoundError as e:
        raise ConfigError(f"--register needs MLflow and onnx: pip install 'towerlab[mlflow,onnx]' ({e.name})") from None
    c = client(uri)
    tags, card = _version_tags(run_dir), model_card(name, run_dir, meta)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        mlflow.set_experiment("towerlab-registry")
        with mlflow.start_run(run_name=f"register {run_dir.resolve().name}"):
            mlflow.set_tags({"towerlab.run": run_dir.resolve().name, **{f"towerlab.{k}": v for k, v in tags.items()}})
            # one self-contained file (an image model is megabytes, far below protobuf's 2 GB): what is served is
            # exactly the file towerlab export checked against PyTorch
            model = onnx.load(str(onnx_path))
            info = mlflow.onnx.log_model(model, name="model", metadata=meta, save_as_external_data=False)
            mlflow.log_text(card, "README.md")
        version = mlflow.register_model(info.model_uri, name).version
        c.update_model_version(name, version, description=card)
        for key, value in tags.items():
            c.set_model_version_tag(name, version, key, value)
        if alias:
            c.set_registered_model_alias(name, alias, version)
    except Exception as e:  # noqa: BLE001 -- the server, the network or the store: one line naming the registry
        raise _failed(f"registering {name}", uri, e) from None
    return {"name": name, "version": str(version), "alias": alias, "uri": secrets.mask_url(uri)}


def _version_tags(run_dir: Path) -> dict[str, str]:
    """The run's final numbers (validation, and test where scored) and its data hash, as registry tags."""
    from towerlab.runs import RunRecord

    rec = RunRecord.load(run_dir)
    final = rec.final or {}
    tags = {k: f"{v:.6g}" for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    test = (final.get("best") or {}).get("test") or {}
    tags.update({f"test_{k}": f"{v:.6g}" for k, v in test.items() if isinstance(v, (int, float))})
    data_hash = ((rec.env().get("provenance") or {}).get("data") or {}).get("sha256")
    if data_hash:
        tags["data_sha256"] = str(data_hash)
    tags["recipe"] = rec.recipe
    return dict(list(tags.items())[:100])  # the registry keeps a few dozen tags well; a run has fewer


def model_card(name: str, run_dir: Path, meta: dict) -> str:
    """A short README: what the model takes and gives, where it came from, how it decides."""
    classes = json.loads(meta.get("towerlab.classes", "[]"))
    threshold = meta.get("towerlab.threshold")
    lines = [
        f"# {name}",
        "",
        f"Exported by towerlab from run `{run_dir.resolve().name}` (recipe {meta.get('towerlab.recipe')}, step "
        f"{meta.get('towerlab.step')}, weights SHA-256 {meta.get('towerlab.weights_sha256', '')[:16]}...).",
        "",
        f"- input: uint8 images [N, C, H, W] = {meta.get('towerlab.input_shape')}; the preprocessing is in the graph",
        f"- output: probabilities [N, {len(classes)}] for the classes {', '.join(map(str, classes))}",
    ]
    if threshold:
        lines.append(
            f"- decision: class {classes[-1]} when its probability is at least {float(threshold):.4g} (the run's "
            f"operating threshold, chosen on its validation split)"
        )
    lines += ["", "Serve it with `model: models:/" + name + "@ALIAS` in a `towerlab serve` config."]
    return "\n".join(lines) + "\n"


# -- resolve and download ----------------------------------------------------------------------------------------
def current_version(ref: ModelRef, uri: str) -> str:
    """The version an alias points at now (or the fixed version, checked to exist)."""
    c = client(uri)
    try:
        if ref.alias:
            return str(c.get_model_version_by_alias(ref.name, ref.alias).version)
        return str(c.get_model_version(ref.name, ref.version).version)
    except Exception as e:  # noqa: BLE001
        raise _failed(f"looking up {ref}", uri, e) from None


def download(ref: ModelRef, version: str, uri: str) -> Path:
    """The version's ONNX file, downloaded once into the cache (a finished download is renamed into place)."""
    import shutil
    import tempfile

    folder = cache_dir() / "registry"
    target = folder / _host(uri) / ref.name / version
    if not (target / "model.onnx").is_file():
        import mlflow.artifacts

        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".download-"))
        try:
            got = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{ref.name}/{version}", dst_path=str(tmp), tracking_uri=uri
                )
            )
            onnx_files = sorted(got.rglob("*.onnx"))
            if not onnx_files:
                raise RegistryError(
                    f"models:/{ref.name}/{version} holds no .onnx file; register it with towerlab export"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(onnx_files[0].parent, target)  # the whole folder: any external data beside the graph
            if onnx_files[0].name != "model.onnx":
                os.replace(target / onnx_files[0].name, target / "model.onnx")
        except RegistryError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _failed(f"downloading models:/{ref.name}/{version}", uri, e) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target / "model.onnx"


def _host(uri: str) -> str:
    """A folder name for the registry: two servers' `parts` version 1 are different models."""
    import hashlib

    return hashlib.sha256(secrets.mask_url(uri).encode()).hexdigest()[:12]
