"""The service's start: the config checked against the model, every database and every source before a row is
read (one clear line and exit 2 for a mistake, never "unreachable; retrying" forever), the tables created, what
produced the service recorded, and a LISTEN thread per PostgreSQL database with notify sources."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from towerlab.errors import ConfigError, TowerlabError
from towerlab.files import atomic_write
from towerlab.runs.run import ENV  # the same name as a run's record, for the service's
from towerlab.serve.payload import size_mismatch
from towerlab.serve.store import redact

if TYPE_CHECKING:
    from towerlab.serve.worker import Service, SourceState

log = logging.getLogger("towerlab.serve")


class ServeError(TowerlabError):
    """The service cannot start (an unreachable database, a model that will not load)."""


def start(svc: Service) -> None:
    """Check the config against the model, every database and source; create the outcome/state tables; fail fast
    with one clear line."""
    check_model(svc)  # before any database is touched: the model alone says it
    open_databases(svc)
    check_sources(svc)
    produced = record_start(svc)
    log.info(
        "started",
        extra={
            "fields": {
                "model_run": svc.scorer.run_id,
                "model_sha256": svc.scorer.sha256,
                "model_step": svc.scorer.current.step,
                "sources": [s.src.name for s in svc.sources],
                "git": produced["git"],
                "command": produced["command"],
            }
        },
    )
    svc.show_model()
    listen(svc)


def check_model(svc: Service) -> None:
    for st in svc.sources:
        why = size_mismatch(st.src.payload, svc.scorer.input_shape)
        if why:
            raise ConfigError(f"source {st.src.name}: {why}")


def open_databases(svc: Service) -> None:
    """Each database reachable and its outcome, state and gap tables created."""
    for name, store in svc.stores.items():
        where = f"database {name!r} at {redact(str(store.engine.url))}"
        try:
            store.ping()
        except DBAPIError as e:
            if store.dialect.name == "sqlite":  # a file, not a server: its folder is missing or not writable
                raise ServeError(
                    f"{where}: the SQLite file cannot be opened ({first_line(e)}); check that its "
                    f"folder exists and is writable, and the path in the URL"
                ) from None
            raise ServeError(
                f"{where} is unreachable ({first_line(e)}); check that the server runs and the URL "
                f"and credentials are right"
            ) from None
        try:
            store.create_tables()
        except DBAPIError as e:
            s = svc.settings
            raise ServeError(
                f"{where}: cannot create the tables {s.outcome_table}, {s.state_table} and "
                f"{s.gap_table} ({first_line(e)}); grant CREATE or create them first"
            ) from None


def check_sources(svc: Service) -> None:
    """Each source's table and columns as the config says (store.check_source), and its state its own."""
    for st in svc.sources:
        with st.store.engine.connect() as conn:
            why = st.store.check_source(conn, st.src)
        if why:  # a configuration mistake: one line and exit code 2, not "unreachable; retrying" forever
            raise ConfigError(f"source {st.src.name} (database {st.src.database!r}): {why}")
        check_state(svc, st)


def check_state(svc: Service, st: SourceState) -> None:
    """The state table must belong to this outcome table; and whether the source has graded a row ok before."""
    s = svc.settings
    with st.store.engine.connect() as conn:
        orphan = st.store.orphaned_watermark(conn, st.src) if st.src.mode == "watermark" else None
        st.proven = svc.accept_errors or st.store.has_graded_ok(conn, st.src)
    if orphan is not None:
        raise ConfigError(
            f"source {st.src.name}: state table {s.state_table} says its rows up to id {orphan} are "
            f"graded, but outcome table {s.outcome_table} holds no outcome of it (a new outcome_table "
            f"beside the old state_table?): give it a state_table and gap_table of its own, or delete "
            f"the source's row from {s.state_table} and {s.gap_table} to grade the whole table into "
            f"{s.outcome_table}"
        )


def record_start(svc: Service) -> dict:
    """What produced this service (provenance.py), into image_dir/env.json when there is an image_dir."""
    from towerlab import provenance

    produced = provenance.record()
    if svc.settings.image_dir:
        Path(svc.settings.image_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(svc.settings.image_dir) / ENV, json.dumps(produced, indent=2), sync=False)
    return produced


def listen(svc: Service) -> None:
    """A LISTEN thread per PostgreSQL database with `notify: true` sources (notify.py); a source whose trigger
    is missing is said once, and polls."""
    from towerlab.serve import notify

    for name, store in svc.stores.items():
        wanted = [st for st in svc.sources if st.src.notify and st.src.database == name]
        if not wanted:
            continue
        if not store.dialect.notify:
            raise ServeError(
                f"source {wanted[0].src.name}: notify: true needs PostgreSQL; database {name!r} is "
                f"{store.dialect.name}: remove notify"
            )
        with store.engine.connect() as conn:
            for st in wanted:
                if not notify.installed(conn, st.src.table):
                    log.warning(
                        "no notify trigger on the table; polling only. Create it with `towerlab serve "
                        "CONFIG --install-trigger`",
                        extra={"fields": {"source": st.src.name, "table": st.src.table}},
                    )
        tables = {notify.qualified(st.src.table): st for st in wanted}

        def woken(payload: str, tables=tables) -> None:
            st = tables.get(payload)
            if st is not None:
                st.due = 0.0
                svc.wake.set()

        listener = notify.Listener(str(store.engine.url.render_as_string(hide_password=False)), woken, svc.stop)
        listener.start()
        svc.listeners.append(listener)


def first_line(e: Exception) -> str:
    msg = str(getattr(e, "orig", e) or e).strip().splitlines()
    return msg[0] if msg else e.__class__.__name__
