"""Start the service from a config file: what `towerlab serve` and `python -m towerlab.serve` call."""

from __future__ import annotations

from towerlab.serve import settings as settings_mod
from towerlab.serve.worker import Service, install_signal_handlers, setup_logging


def scorer(settings):
    """An exported .onnx file runs on ONNX Runtime (no torch imported); a run directory on PyTorch."""
    if settings.model.endswith(".onnx"):
        from towerlab.serve.onnx_scorer import OnnxScorer

        return OnnxScorer(settings.model, settings.reload, settings.reload_check_s)
    from towerlab.serve.scorer import Scorer

    return Scorer(settings.model, settings.checkpoint, settings.reload, settings.reload_check_s)


def serve(config_path: str, once: bool = False, http_port: int | None = None, http_host: str = "127.0.0.1") -> None:
    setup_logging()
    settings = settings_mod.load(config_path)
    metrics = None
    if http_port is not None:
        from towerlab.serve.http import Metrics
        metrics = Metrics()
    service = Service(settings, scorer(settings), metrics)
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
