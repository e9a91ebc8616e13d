"""The audit trail: one record per call, the cards it returned, the feedback that answers them.

Stored through SQLAlchemy Core in an embedded SQLite database (WAL, ``var/tcm.db``) by default, or in
PostgreSQL (``TCM_DATABASE_URL=postgresql+psycopg://…``): the same tables and statements either way. Several
server processes share one database.

Writes go through one writer thread per process that commits whatever has queued up in one transaction (group
commit); a request waits for its own record to be committed before its response starts, so every answered call
has its record even if the process is killed the next instant (SQLite's WAL with ``synchronous=NORMAL``
survives a process kill; only a power cut can lose the last transactions). A record holds no patient text: the
input is kept as its SHA-256.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError

from kb.errors import TCMError

logger = logging.getLogger(__name__)

metadata = MetaData()

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), nullable=False, unique=True),
    Column("ts", DateTime, nullable=False, index=True),
    Column("client", String(200)),
    Column("role", String(40)),
    Column("method", String(10), nullable=False),
    Column("route", String(200), nullable=False),
    Column("status", Integer, nullable=False),
    Column("outcome", String(80), nullable=False),
    Column("service_id", String(100)),
    Column("hook", String(60)),
    Column("hook_instance", String(200), index=True),
    Column("input_sha256", String(64)),
    Column("engine_version", String(40)),
    Column("kb_version", String(80)),
    Column("ruleset_version", String(200)),
    Column("models", Text),
    Column("card_ids", Text),
    Column("latency_ms", Float, nullable=False),
)

audit_card = Table(
    "audit_card",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), ForeignKey("audit_log.request_id"), nullable=False, index=True),
    Column("card_uuid", String(36), nullable=False, index=True),
    Column("service_id", String(100)),
    Column("indicator", String(10)),
    Column("topic", String(200)),
    Column("suggestion_ids", Text),
)

cds_feedback = Table(
    "cds_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", DateTime, nullable=False),
    Column("request_id", String(36), nullable=False, index=True),  # the feedback call (its own audit record)
    Column("service_id", String(100), nullable=False),
    Column("card_uuid", String(36), nullable=False, index=True),
    Column("card_request_id", String(36), ForeignKey("audit_log.request_id"), index=True),  # the call that made it
    Column("client", String(200)),
    Column("outcome", String(20), nullable=False),
    Column("accepted_suggestions", Text),
    Column("override_system", String(200)),
    Column("override_code", String(100)),
    Column("override_display", String(300)),
    Column("user_comment", Text),
    Column("outcome_ts", String(40)),
)

cds_jti = Table(
    "cds_jti",
    metadata,
    Column("iss", String(300), primary_key=True),
    Column("jti", String(300), primary_key=True),
    Column("exp", Integer, nullable=False),
)
Index("ix_cds_jti_exp", cds_jti.c.exp)


_INSERT_AUDIT = insert(audit_log)
_INSERT_CARD = insert(audit_card)
_AUDIT_COLUMNS = tuple(c.name for c in audit_log.columns if c.name != "id")
_CARD_COLUMNS = tuple(c.name for c in audit_card.columns if c.name != "id")


class _Insert:
    """An INSERT of every column but ``id``, compiled once for a dialect and run on the DBAPI cursor of the
    writer's connection, inside its SQLAlchemy transaction.

    The audit insert is the same statement on every call; SQLAlchemy's per-call work (compiled-cache lookup,
    execution context, parameter processing, result set-up) costs more than SQLite's insert itself. The column
    types' bind processors still apply (SQLite stores a DateTime as text), so the rows are the ones
    ``conn.execute`` would write.
    """

    __slots__ = ("keys", "positional", "procs", "sql")

    def __init__(self, table: Table, columns: tuple[str, ...], dialect: Dialect):
        # for_executemany: no RETURNING of the new ids (PostgreSQL), which nobody reads
        compiled = insert(table).compile(dialect=dialect, column_keys=list(columns), for_executemany=True)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.keys: tuple[str, ...] = tuple(compiled.positiontup or ()) if self.positional else columns
        if set(self.keys) != set(columns):  # bind names are the column names; anything else: a plain execute
            raise ValueError(f"unexpected bind names for {table.name}")
        self.procs = tuple(table.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in self.keys)

    def params(self, row: dict[str, Any]) -> Any:
        values = [row.get(k) if p is None else p(row.get(k)) for k, p in zip(self.keys, self.procs, strict=True)]
        return tuple(values) if self.positional else dict(zip(self.keys, values, strict=True))

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        cursor = conn.connection.cursor()
        try:
            if len(rows) == 1:
                cursor.execute(self.sql, self.params(rows[0]))
            else:
                cursor.executemany(self.sql, [self.params(r) for r in rows])
        finally:
            cursor.close()


def _inserts(dialect: Dialect) -> tuple[_Insert, _Insert] | None:
    try:
        return _Insert(audit_log, _AUDIT_COLUMNS, dialect), _Insert(audit_card, _CARD_COLUMNS, dialect)
    except Exception as exc:  # a dialect that compiles differently: SQLAlchemy's ordinary execute
        logger.info("audit inserts run through SQLAlchemy's execute (%s)", type(exc).__name__)
        return None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and their folder created."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=8)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in the background (Writer)
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8)


class SchemaError(TCMError, RuntimeError):
    """The database's tables do not fit this release and cannot be brought up to it safely."""


