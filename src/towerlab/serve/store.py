"""Every SQL statement of the service, for one database.

Exactly once, without trusting the order in which transactions commit, and without a window:
- watermark mode reads rows that have no outcome yet (an anti-join on the outcome table's unique (source, row_key))
  with key > watermark, or with a key inside a *gap*: the ids below the watermark the service has not seen a row
  for (the rows of transactions still open when larger keys were graded, or ids that rolled back). Each gap is
  re-read on every poll until nothing can fill it any more:
  * PostgreSQL proves it: a gap records the transactions open when it was seen (their virtual ids in pg_locks,
    which include those that drew an id from a sequence but have not written yet) and the snapshot's xmax (a
    64-bit xid8, so xid wraparound cannot confuse the comparison). Once all of them have ended and the snapshot
    horizon (xmin) has passed that xmax, a read after that moment sees every row that will ever hold one of its
    ids, and the gap closes after that read. (Keys must come from a sequence or identity without CACHE > 1, or a
    transaction's own writes: a session that caches sequence values can hand out an old id later.)
  * elsewhere a gap is re-read until `gap_wait_s` has passed, then closed with a warning naming its ids;
- the outcome rows and the advanced watermark are written in the same transaction as the read, and the insert
  skips (source, row_key) pairs already present: a crash before commit repeats the work, never its effect;
- claim mode (when the service may write to the source table) locks pending rows with FOR UPDATE SKIP LOCKED
  (PostgreSQL) or UPDLOCK, READPAST, ROWLOCK (SQL Server), so several workers can share one table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    column,
    create_engine,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from towerlab.serve import dialects
from towerlab.serve.settings import Source


@dataclass
class Gap:
    """Ids lo..hi below the watermark with no row seen yet; what must end before the gap can close (PostgreSQL)."""

    lo: int
    hi: int
    seen_at: datetime
    xmax: int | None = None  # the snapshot's xmax when the gap was seen
    waits: str = ""  # the virtual transaction ids open then, comma-separated


@dataclass
class Horizon:
    """PostgreSQL's view of open transactions at one moment: their virtual ids, the snapshot's xmin and xmax."""

    open: set[str]
    xmin: int
    xmax: int

    def ended(self, gap: Gap) -> bool:
        """Every transaction that could still commit a row into the gap had ended by this moment."""
        waits = set(filter(None, gap.waits.split(",")))
        return not (waits & self.open) and gap.xmax is not None and self.xmin >= gap.xmax


def _split(name: str) -> tuple[str | None, str]:
    schema, _, tbl = name.rpartition(".")
    return schema or None, tbl


class Store:
    def __init__(self, url: str, outcome_table: str, state_table: str, gap_table: str = "towerlab_gap"):
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError) as e:
            from towerlab.errors import ConfigError

            raise ConfigError(
                f"database URL {redact(url)}: {str(e).splitlines()[0]}; write "
                f"dialect+driver://user:password@host/db, e.g. postgresql+psycopg://..."
            ) from None
        self.dialect = dialects.of(self.engine.dialect.name)  # what differs between databases: dialects.py
        md = MetaData()
        schema, name = _split(outcome_table)
        self.outcome = Table(
            name,
            md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("source", String(128), nullable=False),
            Column("row_key", BigInteger, nullable=False),
            Column("status", String(16), nullable=False),  # ok | error
            Column("class_index", Integer),
            Column("class_name", String(64)),
            Column("probability", Float),
            Column("probabilities", Text),  # JSON: class name -> probability
            Column("error", Text),
            Column("model_run", Text),
            Column("model_sha256", String(64)),
            Column("image_path", Text),
            Column("scored_at", DateTime(timezone=True), nullable=False),
            UniqueConstraint("source", "row_key", name=f"{name}_source_key"),
            schema=schema,
        )
        schema, name = _split(state_table)
        self.state = Table(
            name,
            md,
            Column("source", String(128), primary_key=True),
            Column("watermark", BigInteger, nullable=False),
            Column("updated_at", DateTime(timezone=True), nullable=False),
            schema=schema,
        )
        schema, name = _split(gap_table)
        self.gap = Table(
            name,
            md,
            Column("source", String(128), primary_key=True),
            Column("lo", BigInteger, primary_key=True),
            Column("hi", BigInteger, nullable=False),
            Column("seen_at", DateTime(timezone=True), nullable=False),
            Column("snapshot_xmax", BigInteger),
            Column("waits", Text),
            schema=schema,
        )
        self.metadata = md

    def create_tables(self) -> None:
        """CREATE TABLE IF NOT EXISTS for the outcome, state and gap tables. Several services starting at once race
        between the check and the CREATE: PostgreSQL's catalog (a duplicate-key error on pg_type) is serialised by
        an advisory lock; elsewhere (SQLite) the loser checks again."""
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    self.dialect.lock_ddl(conn)
                    self.metadata.create_all(conn)
                return
            except DBAPIError:
                if attempt == 2:
                    raise
                time.sleep(0.2)  # another service created them after our check: the next check sees them

    def check_source(self, conn: Connection, src: Source) -> str | None:
        """What makes a source unusable as configured (its table or a column missing, a key column whose type holds
        no integer ids), or None. A configuration mistake, said once at start: never retried as an outage."""
        from sqlalchemy import inspect
        from sqlalchemy.types import Integer as IntegerType

        schema, name = _split(src.table)
        insp = inspect(conn)
        if not insp.has_table(name, schema=schema):
            return f"table {src.table} does not exist in this database"
        types = {c["name"].lower(): c["type"] for c in insp.get_columns(name, schema=schema)}
        wanted = [src.key_column, *src.payload.sql_columns(), *([src.status_column] if src.status_column else [])]
        gone = [c for c in wanted if c.lower() not in types]
        if gone:
            return f"table {src.table} has no column {gone[0]} (it has {', '.join(sorted(types))})"
        key_type = types[src.key_column.lower()]
        if not isinstance(key_type, IntegerType):
            return (
                f"key column {src.table}.{src.key_column} is {key_type}; the service tracks rows by an integer "
                f"key (an id from a sequence or identity column): point key_column at one"
            )
        from towerlab.serve.payload import column_type_mismatch

        for c in src.payload.sql_columns():
            why = column_type_mismatch(src.payload, c, types[c.lower()])
            if why:
                return f"column {src.table}.{c} is {types[c.lower()]}, {why}"
        return None

    def orphaned_watermark(self, conn: Connection, src: Source) -> int | None:
        """The watermark the state table holds for src while the outcome table holds no outcome of it: the state of
        another outcome table (a new outcome_table beside an old state_table), which would skip every row below it."""
        wm = self.watermark(conn, src)
        if wm is None:
            return None
        o = self.outcome.c
        return None if conn.execute(select(o.id).where(o.source == src.name).limit(1)).first() else wm

    def has_graded_ok(self, conn: Connection, src: Source) -> bool:
        o = self.outcome.c
        return conn.execute(select(o.id).where(o.source == src.name, o.status == "ok").limit(1)).first() is not None

    # -- grading error rows again (`serve --regrade errors`) --------------------------------------------
    def error_outcomes(self, conn: Connection, src: Source, after: int, upto: int, limit: int) -> list[tuple[int, int]]:
        """(outcome id, row key) of src's error outcomes with after < id <= upto, in id order."""
        o = self.outcome.c
        q = (
            select(o.id, o.row_key)
            .where(o.source == src.name, o.status == "error", o.id > after, o.id <= upto)
            .order_by(o.id)
            .limit(limit)
        )
        return [(r.id, r.row_key) for r in conn.execute(q)]

    def last_outcome_id(self, conn: Connection) -> int:
        return conn.execute(select(func.coalesce(func.max(self.outcome.c.id), 0))).scalar()

    def rows_by_key(self, conn: Connection, src: Source, keys: list[int]) -> list[dict]:
        t = self._source(src)
        key = t.c[src.key_column]
        return [dict(r._mapping) for r in conn.execute(select(t).where(key.in_(keys)).order_by(key))]

    def replace_errors(self, conn: Connection, src: Source, outcomes: list[dict]) -> int:
        """Each outcome in place of its row's error outcome; a row graded meanwhile (no longer an error) is left
        alone, so a row is graded ok exactly once however many regrades run. Returns the rows replaced."""
        o = self.outcome
        now, done = datetime.now(UTC), 0
        fields = [c.name for c in o.columns if c.name not in ("id", "source", "row_key")]
        for out in outcomes:
            values = {f: out.get(f) for f in fields} | {"scored_at": now}
            done += conn.execute(
                update(o)
                .where(o.c.source == src.name, o.c.row_key == out["row_key"], o.c.status == "error")
                .values(values)
            ).rowcount
        return done

    def _integer_keys(self, key):
        """Rows whose key is an integer: NULL never is, and SQLite stores text or 1.5 in an INTEGER column as is."""
        return self.dialect.integer_keys(key)

    def unusable_keys(self, conn: Connection, src: Source) -> tuple[int, object]:
        """How many rows of the source have a key that is not an integer (NULL, text, 1.5), and one such key."""
        t = self._source(src)
        key = t.c[src.key_column]
        bad = ~self._integer_keys(key)
        n = conn.execute(select(func.count()).select_from(t).where(bad)).scalar() or 0
        example = conn.execute(select(key).where(bad).limit(1)).scalar() if n else None
        return n, example

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

    def pending(self, conn: Connection, src: Source, limit: int, gaps: list[Gap]) -> list[dict]:
        """Ungraded rows with key > watermark - lag or inside a gap, smallest keys first."""
        t = self._source(src)
        key = t.c[src.key_column]
        graded = exists().where(and_(self.outcome.c.source == src.name, self.outcome.c.row_key == key))
        q = select(t).where(~graded, self._integer_keys(key)).order_by(key).limit(limit)
        wm = self.watermark(conn, src)
        if wm is not None:
            q = q.where(or_(key > wm - src.lag, *(key.between(g.lo, g.hi) for g in gaps)))
        return [dict(r._mapping) for r in conn.execute(q)]

    # -- gaps: ids below the watermark that a transaction still open may fill --------------------------
    def gaps(self, conn: Connection, src: Source) -> list[Gap]:
        g = self.gap
        rows = conn.execute(
            select(g.c.lo, g.c.hi, g.c.seen_at, g.c.snapshot_xmax, g.c.waits)
            .where(g.c.source == src.name)
            .order_by(g.c.lo)
        )
        return [Gap(r.lo, r.hi, _utc(r.seen_at), r.snapshot_xmax, r.waits or "") for r in rows]

    def horizon(self, conn: Connection) -> Horizon | None:
        """PostgreSQL: the open transactions (but this one) and the snapshot bounds, now; None elsewhere."""
        snap = self.dialect.snapshot(conn)
        return Horizon(*snap) if snap else None

    def closable(self, conn: Connection, src: Source, gaps: list[Gap]) -> list[Gap]:
        """The gaps nothing can fill any more, decided *before* the read that will be their last: on PostgreSQL every
        transaction open when the gap was seen has ended; elsewhere the gap has waited gap_wait_s."""
        if not gaps:
            return []
        now = self.horizon(conn)
        if now is not None:
            return [g for g in gaps if now.ended(g)]
        deadline = datetime.now(UTC) - timedelta(seconds=src.gap_wait_s)
        return [g for g in gaps if g.seen_at <= deadline]

    def close_gaps(self, conn: Connection, src: Source, gaps: list[Gap]) -> list[tuple[Gap, int]]:
        """Forget gaps that were read one last time; (gap, its ids still without an outcome) for each."""
        out = []
        for g in gaps:
            graded = (
                conn.execute(
                    select(func.count()).where(
                        self.outcome.c.source == src.name, self.outcome.c.row_key.between(g.lo, g.hi)
                    )
                ).scalar()
                or 0
            )
            conn.execute(delete(self.gap).where(self.gap.c.source == src.name, self.gap.c.lo == g.lo))
            out.append((g, g.hi - g.lo + 1 - graded))
        return out

    def _record_gaps(self, conn: Connection, src: Source, watermark: int | None, keys: list[int]) -> None:
        """The ids between the old watermark and the new one that no graded row holds: open transactions' rows, or
        ids that will never commit."""
        above = sorted(k for k in keys if watermark is None or k > watermark)
        if watermark is None:  # the first batch: the ids below its smallest key are a gap too (1 up, or any)
            watermark = -(2**63) if above[0] < 1 else 0
        spans = [(a + 1, b - 1) for a, b in zip([watermark, *above], above) if b > a + 1]
        if not spans:
            return
        now = self.horizon(conn)  # after the read: every transaction that drew one of these ids is open or done
        seen = datetime.now(UTC)
        conn.execute(
            insert(self.gap),
            [
                {
                    "source": src.name,
                    "lo": lo,
                    "hi": hi,
                    "seen_at": seen,
                    "snapshot_xmax": now.xmax if now else None,
                    "waits": ",".join(sorted(now.open)) if now else None,
                }
                for lo, hi in spans
            ],
        )

    def claim(self, conn: Connection, src: Source, limit: int) -> list[dict]:
        """Pending rows locked for this transaction; rows other workers hold are skipped, not waited for."""
        t = self._source(src, src.status_column)
        key = t.c[src.key_column]
        q = (
            select(t)
            .where(t.c[src.status_column] == src.pending_value, self._integer_keys(key))
            .order_by(key)
            .limit(limit)
        )
        return [dict(r._mapping) for r in conn.execute(self.dialect.claim_lock(q, t))]

    def waiting_in_gaps(self, conn: Connection, src: Source) -> int:
        g = self.gap
        return conn.execute(
            select(func.coalesce(func.sum(g.c.hi - g.c.lo + 1), 0)).where(g.c.source == src.name)
        ).scalar()

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
        """Outcome rows (skipping any already there) and the source's new watermark / row status, in conn's
        transaction."""
        if outcomes:
            now = datetime.now(UTC)
            blank = {c.name: None for c in self.outcome.columns if c.name != "id"}
            rows = [{**blank, **o, "source": src.name, "scored_at": now} for o in outcomes]
            conn.execute(self.dialect.insert_new(self.outcome), rows)
        keys = [o["row_key"] for o in outcomes]
        if src.mode == "claim" and keys:
            t = self._source(src, src.status_column)
            conn.execute(update(t).where(t.c[src.key_column].in_(keys)).values({src.status_column: src.done_value}))
        elif keys:
            self._record_gaps(conn, src, self.watermark(conn, src), keys)
            self._advance(conn, src, max(keys))

    def _advance(self, conn: Connection, src: Source, key: int) -> None:
        now = datetime.now(UTC)
        s = self.state
        done = conn.execute(
            update(s).where(and_(s.c.source == src.name, s.c.watermark < key)).values(watermark=key, updated_at=now)
        ).rowcount
        if not done and self.watermark(conn, src) is None:
            conn.execute(insert(s).values(source=src.name, watermark=key, updated_at=now))


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- not even a URL: say nothing of what it holds
        return "(unparsable)"


def _utc(t: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns: they were written in UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)
