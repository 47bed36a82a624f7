"""The service loop: each source polled on its own schedule, rows graded in batches (grading.py), results committed
with the read; databases that go away retried with backoff; SIGTERM/SIGINT finish the batch in hand and exit. What
is checked before the first row is in startup.py."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DBAPIError, OperationalError

from towerlab.serve.grading import Grader
from towerlab.serve.model import Scorer
from towerlab.serve.payload import failure_kind
from towerlab.serve.settings import ServeSettings, Source
from towerlab.serve.startup import ServeError, first_line
from towerlab.serve.store import Store

__all__ = ["ServeError", "Service", "SourceState", "install_signal_handlers", "setup_logging"]
log = logging.getLogger("towerlab.serve")
MAX_BACKOFF_S = 30.0


@dataclass
class SourceState:
    src: Source
    store: Store
    due: float = 0.0
    first_seen: float | None = None  # when rows were first seen waiting for a fuller batch
    down_since: float | None = None  # database unreachable since
    failures: int = 0
    idle: bool = False  # the last poll found nothing to do
    unusable: int = 0  # rows whose key is not an integer, as last reported
    proven: bool = False  # a row of this source has graded ok (or --accept-errors): its config is not the problem


@dataclass
class Service:
    settings: ServeSettings
    scorer: Scorer  # built by a backend of serve/run.py: PyTorch (scorer.py) or ONNX Runtime (onnx_scorer.py)
    metrics: object | None = None  # http.Metrics, when --http is on
    accept_errors: bool = False  # grade on even when every row of a first batch fails the same way
    regrade: str | None = None  # "errors": grade the error outcomes' rows again at start
    stop: threading.Event = field(default_factory=threading.Event)
    heartbeat: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        s = self.settings
        self.stores = {
            name: Store(url, s.outcome_table, s.state_table, s.gap_table) for name, url in s.databases.items()
        }
        self.sources = [SourceState(src, self.stores[src.database]) for src in s.sources]
        self.wake = threading.Event()  # a notification, or stop: the loop's wait ends early
        self.listeners: list = []
        self.grader = Grader(self.scorer, s.image_dir)

    def start(self) -> None:
        """Check the config against the model, every database and source; create the tables (startup.py)."""
        from towerlab.serve.startup import start

        start(self)

    def show_model(self) -> None:
        if self.metrics:
            self.metrics.show_model(self.scorer.run_id, self.scorer.current.step, self.scorer.sha256)

    # -- one poll of one source ---------------------------------------------------------------------
    def poll(self, st: SourceState, drain: bool) -> int:
        """Grade at most one batch of st's source; returns the number of rows written (0: nothing to do yet)."""
        src, started, store = st.src, time.monotonic(), st.store
        with store.engine.begin() as conn:
            if src.mode == "claim":
                rows, closable = store.claim(conn, src, src.batch_size), []
            else:
                gaps = store.gaps(conn, src)
                closable = store.closable(conn, src, gaps)  # decided before the read that is their last
                rows = store.pending(conn, src, src.batch_size, gaps)
            if self.metrics:
                self.metrics.lag.labels(src.name).set(store.lag(conn, src))
                if src.mode != "claim":
                    self.metrics.gaps.labels(src.name).set(store.waiting_in_gaps(conn, src))
            if len(rows) == src.batch_size:  # a full batch read only the gaps below its last key to the end
                last = int(rows[-1][src.key_column])
                closable = [g for g in closable if g.hi < last]
            if not rows:
                self._close_gaps(conn, st, closable)
                if not st.idle:  # the first idle poll after start or after work: one COUNT, not one per poll
                    self._report_unusable(conn, st)
                st.first_seen = None
                return 0
            if len(rows) < src.batch_size and not drain and src.max_wait_s > 0:
                st.first_seen = st.first_seen or started
                if started - st.first_seen < src.max_wait_s:
                    return 0  # the batch closes on size or on max_wait_s, whichever comes first
            outcomes = self.grade(src, rows)
            self.check_first_batch(st, outcomes)  # raises before anything is written
            _test_hold_before_commit()
            store.write(conn, src, outcomes)
            self._close_gaps(conn, st, closable)
        st.first_seen = None
        self.observe(src, outcomes, time.monotonic() - started)
        return len(outcomes)

    def check_first_batch(self, st: SourceState, outcomes: list[dict]) -> None:
        """Until a source grades its first row ok, a batch whose every row (two or more) failed the same way is a
        wrong config (a payload kind, a column, a size), not bad rows: stop before it is written, so that no row is
        used up; the batch is graded again once the config is fixed (or started with --accept-errors)."""
        if st.proven or any(o["status"] == "ok" for o in outcomes):
            st.proven = True
            return
        if len(outcomes) >= 2 and len({failure_kind(o["error"]) for o in outcomes}) == 1:
            raise ServeError(
                f"source {st.src.name}: all {len(outcomes)} rows of its first batch failed the same way "
                f"({outcomes[0]['error']}); nothing was written. Fix the config and start again; if these "
                f"rows really are bad, start with --accept-errors"
            )

    def _report_unusable(self, conn, st: SourceState) -> None:
        """Rows whose key is NULL, text or a fraction can never be graded exactly once (the outcome table and the
        watermark are keyed by integer ids): they are skipped and said, once each time their count changes."""
        n, example = st.store.unusable_keys(conn, st.src)
        if n != st.unusable:
            st.unusable = n
            if n:
                log.warning(
                    "rows whose key is not an integer are skipped; give them integer ids",
                    extra={
                        "fields": {
                            "source": st.src.name,
                            "key_column": st.src.key_column,
                            "rows": n,
                            "example": repr(example),
                        }
                    },
                )

    def _close_gaps(self, conn, st: SourceState, closable) -> None:
        for gap, missing in st.store.close_gaps(conn, st.src, closable):
            if missing and gap.xmax is None:  # given up on time, not proven empty: say which ids
                log.warning(
                    "gap never filled; these ids will not be graded",
                    extra={
                        "fields": {
                            "source": st.src.name,
                            "ids": f"{gap.lo}-{gap.hi}",
                            "ungraded": missing,
                            "waited_s": st.src.gap_wait_s,
                        }
                    },
                )

    def grade(self, src: Source, rows: list[dict]) -> list[dict]:
        """One model version per batch: a newer checkpoint takes over here, between batches (grading.py)."""
        if self.scorer.swap():
            self.show_model()
        return self.grader.grade(src, rows)

    def observe(self, src: Source, outcomes: list[dict], seconds: float) -> None:
        errors = sum(o["status"] == "error" for o in outcomes)
        log.info(
            "graded",
            extra={
                "fields": {
                    "source": src.name,
                    "rows": len(outcomes),
                    "errors": errors,
                    "keys": [outcomes[0]["row_key"], outcomes[-1]["row_key"]],
                    "seconds": round(seconds, 4),
                }
            },
        )
        if self.metrics:
            self.metrics.scored.labels(src.name).inc(len(outcomes) - errors)
            self.metrics.failed.labels(src.name).inc(errors)
            self.metrics.latency.labels(src.name).observe(seconds)

    # -- the loop -----------------------------------------------------------------------------------
    def step(self, st: SourceState, drain: bool) -> None:
        """Poll one due source, handling an unreachable database: logged once per outage, retried with backoff."""
        try:
            n = self.poll(st, drain)
        except (OperationalError, DBAPIError) as e:
            if not _is_connection_error(e):  # the database answered: a table or column changed under the service
                raise ServeError(
                    f"source {st.src.name} (database {st.src.database!r}): {first_line(e)}; fix the "
                    f"table or the config, then start again"
                ) from None
            if st.down_since is None:
                st.down_since = time.monotonic()
                log.warning(
                    "database unreachable; retrying with backoff",
                    extra={"fields": {"source": st.src.name, "database": st.src.database, "error": first_line(e)}},
                )
            st.failures += 1
            st.due = time.monotonic() + min(MAX_BACKOFF_S, 0.5 * 2 ** min(st.failures, 10))
            st.idle = False
            return
        if st.down_since is not None:
            log.info(
                "database reachable again",
                extra={
                    "fields": {
                        "source": st.src.name,
                        "database": st.src.database,
                        "outage_s": round(time.monotonic() - st.down_since, 1),
                    }
                },
            )
            st.down_since, st.failures = None, 0
        st.idle = n == 0
        # a full batch means more may be waiting: poll again at once; otherwise wait for the interval
        st.due = time.monotonic() + (0.0 if drain or n >= st.src.batch_size else st.src.interval_s)

    def run(self, once: bool = False) -> None:
        """Poll until stopped; with once=True, until every source has nothing left to grade."""
        self.start()
        if self.regrade == "errors":
            from towerlab.serve.regrade import regrade_errors

            regrade_errors(self)
        while not self.stop.is_set():
            now = time.monotonic()
            self.heartbeat = now
            for st in self.sources:
                if st.due <= now and not self.stop.is_set():
                    self.step(st, drain=once)
                    if once and st.down_since is not None:
                        raise ServeError(
                            f"database {st.src.database!r} went away during --once; run again when it is back"
                        )
            if once and all(st.idle for st in self.sources):
                break
            if not once:
                self.wake.wait(max(0.0, min(st.due for st in self.sources) - time.monotonic()))
                self.wake.clear()
        log.info("stopped", extra={"fields": {}})