def create_schema(engine: Engine) -> None:
    """Create missing tables, then bring tables an earlier release created up to this one (see
    :func:`upgrade_schema`); safe when several processes start at once."""
    for attempt in range(5):
        try:
            metadata.create_all(engine, checkfirst=True)
            break
        except DBAPIError as exc:  # another process created a table between check and create
            text_ = str(exc).lower()
            if attempt == 4 or not ("already exists" in text_ or "duplicate" in text_):
                raise
    upgrade_schema(engine)


def upgrade_schema(engine: Engine) -> list[str]:
    """Add the columns this release has and the database's tables lack, when they may be empty (nullable, no
    key): what a later release adds to a table. Returns the columns added (``table.column``). A lacking column that
    old rows could not fill is a :class:`SchemaError` that names it, before anything is changed or written."""
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateColumn

    have = inspect(engine)
    missing = [
        (table, col)
        for table in metadata.sorted_tables
        for col in table.columns
        if col.name not in {c["name"] for c in have.get_columns(table.name)}
    ]
    if not missing:
        return []
    blocking = [f"{t.name}.{c.name}" for t, c in missing if not c.nullable or c.primary_key or c.foreign_keys]
    if blocking:
        raise SchemaError(
            f"the database {engine.url.render_as_string(hide_password=True)} was made by another release: "
            f"{', '.join(blocking)} cannot be added to the existing rows; point TCM_DATABASE_URL at a new database "
            "(the old one keeps its audit trail) or migrate it by hand"
        )
    added = []
    for table, col in missing:
        ddl = CreateColumn(col).compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:  # one transaction each: a failed statement spoils a PostgreSQL transaction
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
        except DBAPIError as exc:  # another process added it first
            if "duplicate" not in str(exc).lower() and "already exists" not in str(exc).lower():
                raise
        added.append(f"{table.name}.{col.name}")
    logger.warning("database upgraded in place: added the column(s) %s", ", ".join(added))
    return added


# ---- the writer ----------------------------------------------------------------------------------------
Op = Callable[[Connection], Any]


class Record:
    """An audit record and its cards: written with executemany, many records per statement."""

    __slots__ = ("cards", "row")

    def __init__(self, rec: dict[str, Any], cards: list[dict[str, Any]]):
        self.row = {k: rec.get(k) for k in _AUDIT_COLUMNS}  # every column bound: one cached statement
        self.cards = [{**c, "request_id": rec["request_id"]} for c in cards]


