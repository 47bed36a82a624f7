"""PostgreSQL wake-ups: a row graded well before the next poll.

`towerlab serve CONFIG --install-trigger` creates, on request and never on its own, a statement trigger on each
source table with `notify: true` that calls pg_notify('towerlab_rows', '<schema>.<table>'). PostgreSQL delivers a
notification when the inserting transaction commits, which is the moment its rows become visible; a listener
thread holding `LISTEN towerlab_rows` then makes that source due at once. Polling stays as it is: a wake-up is a
hint, never what exactly-once rests on, and one lost while the server restarts costs at most one interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url

log = logging.getLogger("towerlab.serve")

CHANNEL = "towerlab_rows"
FUNCTION = "towerlab_notify_rows"


def trigger_name(table: str) -> str:
    return f"towerlab_notify_{table.rpartition('.')[2]}"[:63]


def qualified(table: str) -> str:
    """schema.table, with the default schema spelled out: what the trigger's payload says."""
    return table if "." in table else f"public.{table}"


def install(engine: Engine, tables: list[str]) -> list[str]:
    """Create (or replace) the notifying function and one trigger per table; returns what was created."""
    q = engine.dialect.identifier_preparer
    done = []
    with engine.begin() as conn:
        conn.execute(
            text(f"""
            CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
                RETURN NULL;
            END $$""")
        )
        for table in tables:  # names validated by settings.identifier: plain identifiers, quoted besides
            name = ".".join(q.quote(p) for p in table.split("."))
            trig = q.quote(trigger_name(table))
            conn.execute(text(f"DROP TRIGGER IF EXISTS {trig} ON {name}"))
            conn.execute(
                text(f"CREATE TRIGGER {trig} AFTER INSERT ON {name} FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
            )
            done.append(f"trigger {trigger_name(table)} on {table} -> NOTIFY {CHANNEL}")
    return done


def installed(conn: Connection, table: str) -> bool:
    return (
        conn.execute(
            text("SELECT count(*) FROM pg_trigger WHERE tgname = :n AND tgrelid = to_regclass(:t)"),
            {"n": trigger_name(table), "t": table},
        ).scalar()
        > 0
    )


class Listener(threading.Thread):
    """LISTEN on its own autocommit connection; on_notify(payload) for each notification. Reconnects with backoff
    after the server goes away (logged once per outage)."""

    def __init__(self, url: str, on_notify: Callable[[str], None], stop: threading.Event):
        super().__init__(daemon=True, name="towerlab-listen")
        # psycopg takes the libpq URL: the SQLAlchemy one without its +driver
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.on_notify, self.stop_event = on_notify, stop
        self.listening = threading.Event()  # set while LISTEN is in force (the tests wait for it)

    def run(self) -> None:
        import psycopg

        failures = 0
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    log.info(
                        "notify listener back" if failures else "listening", extra={"fields": {"channel": CHANNEL}}
                    )
                    failures = 0
                    while not self.stop_event.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self.on_notify(n.payload)
            except psycopg.Error as e:
                self.listening.clear()
                if failures == 0:
                    log.warning(
                        "notify listener lost the server; polling alone until it is back",
                        extra={
                            "fields": {"error": str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}
                        },
                    )
                failures += 1
                self.stop_event.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
