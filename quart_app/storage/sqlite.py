"""SQLite job store: one database file shared safely by every worker process on a host.

WAL mode lets readers run beside the single writer. Writes go through one connection and an
``asyncio.Lock`` per process, each in a ``BEGIN IMMEDIATE`` transaction, so a claim's select
and update cannot interleave with another process's claim. Reads use a second connection so
they never wait behind a write's fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import aiosqlite

from ..events import Event, EventKind
from ..jobs import Job, JobError, JobStatus, utcnow
from .base import Change, JobStore, WorkerInfo

logger = logging.getLogger(__name__)

P = ParamSpec("P")
# Writes committed together at most; a batch forms only while writes wait for the last one.
MAX_BATCH = 256
T = TypeVar("T")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    interruptions INTEGER NOT NULL,
    timeout_s REAL,
    expected_duration_s REAL,
    created_at REAL NOT NULL,
    scheduled_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    progress REAL NOT NULL,
    progress_message TEXT,
    status_reason TEXT,
    result TEXT,
    error TEXT,
    lease_owner TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS jobs_task ON jobs (task, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, id);
CREATE TABLE IF NOT EXISTS purged_jobs (
    id TEXT PRIMARY KEY,
    purged_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    concurrency INTEGER NOT NULL,
    heartbeat_at REAL NOT NULL
);
"""

_COLUMNS = (
    "seq, id, task, params, status, priority, attempt, max_attempts, interruptions, timeout_s, "
    "expected_duration_s, created_at, scheduled_at, started_at, finished_at, progress, "
    "progress_message, status_reason, result, error, lease_owner, lease_expires_at, "
    "cancel_requested, idempotency_key, request_hash"
)


