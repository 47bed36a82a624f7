"""`towerlab board DIR [--port P]`: a small web page on 127.0.0.1 listing every run under DIR (searches' trials
included) with its recipe, status (running, done, failed, interrupted), main metric, steps and time, refreshed
every few seconds while runs progress; each run links to its report, written on request (and again when the run
has logged since). The standard library's HTTP server: nothing to build, nothing fetched from a network.

    GET /              the page (it polls /runs.json)
    GET /runs.json     the runs, as the page shows them
    GET /report/PATH/  report.html of the run or search at PATH (relative to DIR); its links to trials' and
                       members' reports (PATH/trials/T/report.html) resolve to their own /report/ pages
    GET /service.json  with --serve CONFIG: what the service wrote to its outcome table (read only)

What it exposes, and to whom: it listens on 127.0.0.1 only and answers only requests whose Host header names that
address (or localhost) and its port, so a web page that rebinds its own host name to 127.0.0.1 gets 403, not your
runs. A GET writes nothing to disk: a missing or stale report is rendered into the board's own memory; an up to date
report.html is served only when it is a regular file inside DIR, and a run folder holding any link that leaves DIR
is refused whole.
"""

from __future__ import annotations

import html
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from towerlab.errors import ConfigError, TowerlabError
from towerlab.files import inside, json_text, link_leaving
from towerlab.runs import FILES, RunRecord, changed