class Writer:
    """Commits operations in batches (group commit) and tells each caller its own result.

    SQLite (``inline``): ``await run(op)`` queues the op on the running event loop; one flush per loop turn
    commits everything queued in that turn in one transaction, on the loop's thread — no thread hand-off,
    which on a busy machine costs more than the commit itself. Other databases: a writer thread does the same
    so a network round trip never blocks the loop. ``submit(op)`` (for code outside an event loop) returns a
    ``concurrent.futures.Future``.
    """

    def __init__(self, engine: Engine, max_batch: int = 256, inline: bool | None = None):
        self.engine = engine
        self.max_batch = max_batch
        self.inline = engine.dialect.name == "sqlite" if inline is None else inline
        self._q: queue.SimpleQueue[tuple[Any, concurrent.futures.Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # start/stop of the thread
        self._db_lock = threading.Lock()  # one transaction at a time from this process's threads and loops
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Any, asyncio.Future[Any]]]] = {}
        self._conn: Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self.batches = 0
        self._inserts = _inserts(engine.dialect)

    def start(self) -> None:
        """Start the writer thread (again, after ``close``); cheap when it runs already."""
        if self.inline:
            self._start_checkpointer()
            return
        t = self._thread
        if t is not None and t.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="tcm-audit-writer", daemon=True)
                self._thread.start()

    def _start_checkpointer(self) -> None:
        """SQLite: checkpoint the WAL from a background thread (PASSIVE: never blocks a writer), so that no
        commit on the event loop has to wait for a checkpoint's fsync."""
        if self.engine.dialect.name != "sqlite":
            return
        with self._lock:
            if self._checkpointer is not None and self._checkpointer.is_alive():
                return
            self._stop.clear()
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="tcm-wal-checkpoint", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        seen = -1
        while not self._stop.wait(1.0):
            if self.batches == seen:
                continue
            seen = self.batches
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as exc:  # the next round tries again
                logger.info("WAL checkpoint skipped: %s", type(exc).__name__)

    def submit(self, op: Op | Record) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self.inline:
            ((ok, res),) = self._execute([op])
            _settle(fut, ok, res)
            return fut
        self.start()
        self._q.put((op, fut))
        return fut

    async def run(self, op: Op | Record) -> Any:
        if not self.inline:
            return await asyncio.wrap_future(self.submit(op))
        if self._checkpointer is None:
            self._start_checkpointer()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        batch = self._pending.get(loop)
        if batch is None:
            batch = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        batch.append((op, fut))
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        for i in range(0, len(batch), self.max_batch):
            part = batch[i : i + self.max_batch]
            for (_, fut), (ok, res) in zip(part, self._execute([op for op, _ in part]), strict=True):
                _settle(fut, ok, res)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread and close the connection."""
        with self._lock:
            t = self._thread
            if t is not None and t.is_alive():
                self._q.put(None)
                t.join(timeout)
            self._thread = None
        self._stop.set()
        cp, self._checkpointer = self._checkpointer, None
        if cp is not None:
            cp.join(timeout)
        with self._db_lock:
            self._drop_connection()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            for (_, f), (ok, res) in zip(batch, self._execute([op for op, _ in batch]), strict=True):
                _settle(f, ok, res)
            if stop:
                return

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The writer's own connection, kept open between batches (a pool checkout per batch costs more than
        an SQLite commit); reopened after an error."""
        if self._conn is None or self._conn.closed:
            self._conn = self.engine.connect()
        yield self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _execute(self, ops: list[Op | Record]) -> list[tuple[bool, Any]]:
        """Run ops in one transaction; if it fails, each alone, so one bad op does not sink the others."""
        try:
            with self._db_lock, self._connection() as conn, conn.begin():
                records = [op for op in ops if isinstance(op, Record)]
                if records:
                    rows = [r.row for r in records]
                    cards = [c for r in records for c in r.cards]
                    if self._inserts is not None:
                        self._inserts[0].run(conn, rows)
                        if cards:
                            self._inserts[1].run(conn, cards)
                    else:
                        conn.execute(_INSERT_AUDIT, rows)
                        if cards:
                            conn.execute(_INSERT_CARD, cards)
                results = [op.row["request_id"] if isinstance(op, Record) else op(conn) for op in ops]
            self.batches += 1
            return [(True, r) for r in results]
        except Exception as exc:
            self._drop_connection()
            if len(ops) > 1:
                return [self._execute([op])[0] for op in ops]
            logger.error("audit store write failed: %s", type(exc).__name__)
            return [(False, exc)]


