"""Every SQL statement of the service, for one database.

Exactly once, without trusting the order in which transactions commit:
- watermark mode reads rows with key > watermark - lag that have no outcome yet (an anti-join on the outcome
  table's unique (source, row_key)), so a row whose transaction committed after larger keys were graded is still
  found while it is within `lag` ids of the watermark;
- the outcome rows and the advanced watermark are written in the same transaction as the read, and the insert
  skips (source, row_key) pairs already present: a crash before commit repeats the work, never its effect;
- claim mode (when the service may write to the source table) locks pending rows with FOR UPDATE SKIP LOCKED
  (PostgreSQL) or UPDLOCK, READPAST, ROWLOCK (SQL Server), so several workers can share one table.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Column, DateTime, Float, Integer, MetaData, String, Table, Text, UniqueConstraint,
                        and_, column, create_engine, exists, func, insert, select, table, text, update)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from towerlab.serve.settings import Source


_DDL_LOCK = 0x746F7765726C6162 >> 2  # any fixed bigint: "towerlab"; all towerlab services share it

# dialects whose INSERT has ON CONFLICT DO NOTHING
_UPSERT_INSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def _split(name: str) -> tuple[str | None, str]:
    schema, _, tbl = name.rpartition(".")
    return schema or None, tbl


class Store:
    def __init__(self, url: str, outcome_table: str, state_table: str):
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name
        md = MetaData()
        schema, name = _split(outcome_table)
        self.outcome = Table(
            name, md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("source", String(128), nullable=False),
            Column("row_key", BigInteger, nullable=False),
            Column("status", String(16), nullable=False),  # ok | error
            Column("class_index", Integer), Column("class_name", String(64)), Column("probability", Float),
            Column("probabilities", Text),  # JSON: class name -> probability
            Column("error", Text),
            Column("model_run", Text), Column("model_sha256", String(64)),
            Column("image_path", Text),
            Column("scored_at", DateTime(timezone=True), nullable=False),
            UniqueConstraint("source", "row_key", name=f"{name}_source_key"),
            schema=schema,
        )
        schema, name = _split(state_table)
        self.state = Table(name, md, Column("source", String(128), primary_key=True),
                           Column("watermark", BigInteger, nullable=False),
                           Column("updated_at", DateTime(timezone=True), nullable=False), schema=schema)
        self.metadata = md

    def create_tables(self) -> None:
        """CREATE TABLE IF NOT EXISTS for the outcome and state tables. Several services starting at once would race
        in PostgreSQL's catalog (a duplicate-key error on pg_type), so there they take an advisory lock first."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK})
            self.metadata.create_all(conn)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @staticmethod
    def _source(src: Source, *extra: str):
        schema, name = _split(src.table)
        cols = [src.key_column, *src.payload.sql_columns(), *extra]
        return table(name, *(column(c) for c in dict.fromkeys(cols)), schema=schema)

    # -- reading ------------------------------------------------------------------------------------
    def watermark(self, conn: Connection, src: Source) -> int | None:
        return conn.execute(select(self.state.c.watermark).where(self.state.c.source == src.name)).scalar()

    def pending(self, conn: Connection, src: Source, limit: int) -> list[dict]:
        """Ungraded rows with key > watermark - lag, smallest keys first."""
        t = self._source(src)
        key = t.c[src.key_column]
        graded = exists().where(and_(self.outcome.c.source == src.name, self.outcome.c.row_key == key))
        q = select(t).where(~graded).order_by(key).limit(limit)
        wm = self.watermark(conn, src)
        if wm is not None:
            q = q.where(key > wm - src.lag)
        return [dict(r._mapping) for r in conn.execute(q)]

    def claim(self, conn: Connection, src: Source, limit: int) -> list[dict]:
        """Pending rows locked for this transaction; rows other workers hold are skipped, not waited for."""
        t = self._source(src, src.status_column)
        key = t.c[src.key_column]
        q = select(t).where(t.c[src.status_column] == src.pending_value).order_by(key).limit(limit)
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        elif self.dialect == "mssql":
            q = q.with_hint(t, "WITH (UPDLOCK, READPAST, ROWLOCK)")
        return [dict(r._mapping) for r in conn.execute(q)]

    def lag(self, conn: Connection, src: Source) -> int:
        """How many rows wait: ids above the watermark (watermark mode) or pending rows (claim mode)."""
        t = self._source(src, *([src.status_column] if src.status_column else []))
        key = t.c[src.key_column]
        if src.mode == "claim":
            return conn.execute(select(func.count()).where(t.c[src.status_column] == src.pending_value)).scalar() or 0
        wm = self.watermark(conn, src)
        q = select(func.count()).select_from(t)
        return conn.execute(q.where(key > wm) if wm is not None else q).scalar() or 0

    # -- writing ------------------------------------------------------------------------------------
    def write(self, conn: Connection, src: Source, outcomes: list[dict]) -> None:
        """Outcome rows (skipping any already there) and the source's new watermark / row status, in conn's transaction."""
        if outcomes:
            now = datetime.now(timezone.utc)
            blank = {c.name: None for c in self.outcome.columns if c.name != "id"}
            rows = [{**blank, **o, "source": src.name, "scored_at": now} for o in outcomes]
            conn.execute(self._insert_new(), rows)
        keys = [o["row_key"] for o in outcomes]
        if src.mode == "claim" and keys:
            t = self._source(src, src.status_column)
            conn.execute(update(t).where(t.c[src.key_column].in_(keys)).values({src.status_column: src.done_value}))
        elif keys:
            self._advance(conn, src, max(keys))

    def _insert_new(self):
        if self.dialect in _UPSERT_INSERT:
            return _UPSERT_INSERT[self.dialect](self.outcome).on_conflict_do_nothing(index_elements=["source", "row_key"])
        return insert(self.outcome)  # elsewhere the anti-join and the unique constraint guard duplicates

    def _advance(self, conn: Connection, src: Source, key: int) -> None:
        now = datetime.now(timezone.utc)
        s = self.state
        done = conn.execute(update(s).where(and_(s.c.source == src.name, s.c.watermark < key))
                            .values(watermark=key, updated_at=now)).rowcount
        if not done and self.watermark(conn, src) is None:
            conn.execute(insert(s).values(source=src.name, watermark=key, updated_at=now))