MAX_PATH = 1024  # a request path longer than this names no run: 400
BOARD_CSP = (
    "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def report_csp() -> str:
    from towerlab.report import CSP

    return CSP


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>towerlab board: {root}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;font-size:.92em}}
td,th{{border:1px solid #ddd;padding:.3em .7em;text-align:left}}th{{background:#f4f4f4}}
.running{{color:#0a58ca}}.done{{color:#198754}}.failed{{color:#dc3545}}.interrupted{{color:#b8860b}}</style></head>
<body><h1>towerlab board</h1><p>{root} &middot; <span id="count"></span> &middot; refreshed every {every} s</p>
<table id="runs"><thead><tr><th>run</th><th>recipe</th><th>status</th><th>main metric</th><th>also</th><th>steps</th>
<th>time</th><th>report</th></tr></thead><tbody></tbody></table>
<div id="service"></div>
<script>
const num = v => typeof v === 'number' && isFinite(v);  // one run's odd value must not blank the table
const also = a => Object.entries(a || {{}}).filter(e => num(e[1])).map(e => esc(e[0] + ' ' + e[1].toFixed(4)))
  .join(', ');  // a recipe's figures beside its main metric (segdec: anomalib's)
const esc = s => String(s).replace(/[&<>"]/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}})[c]);
async function refresh() {{
  const runs = await (await fetch('runs.json')).json();
  document.getElementById('count').textContent = runs.length + ' runs';
  document.querySelector('#runs tbody').innerHTML = runs.map(r => `<tr data-run="${{esc(r.path)}}">
    <td>${{esc(r.path)}}</td><td>${{esc(r.recipe)}}</td><td class="${{esc(r.status)}}">${{esc(r.status)}}</td>
    <td>${{num(r.metric) ? esc(r.metric_name + ' ' + r.metric.toFixed(4)) : ''}}</td>
    <td>${{also(r.also)}}</td>
    <td>${{esc(r.steps)}}</td>
    <td>${{num(r.seconds) ? esc(r.seconds.toFixed(1) + ' s') : ''}}</td>
    <td><a href="report/${{r.path.split('/').map(encodeURIComponent).join('/')}}/">report</a></td></tr>`).join('');
}}
async function service() {{
  const dbs = await (await fetch('service.json')).json();
  if (!dbs.length) return;
  document.getElementById('service').innerHTML = '<h2>Service: the outcome table</h2><table id="outcomes"><tr>' +
    '<th>database</th><th>graded</th><th>errors</th><th>error rate</th><th>last grade</th>' +
    '<th>grades per minute (last hour)</th></tr>' +
    dbs.map(d => d.error ? `<tr><td>${{esc(d.database)}}</td><td colspan="5">${{esc(d.error)}}</td></tr>` :
      `<tr data-db="${{esc(d.database)}}"><td>${{esc(d.database)}}</td><td>${{d.graded}}</td><td>${{d.errors}}</td>` +
      `<td>${{(100 * d.error_rate).toFixed(2)}} %</td><td>${{esc(d.last || '')}}</td>` +
      `<td>${{bars(d.per_minute)}}</td></tr>`).join('') +
    '</table>';
}}
function bars(perMinute) {{
  const entries = Object.entries(perMinute), top = Math.max(1, ...entries.map(e => e[1]));
  return '<svg width="' + (6 * entries.length + 2) + '" height="32">' + entries.map(([m, n], i) =>
    `<rect x="${{1 + 6 * i}}" y="${{31 - 30 * n / top}}" width="5" height="${{30 * n / top}}" fill="#4a7ebb">` +
    `<title>${{m}}: ${{n}}</title></rect>`).join('') + '</svg>';
}}
function tick() {{ refresh(); service(); }}
tick(); setInterval(tick, {every_ms});
</script></body></html>"""


def find_runs(root: Path) -> list[dict]:
    """Every run directory under root (a folder with config.yaml and metrics or a status), as the board lists it."""
    rows = []
    config, status, metrics_file = FILES[:3]
    for found in sorted(root.rglob(config)):
        run = found.parent
        if not ((run / status).is_file() or (run / metrics_file).is_file()):
            continue
        if any(not inside(run / f, root) for f in FILES if (run / f).is_symlink()):
            continue  # a link out of the board's folder is never read
        try:
            rec = RunRecord.load(run)
        except TowerlabError:
            continue  # a folder that only looks like a run
        final, best = rec.final or {}, rec.best
        metrics = rec.metrics() if not final else []
        rows.append(
            {
                "path": str(run.relative_to(root)),
                "recipe": rec.recipe,
                "status": rec.status,
                "metric_name": str(best.get("metric", "")),
                "metric": _number(best.get("value")),
                "steps": _number(final.get("step", metrics[-1]["step"] if metrics else 0)),
                "seconds": _number(final.get("wall_s")),
                "also": {k: _number(final.get(k)) for k in _headline(rec.recipe)},
            }
        )
    return rows


def _headline(recipe: str) -> tuple[str, ...]:
    """The figures a recipe's users look for beside its main metric (segdec: anomalib's), from its Config: no torch."""
    from towerlab.recipes import config_class

    try:
        return getattr(config_class(recipe), "HEADLINE", ())
    except TowerlabError:  # a run of a recipe this version does not know
        return ()


def _number(v) -> float | int | None:
    """A number as a number; anything else a file may hold there (a string, a list) as None."""
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def service_summary(config: str) -> list[dict]:
    """Per database of a service config: rows graded, errors, error rate, the last grade, and grades per minute over
    the last hour, read from its outcome table (SELECT only; the board never writes to a database)."""
    from datetime import datetime, timedelta

    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from towerlab.serve.settings import load
    from towerlab.serve.store import Store

    settings = load(config)
    out = []
    for name, url in settings.databases.items():
        store = Store(url, settings.outcome_table, settings.state_table, settings.gap_table)
        t = store.outcome
        try:
            with store.engine.connect() as c:
                counts = dict(c.execute(select(t.c.status, func.count()).group_by(t.c.status)).all())
                last = c.execute(select(func.max(t.c.scored_at))).scalar()
                since = datetime.now(UTC) - timedelta(hours=1)
                times = c.execute(select(t.c.scored_at).where(t.c.scored_at >= since)).scalars().all()
        except SQLAlchemyError as e:
            out.append(
                {
                    "database": name,
                    "error": f"cannot read {settings.outcome_table}: "
                    f"{str(e.orig if hasattr(e, 'orig') else e).splitlines()[0]}",
                }
            )
            continue
        finally:
            store.engine.dispose()
        per_minute: dict[str, int] = {}
        for ts in times:
            key = ts.strftime("%H:%M")
            per_minute[key] = per_minute.get(key, 0) + 1
        graded = sum(counts.values())
        out.append(
            {
                "database": name,
                "graded": graded,
                "errors": counts.get("error", 0),
                "error_rate": counts.get("error", 0) / graded if graded else 0.0,
                "last": last.isoformat() if last else None,
                "per_minute": per_minute,
            }
        )
    return out


class _Handler(BaseHTTPRequestHandler):
    root: Path
    every: float
    service: str | None = None
    cache: dict  # run folder -> (the newest input's mtime, rendered page): the board's own, in memory

    def _host_ok(self) -> bool:
        """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
        port = self.server.server_address[1]
        host = (self.headers.get("Host") or "").strip().lower()
        return host in {f"{name}:{port}" for name in ("127.0.0.1", "localhost")} | (
            {"127.0.0.1", "localhost"} if port == 80 else set()
        )

    def log_message(self, *args) -> None:  # one line per request on stderr is noise here
        pass

    def _send(self, code: int, body: str, kind: str = "text/html; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # the board's page fetches its own JSON; a report fetches nothing (report.CSP)
        self.send_header("Content-Security-Policy", BOARD_CSP if self.path in ("/", "/index.html") else report_csp())
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        if not self._host_ok():
            return self._send(403, "this board answers only requests addressed to 127.0.0.1 or localhost")
        path = unquote(self.path.split("?", 1)[0])
        if "\x00" in path or len(path) > MAX_PATH:  # answered, never a dropped connection
            return self._send(400, "bad request path")
        if path in ("/", "/index.html"):
            return self._send(
                200, PAGE.format(root=html.escape(str(self.root)), every=self.every, every_ms=int(self.every * 1000))
            )
        if path == "/runs.json":
            return self._send(200, json_text(find_runs(self.root)), "application/json")
        if path == "/service.json":
            return self._send(200, json_text(service_summary(self.service) if self.service else []), "application/json")
        if path.startswith("/report/"):
            return self._report(path[len("/report/") :])
        return self._send(404, "not found")

    def _report(self, rel: str) -> None:
        from towerlab import report

        rel = rel.removesuffix("report.html").strip("/")
        target = self.root / rel
        try:
            found = bool(rel) and inside(target, self.root) and target.is_dir()
        except (OSError, ValueError):  # a name too long for the file system, a loop of links: not a run
            found = False
        if not found:
            return self._send(404, "no such run under the board's folder")
        leaving = link_leaving(target, self.root)
        if leaving is not None:
            return self._send(
                403,
                html.escape(
                    f"{leaving.relative_to(self.root)} is a link that leaves the board's "
                    f"folder; the board does not follow it"
                ),
            )
        page = target / "report.html"
        newest = changed(target)
        if page.is_file() and not page.is_symlink() and page.stat().st_mtime >= newest:
            return self._send(200, page.read_text())
        cached = self.cache.get(target)
        if cached is None or cached[0] < newest:
            try:
                cached = self.cache[target] = (newest, report.render(target))
            except TowerlabError as e:
                return self._send(500, html.escape(str(e)))
        return self._send(200, cached[1])


def make_server(
    root: str | Path, port: int = 8800, every: float = 3.0, service: str | None = None
) -> ThreadingHTTPServer:
    """The board's server on 127.0.0.1 only (run directories are not for the network); port 0 picks a free one."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; pass the folder your runs are in (e.g. runs)")
    if service:
        service_summary(service)  # a config that does not load is one line now, not a broken page later
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port; choose one in 1..65535 (0: any free one)")
    handler = type("Handler", (_Handler,), {"root": root, "every": every, "service": service, "cache": {}})
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port} ({e.strerror}); choose another --port") from None


def serve(root: str | Path, port: int = 8800, every: float = 3.0, service: str | None = None) -> None:
    """Serve the board until interrupted."""
    server = make_server(root, port, every, service)
    print(f"board: http://127.0.0.1:{server.server_address[1]}/  ({root}; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
