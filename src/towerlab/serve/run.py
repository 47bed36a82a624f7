"""Start the service from a config file: what `towerlab serve` and `python -m towerlab.serve` call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from towerlab.errors import ConfigError
from towerlab.serve import settings as settings_mod
from towerlab.serve.model import Scorer
from towerlab.serve.worker import Service, install_signal_handlers, setup_logging


def _onnx(settings) -> Scorer:
    from towerlab.serve.onnx_scorer import OnnxScorer

    return OnnxScorer(settings.model, settings.reload, settings.reload_check_s)


def _registry(settings) -> Scorer:
    from towerlab.serve.onnx_scorer import RegistryScorer

    return RegistryScorer(settings.model, settings.reload_check_s)


def _pytorch(settings) -> Scorer:
    try:
        from towerlab.serve.scorer import TorchScorer
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("torch", "towerlab"):
            raise
        raise ConfigError(
            f"model: {settings.model} is a run directory, which needs PyTorch, and this program has "
            f"ONNX Runtime only: export the run with `towerlab export {settings.model} --format onnx` "
            f"and set model: to the .onnx file"
        ) from None
    return TorchScorer(
        settings.model,
        settings.checkpoint,
        settings.reload,
        settings.reload_check_s,
        heatmaps=settings.image_dir is not None,
    )


@dataclass(frozen=True)
class Backend:
    name: str
    takes: Callable[[str], bool]  # whether it serves this `model:` (a path)
    build: Callable[..., Scorer]  # settings -> a Scorer


# the first that takes the model builds its scorer: a registry model (models:/...) and an exported .onnx file run on
# ONNX Runtime (no torch imported), anything else is a run directory, on PyTorch. A new engine is one more entry,
# before the catch-all.
BACKENDS = (
    Backend("registry", lambda model: model.startswith("models:/"), _registry),
    Backend("onnxruntime", lambda model: model.endswith(".onnx"), _onnx),
    Backend("pytorch", lambda model: True, _pytorch),
)


def scorer(settings) -> Scorer:
    from pathlib import Path

    if not settings.model.startswith("models:/") and not Path(settings.model).exists():  # a mistyped path
        raise ConfigError(
            f"model: {settings.model} does not exist; give a run directory `towerlab train` wrote or "
            f"an .onnx file from `towerlab export`"
        )
    return next(b for b in BACKENDS if b.takes(settings.model)).build(settings)


def install_triggers(config_path: str) -> list[str]:
    """The NOTIFY triggers of the sources with notify: true, created now, at the user's request."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError

    from towerlab.serve import notify

    settings = settings_mod.load(config_path)
    sources = [s for s in settings.sources if s.notify]
    if not sources:
        raise ConfigError(f"{config_path}: no source has notify: true; set it on the PostgreSQL sources to wake up on")
    done = []
    for name, url in settings.databases.items():
        tables = [s.table for s in sources if s.database == name]
        if not tables:
            continue
        engine = create_engine(url)
        if engine.dialect.name != "postgresql":
            raise ConfigError(f"database {name!r} is {engine.dialect.name}: notify triggers need PostgreSQL")
        try:
            done += notify.install(engine, tables)
        except DBAPIError as e:
            first = str(getattr(e, "orig", e)).strip().splitlines()[0]
            raise ConfigError(
                f"database {name!r}: cannot create the trigger ({first}); run --install-trigger as the table's owner"
            ) from None
    return done


def serve(
    config_path: str,
    once: bool = False,
    http_port: int | None = None,
    http_host: str = "127.0.0.1",
    install_trigger: bool = False,
    regrade: str | None = None,
    accept_errors: bool = False,
) -> None:
    if install_trigger:
        for line in install_triggers(config_path):
            print(f"created {line}")
        return
    setup_logging()
    settings = settings_mod.load(config_path)
    metrics = None
    if http_port is not None:
        from towerlab.serve.http import Metrics

        metrics = Metrics()
    service = Service(settings, scorer(settings), metrics, accept_errors=accept_errors, regrade=regrade)
    install_signal_handlers(service)
    server = None
    if http_port is not None:
        from towerlab.serve.http import serve_http

        server = serve_http(service, http_port, http_host)
    try:
        service.run(once=once)
    finally:
        if server:
            server.shutdown()
