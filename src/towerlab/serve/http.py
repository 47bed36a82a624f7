"""--http PORT: /healthz (the loop is alive), /readyz (model loaded, every database answers), /metrics (Prometheus)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from towerlab.files import json_text


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.scored = Counter("towerlab_rows_scored", "rows graded by the model", ["source"], registry=r)
        self.failed = Counter("towerlab_rows_failed", "rows written with an error outcome", ["source"], registry=r)
        self.lag = Gauge("towerlab_source_lag_rows", "rows waiting to be graded", ["source"], registry=r)
        self.gaps = Gauge(
            "towerlab_source_gap_ids",
            "ids below the watermark still re-read for rows of open transactions",
            ["source"],
            registry=r,
        )
        self.latency = Histogram(
            "towerlab_batch_seconds",
            "time to read, grade and commit one batch",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.model = Gauge(
            "towerlab_model_info",
            "the checkpoint grading rows (1 for the one in service)",
            ["run", "step", "sha256"],
            registry=r,
        )
        self.reloads = Counter("towerlab_model_reloads", "newer checkpoints put in service", registry=r)
        self._shown = False

    def show_model(self, run: str, step: int, sha256: str) -> None:
        if self._shown:  # a reload: the old version's series goes, the new one's comes
            self.reloads.inc()
        self._shown = True
        self.model.clear()
        self.model.labels(run, str(step), sha256).set(1)


def serve_http(service, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (server.shutdown() stops it)."""
    stale_after = max(60.0, 3 * max(s.interval_s for s in service.settings.sources))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/metrics":
                return self._send(200, generate_latest(service.metrics.registry), CONTENT_TYPE_LATEST)
            if self.path == "/healthz":
                alive = time.monotonic() - service.heartbeat < stale_after
                return self._json(200 if alive else 503, {"alive": alive})
            if self.path == "/readyz":
                status = {}
                for name, store in service.stores.items():
                    try:
                        store.ping()
                        status[name] = "ok"
                    except Exception as e:  # any failure means not ready; the reason goes in the body
                        status[name] = f"unreachable: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                ready = all(v == "ok" for v in status.values())
                version = service.scorer.current
                return self._json(
                    200 if ready else 503,
                    {
                        "ready": ready,
                        "model": service.scorer.run_id,
                        "model_step": version.step,
                        "model_sha256": version.sha256,
                        "databases": status,
                    },
                )
            self._json(404, {"error": "not found; try /healthz, /readyz or /metrics"})

        def _json(self, code, body):
            self._send(code, json_text(body).encode(), "application/json")

        def _send(self, code, body: bytes, ctype: str):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # the service logs as JSON; keep http.server quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="towerlab-http").start()
    return server