def _batched(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Run a write on the store's writer task, in a transaction shared with concurrent writes.

    The caller waits for the result, which arrives only after the commit. A caller that is
    cancelled (a client that hung up, a shutdown) stops waiting, but its write still ends
    with the batch's COMMIT or ROLLBACK, so the database is never left locked.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        assert isinstance(store, SQLiteStore)
        return await store._submit(functools.partial(method, *args, **kwargs))

    return wrapper


@dataclass(frozen=True)
class _Write:
    operation: Callable[[], Coroutine[Any, Any, Any]]
    result: asyncio.Future[Any]


class SQLiteStore(JobStore):
    """Jobs in a SQLite file (``sqlite:///path``) or in memory (``memory://``)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000) -> None:
        super().__init__()
        self.path = path
        self._in_memory = path == ":memory:"
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._pending: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._writer = await self._connect()
        await self._writer.executescript(_SCHEMA)
        await self._writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        # An in-memory database exists only on its own connection, so reads share it.
        self._reader = self._writer if self._in_memory else await self._connect()
        self._writer_task = asyncio.create_task(self._write_forever(), name="sqlite-writer")
        logger.info("opened job store %s", self.path)

    async def _connect(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(self.path, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        await connection.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        if not self._in_memory:
            await connection.execute("PRAGMA journal_mode = WAL")
            # FULL syncs the WAL on every commit, so a job acknowledged with 202 survives
            # a power loss, not only a process crash.
            await connection.execute("PRAGMA synchronous = FULL")
        return connection

    async def close(self) -> None:
        # Writes already submitted, including those of cancelled callers, still commit.
        if self._writer_task is not None:
            self._pending.put_nowait(None)
            await self._writer_task
            self._writer_task = None
        if self._reader is not None and self._reader is not self._writer:
            await self._reader.close()
        if self._writer is not None:
            await self._writer.close()
        self._reader = self._writer = None

    # Connections -----------------------------------------------------------------------

    async def _submit(self, operation: Callable[[], Coroutine[Any, Any, T]]) -> T:
        if self._writer_task is None or self._writer_task.done():
            raise RuntimeError("the job store is not open")
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait(_Write(operation, result))
        # Shielded: the write goes on even if this caller is cancelled.
        return await asyncio.shield(result)

    async def _write_forever(self) -> None:
        """Commit queued writes in batches: one transaction, and one fsync, per batch."""
        while True:
            first = await self._pending.get()
            batch = [first] if first is not None else []
            while len(batch) < MAX_BATCH and not self._pending.empty():
                item = self._pending.get_nowait()
                if item is None:
                    first = None
                    break
                batch.append(item)
            if batch:
                await self._commit_batch(batch)
            if first is None:
                return

    async def _commit_batch(self, batch: list[_Write]) -> None:
        assert self._writer is not None
        outcomes: list[tuple[_Write, Any, BaseException | None]] = []
        async with self._write_lock:
            try:
                if self._writer.in_transaction:
                    logger.warning("rolled back a transaction left open by an earlier failure")
                    await self._writer.execute("ROLLBACK")
                await self._writer.execute("BEGIN IMMEDIATE")
                for write in batch:
                    outcomes.append(await self._run_in_savepoint(write))
                await self._writer.execute("COMMIT")
            except Exception as batch_error:
                # The batch as a whole failed (a lock timeout, a full disk): every write in
                # it failed, and each caller gets the error.
                logger.warning("failed to commit %d writes: %s", len(batch), batch_error)
                if self._writer.in_transaction:
                    await self._writer.execute("ROLLBACK")
                outcomes = [(write, None, batch_error) for write in batch]
        for write, value, failure in outcomes:
            if write.result.done():
                continue
            if failure is None:
                write.result.set_result(value)
            else:
                write.result.set_exception(failure)

    async def _run_in_savepoint(self, write: _Write) -> tuple[_Write, Any, BaseException | None]:
        # A savepoint per write lets one write fail (a constraint, a bug) without undoing
        # the others in its batch.
        assert self._writer is not None
        await self._writer.execute("SAVEPOINT write")
        try:
            value = await write.operation()
        except Exception as error:
            await self._writer.execute("ROLLBACK TO write")
            await self._writer.execute("RELEASE write")
            return write, None, error
        await self._writer.execute("RELEASE write")
        return write, value, None

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection of the batch's transaction; only ``_batched`` methods use it."""
        assert self._writer is not None, "the store is not open"
        yield self._writer

    async def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        assert self._reader is not None, "the store is not open"
        if self._in_memory:
            # The shared connection may be inside a transaction of another coroutine.
            async with self._write_lock:
                return list(await self._reader.execute_fetchall(sql, params))
        return list(await self._reader.execute_fetchall(sql, params))

    # Reads -----------------------------------------------------------------------------

    async def job(self, job_id: str) -> Job | None:
        rows = await self._fetchall(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job_from_row(rows[0]) if rows else None

    async def is_purged(self, job_id: str) -> bool:
        rows = await self._fetchall("SELECT 1 FROM purged_jobs WHERE id = ?", (job_id,))
        return bool(rows)

    async def jobs(
        self,
        *,
        statuses: frozenset[JobStatus] | None = None,
        task: str | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        clauses: list[str] = []
        params: list[Any] = []
        if statuses:
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(sorted(statuses))
        if task is not None:
            clauses.append("task = ?")
            params.append(task)
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?"
        rows = await self._fetchall(sql, (*params, limit))
        return [_job_from_row(row) for row in rows]

    async def active_jobs(self, limit: int) -> list[Job]:
        sql = (
            f"SELECT {_COLUMNS} FROM jobs WHERE status IN ('running', 'queued') "
            "ORDER BY status = 'queued', priority DESC, seq LIMIT ?"
        )
        return [_job_from_row(row) for row in await self._fetchall(sql, (limit,))]

    async def recent_durations_s(self, task: str, limit: int) -> list[float]:
        sql = (
            "SELECT finished_at - started_at FROM jobs WHERE task = ? AND status = 'succeeded' "
            "AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?"
        )
        return [float(row[0]) for row in await self._fetchall(sql, (task, limit))]

    async def events_after(
        self, after_id: int, limit: int, job_id: str | None = None
    ) -> list[Event]:
        if job_id is None:
            sql = "SELECT id, job_id, kind, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?"
            rows = await self._fetchall(sql, (after_id, limit))
        else:
            sql = (
                "SELECT id, job_id, kind, at, data FROM events WHERE job_id = ? AND id > ? "
                "ORDER BY id LIMIT ?"
            )
            rows = await self._fetchall(sql, (job_id, after_id, limit))
        return [_event_from_row(row) for row in rows]

    async def last_event_id(self, job_id: str | None = None) -> int:
        if job_id is None:
            rows = await self._fetchall("SELECT COALESCE(MAX(id), 0) FROM events")
        else:
            rows = await self._fetchall(
                "SELECT COALESCE(MAX(id), 0) FROM events WHERE job_id = ?", (job_id,)
            )
        return int(rows[0][0])

    async def first_event_id(self) -> int:
        rows = await self._fetchall("SELECT COALESCE(MIN(id), 0) FROM events")
        return int(rows[0][0])

    async def counts(self) -> dict[str, int]:
        rows = await self._fetchall("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        counts = {status.value: 0 for status in JobStatus}
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts

    # Workers ---------------------------------------------------------------------------

    @_batched
    async def heartbeat(self, worker_id: str, concurrency: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO workers (id, concurrency, heartbeat_at) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (worker_id, concurrency, _to_epoch(utcnow())),
            )

    @_batched
    async def remove_worker(self, worker_id: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    async def live_workers(self, since: datetime) -> list[WorkerInfo]:
        rows = await self._fetchall(
            "SELECT id, concurrency, heartbeat_at FROM workers WHERE heartbeat_at >= ?",
            (_to_epoch(since),),
        )
        return [
            WorkerInfo(row[0], int(row[1]), datetime.fromtimestamp(row[2], UTC)) for row in rows
        ]

    # Backend hooks ---------------------------------------------------------------------

    @_batched
    async def _insert(self, job: Job) -> tuple[Job, bool]:
        async with self._transaction() as db:
            if job.idempotency_key is not None:
                cursor = await db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE idempotency_key = ?",
                    (job.idempotency_key,),
                )
                existing = await cursor.fetchone()
                if existing is not None:
                    return _job_from_row(existing), False
            columns = _job_to_columns(job)
            names = ", ".join(columns)
            marks = ", ".join("?" * len(columns))
            cursor = await db.execute(
                f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING seq",
                tuple(columns.values()),
            )
            row = await cursor.fetchone()
            await cursor.close()
            stored = job.evolve(seq=int(row[0]) if row else None)
            await self._record(db, stored, EventKind.QUEUED)
            return stored, True

    @_batched
    async def _claim(self, worker_id: str, now: datetime, lease_until: datetime) -> Job | None:
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE jobs SET status = 'running', started_at = ?, lease_owner = ?, "
                f"lease_expires_at = ?, progress = 0, progress_message = NULL, "
                f"status_reason = NULL "
                f"WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' AND scheduled_at <= ? "
                f"ORDER BY priority DESC, seq LIMIT 1) RETURNING {_COLUMNS}",
                (_to_epoch(now), worker_id, _to_epoch(lease_until), _to_epoch(now)),
            )
            row = await cursor.fetchone()
            await cursor.close()
            if row is None:
                return None
            job = _job_from_row(row)
            await self._record(db, job, EventKind.STARTED)
            return job

    @_batched
    async def _renew(self, worker_id: str, lease_until: datetime) -> list[tuple[str, bool]]:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE status = 'running' "
                "AND lease_owner = ? RETURNING id, cancel_requested",
                (_to_epoch(lease_until), worker_id),
            )
            rows = await cursor.fetchall()
            await cursor.close()
        return [(row[0], bool(row[1])) for row in rows]

    @_batched
    async def _update(self, change: Change) -> Job | None:
        columns = _values_to_columns(change.values)
        # A change with no values only records its event; SQL needs one assignment anyway.
        assignments = ", ".join(f"{name} = ?" for name in columns) or "seq = seq"
        sql = f"UPDATE jobs SET {assignments} WHERE id = ? AND status = ?"
        params: list[Any] = [*columns.values(), change.job_id, change.expect_status.value]
        if change.expect_owner is not None:
            sql += " AND lease_owner = ?"
            params.append(change.expect_owner)
        async with self._transaction() as db:
            cursor = await db.execute(f"{sql} RETURNING {_COLUMNS}", tuple(params))
            row = await cursor.fetchone()
            await cursor.close()
            if row is None:
                return None
            job = _job_from_row(row)
            if change.event is not None:
                await self._record(db, job, change.event)
            return job

    async def _running_jobs(self) -> list[Job]:
        rows = await self._fetchall(f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running'")
        return [_job_from_row(row) for row in rows]

    @_batched
    async def _purge(self, finished_before: datetime, tombstones_before: datetime) -> int:
        cutoff = _to_epoch(finished_before)
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO purged_jobs (id, purged_at) SELECT id, ? FROM jobs "
                "WHERE finished_at IS NOT NULL AND finished_at < ?",
                (_to_epoch(utcnow()), cutoff),
            )
            await db.execute(
                "DELETE FROM events WHERE job_id IN (SELECT id FROM jobs "
                "WHERE finished_at IS NOT NULL AND finished_at < ?)",
                (cutoff,),
            )
            cursor = await db.execute(
                "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)
            )
            purged = cursor.rowcount
            await db.execute(
                "DELETE FROM purged_jobs WHERE purged_at < ?", (_to_epoch(tombstones_before),)
            )
            await db.execute(
                "DELETE FROM workers WHERE heartbeat_at < ?", (_to_epoch(tombstones_before),)
            )
        return purged

    async def _record(self, db: aiosqlite.Connection, job: Job, kind: EventKind) -> None:
        data = json.dumps(self.describe(job), separators=(",", ":"))
        await db.execute(
            "INSERT INTO events (job_id, kind, at, data) VALUES (?, ?, ?, ?)",
            (job.id, kind.value, _to_epoch(utcnow()), data),
        )


# Row conversion --------------------------------------------------------------------------


def _to_epoch(moment: datetime) -> float:
    return moment.timestamp()


def _from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _job_to_columns(job: Job) -> dict[str, Any]:
    values = {
        "id": job.id,
        "task": job.task,
        "params": job.params,
        "status": job.status,
        "priority": job.priority,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "interruptions": job.interruptions,
        "timeout_s": job.timeout_s,
        "expected_duration_s": job.expected_duration_s,
        "created_at": job.created_at,
        "scheduled_at": job.scheduled_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "status_reason": job.status_reason,
        "result": job.result,
        "error": job.error,
        "lease_owner": job.lease_owner,
        "lease_expires_at": job.lease_expires_at,
        "cancel_requested": job.cancel_requested,
        "idempotency_key": job.idempotency_key,
        "request_hash": job.request_hash,
    }
    return _values_to_columns(values)


def _values_to_columns(values: dict[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("params", "result"):
            columns[name] = json.dumps(value, separators=(",", ":"))
        elif name == "error":
            columns[name] = json.dumps(value.to_dict()) if value is not None else None
        elif isinstance(value, datetime):
            columns[name] = _to_epoch(value)
        elif isinstance(value, JobStatus):
            columns[name] = value.value
        elif isinstance(value, bool):
            columns[name] = int(value)
        else:
            columns[name] = value
    return columns


def _job_from_row(row: aiosqlite.Row) -> Job:
    error = json.loads(row["error"]) if row["error"] else None
    return Job(
        seq=row["seq"],
        id=row["id"],
        task=row["task"],
        params=json.loads(row["params"]),
        status=JobStatus(row["status"]),
        priority=row["priority"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        interruptions=row["interruptions"],
        timeout_s=row["timeout_s"],
        expected_duration_s=row["expected_duration_s"],
        created_at=_from_epoch(row["created_at"]) or utcnow(),
        scheduled_at=_from_epoch(row["scheduled_at"]) or utcnow(),
        started_at=_from_epoch(row["started_at"]),
        finished_at=_from_epoch(row["finished_at"]),
        progress=row["progress"],
        progress_message=row["progress_message"],
        status_reason=row["status_reason"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=JobError(**error) if error else None,
        lease_owner=row["lease_owner"],
        lease_expires_at=_from_epoch(row["lease_expires_at"]),
        cancel_requested=bool(row["cancel_requested"]),
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
    )


def _event_from_row(row: aiosqlite.Row) -> Event:
    return Event(
        id=int(row[0]),
        job_id=row[1],
        kind=EventKind(row[2]),
        at=_from_epoch(row[3]) or utcnow(),
        data=json.loads(row[4]),
    )
