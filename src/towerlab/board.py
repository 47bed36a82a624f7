"""`towerlab board DIR [--port P]`: a small web page on 127.0.0.1 listing every run under DIR (searches' trials
included) with its recipe, status (running, done, failed, interrupted), main metric, steps and time, refreshed
every few seconds while runs progress; each run links to its report, written on request (and again when the run
has logged since). The standard library's HTTP server: nothing to build, nothing fetched from a network.

    GET /              the page (it polls /runs.json)
    GET /runs.json     the runs, as the page shows them
    GET /report/PATH   report.html of the run or search at PATH (relative to DIR)
"""

from __future__ import annotations

import html
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from towerlab.errors import ConfigError, TowerlabError
from towerlab.runs import RunRecord

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>towerlab board: {root}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;font-size:.92em}}
td,th{{border:1px solid #ddd;padding:.3em .7em;text-align:left}}th{{background:#f4f4f4}}
.running{{color:#0a58ca}}.done{{color:#198754}}.failed{{color:#dc3545}}.interrupted{{color:#b8860b}}</style></head>
<body><h1>towerlab board</h1><p>{root} &middot; <span id="count"></span> &middot; refreshed every {every} s</p>
<table id="runs"><thead><tr><th>run</th><th>recipe</th><th>status</th><th>main metric</th><th>steps</th>
<th>time</th><th>report</th></tr></thead><tbody></tbody></table>
<script>
const esc = s => String(s).replace(/[&<>"]/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}})[c]);
async function refresh() {{
  const runs = await (await fetch('runs.json')).json();
  document.getElementById('count').textContent = runs.length + ' runs';
  document.querySelector('#runs tbody').innerHTML = runs.map(r => `<tr data-run="${{esc(r.path)}}">
    <td>${{esc(r.path)}}</td><td>${{esc(r.recipe)}}</td><td class="${{esc(r.status)}}">${{esc(r.status)}}</td>
    <td>${{r.metric === null ? '' : esc(r.metric_name + ' ' + r.metric.toFixed(4))}}</td><td>${{esc(r.steps)}}</td>
    <td>${{r.seconds === null ? '' : esc(r.seconds.toFixed(1) + ' s')}}</td>
    <td><a href="report/${{encodeURI(r.path)}}">report</a></td></tr>`).join('');
}}
refresh(); setInterval(refresh, {every_ms});
</script></body></html>"""


def find_runs(root: Path) -> list[dict]:
    """Every run directory under root (a folder with config.yaml and metrics or a status), as the board lists it."""
    rows = []
    for config in sorted(root.rglob("config.yaml")):
        run = config.parent
        if not ((run / "status.json").is_file() or (run / "metrics.jsonl").is_file()):
            continue
        try:
            rec = RunRecord.load(run)
        except TowerlabError:
            continue  # a folder that only looks like a run
        final = rec.final or {}
        best = final.get("best") or {}
        metrics = rec.metrics() if not final else []
        rows.append({"path": str(run.relative_to(root)), "recipe": rec.recipe, "status": rec.status,
                     "metric_name": best.get("metric", ""), "metric": best.get("value"),
                     "steps": final.get("step", metrics[-1]["step"] if metrics else 0),
                     "seconds": final.get("wall_s")})
    return rows


class _Handler(BaseHTTPRequestHandler):
    root: Path
    every: float

    def log_message(self, *args) -> None:  # one line per request on stderr is noise here
        pass

    def _send(self, code: int, body: str, kind: str = "text/html; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        path = unquote(self.path.split("?", 1)[0])
        if path in ("/", "/index.html"):
            return self._send(200, PAGE.format(root=html.escape(str(self.root)), every=self.every,
                                               every_ms=int(self.every * 1000)))
        if path == "/runs.json":
            return self._send(200, json.dumps(find_runs(self.root)), "application/json")
        if path.startswith("/report/"):
            return self._report(path[len("/report/"):])
        return self._send(404, "not found")

    def _report(self, rel: str) -> None:
        from towerlab import report

        target = (self.root / rel).resolve()
        if not target.is_relative_to(self.root.resolve()) or not target.is_dir():
            return self._send(404, "no such run under the board's folder")
        page = target / "report.html"
        newest = max((f.stat().st_mtime for f in (target / "metrics.jsonl", target / "generations.json",
                                                  target / "final_metrics.json") if f.is_file()), default=0)
        try:
            if not page.is_file() or page.stat().st_mtime < newest:
                report.write(target)
        except TowerlabError as e:
            return self._send(500, html.escape(str(e)))
        return self._send(200, page.read_text())


def make_server(root: str | Path, port: int = 8800, every: float = 3.0) -> ThreadingHTTPServer:
    """The board's server on 127.0.0.1 only (run directories are not for the network); port 0 picks a free one."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; pass the folder your runs are in (e.g. runs)")
    handler = type("Handler", (_Handler,), {"root": root, "every": every})
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port} ({e.strerror}); choose another --port") from None


def serve(root: str | Path, port: int = 8800, every: float = 3.0) -> None:
    """Serve the board until interrupted."""
    server = make_server(root, port, every)
    print(f"board: http://127.0.0.1:{server.server_address[1]}/  ({root}; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