def _settle(fut: Any, ok: bool, res: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(res)
    else:
        fut.set_exception(res)


# ---- operations ----------------------------------------------------------------------------------------
def record_op(rec: dict[str, Any], cards: list[dict[str, Any]]) -> Record:
    """The op that appends one audit record (with its cards); its result is the request id."""
    return Record(rec, cards)


_JTI_SEEN = select(cds_jti.c.exp).where(cds_jti.c.iss == bindparam("iss"), cds_jti.c.jti == bindparam("jti"))
_JTI_INSERT = insert(cds_jti)
_JTI_FORGET = cds_jti.delete().where(cds_jti.c.exp < bindparam("before"))


def _jti_insert_new(dialect_name: str) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` on (iss, jti) where the dialect has it: one statement, and its row
    count says whether the id was new; None elsewhere."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialects: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    if dialect_name not in dialects:
        return None
    stmt = dialects[dialect_name](cds_jti).on_conflict_do_nothing(index_elements=[cds_jti.c.iss, cds_jti.c.jti])
    return stmt.execution_options(preserve_rowcount=True)  # an INSERT's row count is otherwise not kept


_JTI_INSERT_NEW = {name: _jti_insert_new(name) for name in ("sqlite", "postgresql")}


def jti_op(iss: str, jti: str, exp: int, now: int) -> Op:
    """Remember a JWT id; returns False when it was seen before (a replay)."""

    def op(conn: Connection) -> bool:
        params = {"iss": iss, "jti": jti, "exp": exp}
        insert_new = _JTI_INSERT_NEW.get(conn.dialect.name)
        if insert_new is not None:
            if conn.execute(insert_new, params).rowcount != 1:
                return False
        else:
            if conn.execute(_JTI_SEEN, params).first() is not None:
                return False
            conn.execute(_JTI_INSERT, params)
        if now % 64 == 0:  # now and then, forget ids whose tokens have expired anyway
            conn.execute(_JTI_FORGET, {"before": now - 3600})
        return True

    return op


def feedback_op(service_id: str, request_id: str, client: str | None, entries: list[dict[str, Any]]) -> Op:
    """Store feedback entries, each linked to the call that returned its card; returns unknown card ids."""

    def op(conn: Connection) -> list[str]:
        unknown: list[str] = []
        rows = []
        for e in entries:
            hit = conn.execute(
                select(audit_card.c.request_id, audit_card.c.suggestion_ids)
                .where(audit_card.c.card_uuid == e["card"], audit_card.c.service_id == service_id)
                .order_by(audit_card.c.id.desc())
                .limit(1)
            ).first()
            if hit is None:
                unknown.append(e["card"])
                continue
            reason = (e.get("overrideReason") or {}).get("reason") or {}
            rows.append(
                {
                    "received_at": utcnow(),
                    "request_id": request_id,
                    "service_id": service_id,
                    "card_uuid": e["card"],
                    "card_request_id": hit[0],
                    "client": client,
                    "outcome": e["outcome"],
                    "accepted_suggestions": json.dumps([s["id"] for s in e.get("acceptedSuggestions") or []]),
                    "override_system": reason.get("system"),
                    "override_code": reason.get("code"),
                    "override_display": reason.get("display"),
                    "user_comment": (e.get("overrideReason") or {}).get("userComment"),
                    "outcome_ts": e["outcomeTimestamp"],
                }
            )
        if unknown:
            return unknown
        if rows:
            conn.execute(insert(cds_feedback), rows)
        return []

    return op


# ---- reading -------------------------------------------------------------------------------------------
def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="microseconds") + "Z" if value is not None else None


def export(engine: Engine, since: dt.datetime | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Audit records in order, each with its cards and the feedback that answered them."""
    last = 0
    sent = 0
    while True:
        q = select(audit_log).where(audit_log.c.id > last).order_by(audit_log.c.id).limit(500)
        if since is not None:
            q = q.where(audit_log.c.ts >= since)
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
            if not rows:
                return
            ids = [r["request_id"] for r in rows]
            cards: dict[int, list[dict[str, Any]]] = {}
            for c in conn.execute(select(audit_card).where(audit_card.c.request_id.in_(ids)).order_by(audit_card.c.id)):
                m = dict(c._mapping)
                cards.setdefault(m["request_id"], []).append(
                    {
                        "uuid": m["card_uuid"],
                        "indicator": m["indicator"],
                        "topic": m["topic"],
                        "suggestions": json.loads(m["suggestion_ids"] or "[]"),
                        "feedback": [],
                    }
                )
            fb = conn.execute(
                select(cds_feedback).where(cds_feedback.c.card_request_id.in_(ids)).order_by(cds_feedback.c.id)
            )
            for f in fb:
                m = dict(f._mapping)
                for card in cards.get(m["card_request_id"], []):
                    if card["uuid"] == m["card_uuid"]:
                        card["feedback"].append(_feedback_dict(m))
        for r in rows:
            last = r["id"]
            yield {
                "id": r["id"],
                "request_id": r["request_id"],
                "time": _iso(r["ts"]),
                "client": r["client"],
                "role": r["role"],
                "method": r["method"],
                "route": r["route"],
                "status": r["status"],
                "outcome": r["outcome"],
                "service_id": r["service_id"],
                "hook": r["hook"],
                "hook_instance": r["hook_instance"],
                "input_sha256": r["input_sha256"],
                "versions": {
                    "engine": r["engine_version"],
                    "kb": r["kb_version"],
                    "ruleset": r["ruleset_version"],
                    "models": json.loads(r["models"] or "[]"),
                },
                "card_ids": json.loads(r["card_ids"] or "[]"),
                "cards": cards.get(r["request_id"], []),
                "latency_ms": r["latency_ms"],
            }
            sent += 1
            if limit is not None and sent >= limit:
                return


def _feedback_dict(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "received_at": _iso(m["received_at"]),
        "request_id": m["request_id"],
        "outcome": m["outcome"],
        "accepted_suggestions": json.loads(m["accepted_suggestions"] or "[]"),
        "override_reason": {
            "system": m["override_system"],
            "code": m["override_code"],
            "display": m["override_display"],
        }
        if m["override_code"]
        else None,
        "user_comment": m["user_comment"],
        "outcome_timestamp": m["outcome_ts"],
        "client": m["client"],
    }


def feedback(engine: Engine, since: dt.datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The latest feedback (newest first) with the card it answers."""
    q = (
        select(cds_feedback, audit_card.c.topic, audit_card.c.indicator)
        .join(
            audit_card,
            (audit_card.c.request_id == cds_feedback.c.card_request_id)
            & (audit_card.c.card_uuid == cds_feedback.c.card_uuid),
            isouter=True,
        )
        .order_by(cds_feedback.c.id.desc())
        .limit(limit)
    )
    if since is not None:
        q = q.where(cds_feedback.c.received_at >= since)
    with engine.connect() as conn:
        out = []
        for r in conn.execute(q):
            m = dict(r._mapping)
            out.append(
                {
                    **_feedback_dict(m),
                    "service_id": m["service_id"],
                    "card": m["card_uuid"],
                    "card_request_id": m["card_request_id"],
                    "card_topic": m["topic"],
                    "card_indicator": m["indicator"],
                }
            )
        return out


def check(engine: Engine) -> bool:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return True
