"""What differs between the databases the service runs on, in one place: the store (store.py) asks its Dialect and
never compares dialect names itself. A database not named here gets the plain SQL of `Dialect`, which keeps the
exactly-once promise through the outcome table's unique constraint and the anti-join (see store.py).

To add a database: subclass Dialect with what it does better (a lock that skips held rows, an INSERT that ignores
duplicates), add it to DIALECTS under SQLAlchemy's dialect name, and run the serve tests against it.
"""

from __future__ import annotations

from sqlalchemy import and_, func, insert, text
from sqlalchemy.engine import Connection

_DDL_LOCK = 0x746F7765726C6162 >> 2  # any fixed bigint: "towerlab"; all towerlab services share it


class Dialect:
    name = "sql"
    notify = False  # LISTEN/NOTIFY wake-ups

    def lock_ddl(self, conn: Connection) -> None:
        """Serialise CREATE TABLE between services starting at once (elsewhere the loser checks again)."""

    def integer_keys(self, key):
        """The condition that a key column's value is an integer (NULL never is)."""
        return key.isnot(None)

    def claim_lock(self, query, table):
        """A SELECT of pending rows, locked for this transaction; rows other workers hold are skipped."""
        return query

    def insert_new(self, outcome):
        """INSERT of outcome rows that skips a row already there, where the database can say so in the INSERT."""
        return insert(outcome)  # the anti-join and the unique constraint guard duplicates

    def snapshot(self, conn: Connection) -> tuple[set[str], int, int] | None:
        """(open transactions but this one, snapshot xmin, xmax), or None where the database offers no such view."""
        return None


class PostgreSQL(Dialect):
    name, notify = "postgresql", True

    def lock_ddl(self, conn: Connection) -> None:
        # PostgreSQL's catalog races on a duplicate pg_type key: an advisory lock for the transaction
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK})

    def claim_lock(self, query, table):
        return query.with_for_update(skip_locked=True)

    def insert_new(self, outcome):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(outcome).on_conflict_do_nothing(index_elements=["source", "row_key"])

    def snapshot(self, conn: Connection) -> tuple[set[str], int, int]:
        # 64-bit transaction ids (epoch-extended): pg_current_snapshot from PostgreSQL 13, txid_current_snapshot before
        fn = "pg_current_snapshot" if (conn.dialect.server_version_info or (13,)) >= (13,) else "txid_current_snapshot"
        xmin, xmax, _ = conn.execute(text(f"SELECT {fn}()::text")).scalar().split(":")
        open_ = conn.execute(
            text(
                "SELECT virtualxid FROM pg_locks WHERE locktype = 'virtualxid' AND granted AND pid <> pg_backend_pid()"
            )
        ).scalars()
        return set(open_), int(xmin), int(xmax)


class SQLite(Dialect):
    name = "sqlite"

    def integer_keys(self, key):
        # SQLite stores text or 1.5 in an INTEGER column as is
        return and_(key.isnot(None), func.typeof(key) == "integer")

    def insert_new(self, outcome):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(outcome).on_conflict_do_nothing(index_elements=["source", "row_key"])


class MSSQL(Dialect):
    name = "mssql"

    def claim_lock(self, query, table):
        return query.with_hint(table, "WITH (UPDLOCK, READPAST, ROWLOCK)")


DIALECTS = {d.name: d for d in (PostgreSQL, SQLite, MSSQL)}


def of(name: str) -> Dialect:
    """The Dialect of SQLAlchemy's dialect name (`engine.dialect.name`)."""
    return DIALECTS.get(name, Dialect)()