def install_signal_handlers(service: Service) -> None:
    """SIGTERM/SIGINT: stop claiming rows and finish the batch in hand; past the timeout, exit without committing
    (the batch is graded again on the next start, so nothing is lost or doubled). A second signal exits at once."""

    def handler(signum, frame):
        if service.stop.is_set():
            os._exit(128 + signum)
        log.info(
            "stopping",
            extra={"fields": {"signal": signal.Signals(signum).name, "timeout_s": service.settings.shutdown_timeout_s}},
        )
        service.stop.set()
        service.wake.set()
        timer = threading.Timer(service.settings.shutdown_timeout_s, lambda: os._exit(128 + signum))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# SQLite reports a missing table or column as an OperationalError, as it does a locked or vanished file
_NOT_AN_OUTAGE = ("no such table", "no such column", "has no column")


def _is_connection_error(e: DBAPIError) -> bool:
    if any(m in first_line(e).lower() for m in _NOT_AN_OUTAGE):
        return False
    return isinstance(e, OperationalError) or e.connection_invalidated


def _test_hold_before_commit() -> None:
    """Fault-injection hook for the crash tests: with TOWERLAB_SERVE_HOLD_BEFORE_COMMIT=FILE set, the worker
    writes FILE once a batch is graded and then waits before committing, so a test can SIGKILL it right there."""
    marker = os.environ.get("TOWERLAB_SERVE_HOLD_BEFORE_COMMIT")
    if marker and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        time.sleep(60)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger (when not the service's own), message, the record's fields and
    any exception as one escaped string, so a log collector never meets a line it cannot parse."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.name != log.name:  # a library's line (psycopg, sqlalchemy, py.warnings): say whose
            entry["logger"] = record.name
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging() -> None:
    """The service's lines and every library's (warnings included) as JSON on stderr: psycopg's warning after a
    server restart used to be the one line a collector could not parse."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # libraries: warnings and worse
    logging.captureWarnings(True)  # warnings.warn -> the py.warnings logger -> the JSON handler
    log.handlers[:] = []
    log.setLevel(logging.INFO)
    log.propagate = True
