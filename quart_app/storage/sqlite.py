"""SQLite job store: one database file shared safely by every worker process on a host.

Writes run on one thread with the standard ``sqlite3`` module. Writes that wait while a
batch commits are committed together in one ``BEGIN IMMEDIATE`` transaction, so many
concurrent submissions share one fsync, and a claim's select and update cannot interleave
with another process's claim. WAL mode lets reads run beside the writer, on an aiosqlite
connection, so they never wait behind a commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite

from ..events import Event, EventKind
from ..jobs import Job, JobError, JobStatus, utcnow
from .base import Change, JobStore, ReadWouldBlockError, WorkerInfo

logger = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

# Writes committed together at most; a batch forms only while writes wait for the last one.
MAX_BATCH = 256


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


@dataclass(frozen=True)
class _Write:
    operation: Operation
    result: asyncio.Future[Any]


class _PointCache:
    """Decoded jobs from the point reader, each tagged with the data version it was read at.

    ``PRAGMA data_version`` on a connection changes whenever another connection, in this
    process or in any other, commits to the file. While it is unchanged, no row can differ
    from the cached copy. After any commit, an entry is read again, and it keeps its ``Job``
    object when the row's values are the same, so callers can compare jobs by identity.
    """

    # Entries kept at most. Each contains a whole row, result included, so the bound limits
    # memory more than it aims at a hit rate. The entry read longest ago is dropped first.
    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, tuple[Any, ...], Job]] = {}

    def get(self, job_id: str, version: int) -> Job | None:
        """Return the cached job if it was read at ``version``."""
        entry = self._entries.get(job_id)
        if entry is None or entry[0] != version:
            return None
        return entry[2]

    def put(self, job_id: str, version: int, row: sqlite3.Row | None) -> Job | None:
        """Store the row read at ``version`` and return its job, reusing an equal one."""
        if row is None:
            self._entries.pop(job_id, None)
            return None
        values = tuple(row)
        entry = self._entries.pop(job_id, None)
        job = entry[2] if entry is not None and entry[1] == values else _job_from_row(row)
        if len(self._entries) >= self.MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
        self._entries[job_id] = (version, values, job)
        return job

    def clear(self) -> None:
        self._entries.clear()


class SQLiteStore(JobStore):
    """Jobs in a SQLite file (``sqlite:///path``) or in memory (``memory://``)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000) -> None:
        super().__init__()
        self.path = path
        self._in_memory = path == ":memory:"
        self._busy_timeout_ms = busy_timeout_ms
        # The write connection is used only on this one thread.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._connection: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._point_reader: sqlite3.Connection | None = None
        self._version_cursor: sqlite3.Cursor | None = None
        self._point_cache = _PointCache()
        self._pending: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        # The data version read in this turn of the event loop, if any.
        self._turn_version: int | None = None
        # Events stored by the batch in progress; only the writer thread touches it.
        self._batch_events: list[Event] = []

    async def open(self) -> None:
        self._connection = await self._in_thread(self._open_connection)
        # An in-memory database exists only on its own connection, so reads use it too.
        if not self._in_memory:
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            self._reader.row_factory = aiosqlite.Row
            await self._reader.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            self._point_reader = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=0
            )
            self._point_reader.row_factory = sqlite3.Row
            # One cursor for the version check saves creating one on every read.
            self._version_cursor = self._point_reader.cursor()
        self._writer_task = asyncio.create_task(self._write_forever(), name="sqlite-writer")
        logger.info("opened job store %s", self.path)

    def _open_connection(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        if not self._in_memory:
            connection.execute("PRAGMA journal_mode = WAL")
            # FULL syncs the WAL on every commit, so a job acknowledged with 202 survives
            # a power loss, not only a process crash.
            connection.execute("PRAGMA synchronous = FULL")
        connection.executescript(_SCHEMA)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return connection

    async def close(self) -> None:
        # Writes already submitted, including those of cancelled callers, still commit.
        if self._writer_task is not None:
            self._pending.put_nowait(None)
            await self._writer_task
            self._writer_task = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._point_reader is not None:
            self._point_reader.close()
            self._point_reader = None
            self._version_cursor = None
            # Data versions are counted per connection, so they mean nothing to the next one.
            self._point_cache.clear()
            self._turn_version = None
        if self._connection is not None:
            await self._in_thread(self._connection.close)
            self._connection = None
        self._thread.shutdown(wait=True)

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    # Writes ----------------------------------------------------------------------------

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Queue a write for the next batch and return its result once committed.

        A caller that is cancelled (a client that hung up, a shutdown) stops waiting, but
        its write still ends with the batch's COMMIT or ROLLBACK, so the database is never
        left locked.
        """
        if self._writer_task is None or self._writer_task.done():
            raise RuntimeError("the job store is not open")
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait(_Write(operation, result))
        return await asyncio.shield(result)

    async def _write_forever(self) -> None:
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
                operations = [write.operation for write in batch]
                outcomes, events = await self._in_thread(self._commit_batch, operations)
                if events:
                    # Subscribers get these events without a read of the log.
                    self.on_events(events)
                for write, (value, failure) in zip(batch, outcomes, strict=True):
                    if write.result.done():
                        continue
                    if failure is None:
                        write.result.set_result(value)
                    else:
                        write.result.set_exception(failure)
            if first is None:
                return

    def _commit_batch(
        self, operations: list[Operation]
    ) -> tuple[list[tuple[Any, Exception | None]], list[Event]]:
        """Run ``operations`` in one transaction, each in a savepoint; runs on the thread.

        Return each operation's outcome, and the events the transaction stored. A failing
        operation is rolled back to its savepoint without undoing the others. If the
        transaction itself fails (a lock timeout, a full disk), every operation fails.
        """
        connection = self._connection
        assert connection is not None, "the store is not open"
        self._batch_events = []
        try:
            if connection.in_transaction:
                logger.warning("rolled back a transaction left open by an earlier failure")
                connection.execute("ROLLBACK")
            connection.execute("BEGIN IMMEDIATE")
            outcomes = [self._run_in_savepoint(connection, operation) for operation in operations]
            connection.execute("COMMIT")
            return outcomes, self._batch_events
        except Exception as error:
            logger.warning("failed to commit %d writes: %s", len(operations), error)
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return [(None, error) for _ in operations], []

    def _run_in_savepoint(
        self, db: sqlite3.Connection, operation: Operation
    ) -> tuple[Any, Exception | None]:
        recorded = len(self._batch_events)
        db.execute("SAVEPOINT write")
        try:
            value = operation(db)
        except Exception as error:
            db.execute("ROLLBACK TO write")
            db.execute("RELEASE write")
            # The rolled-back events were never stored.
            del self._batch_events[recorded:]
            return None, error
        db.execute("RELEASE write")
        return value, None

    # Reads -----------------------------------------------------------------------------

    async def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if self._reader is None:
            connection = self._connection
            assert connection is not None, "the store is not open"
            return await self._in_thread(lambda: connection.execute(sql, params).fetchall())
        return list(await self._reader.execute_fetchall(sql, params))

    async def job(self, job_id: str) -> Job | None:
        rows = await self._fetchall(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job_from_row(rows[0]) if rows else None

    def job_nowait(self, job_id: str) -> Job | None:
        # NOTE: this read runs on the event loop. A primary-key lookup in WAL mode takes a
        # few microseconds and never waits for writers (busy_timeout is 0 on this
        # connection), which is cheaper than a hand-off to a thread. A checkpoint that
        # briefly locks the file raises instead, and the caller reads asynchronously.
        reader, version_cursor = self._point_reader, self._version_cursor
        if reader is None or version_cursor is None:
            raise ReadWouldBlockError
        try:
            # The version is read before the row, so a commit between the two reads changes
            # the version for the next call, and that call reads the row again.
            version = self._data_version(version_cursor)
            cached = self._point_cache.get(job_id, version)
            if cached is not None:
                return cached
            row = reader.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        except sqlite3.OperationalError as error:
            raise ReadWouldBlockError from error
        return self._point_cache.put(job_id, version, row)

    def _data_version(self, cursor: sqlite3.Cursor) -> int:
        """Return ``PRAGMA data_version``, read at most once per turn of the event loop.

        The check costs two ``fcntl`` calls for SQLite's read lock, and a busy server
        handles many polls per turn. Reuse is safe because asyncio runs ready callbacks in
        the order they were scheduled, as its documentation of ``call_soon`` states.
        Whatever runs before the reset callback below was scheduled before the version was
        read, so its request had arrived by then, and the state at the read is a correct
        answer to it. Later requests read again.
        """
        if self._turn_version is not None:
            return self._turn_version
        version: int = cursor.execute("PRAGMA data_version").fetchone()[0]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return version
        self._turn_version = version
        loop.call_soon(self._forget_turn_version)
        return version

    def _forget_turn_version(self) -> None:
        self._turn_version = None

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

    async def heartbeat(self, worker_id: str, concurrency: int) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO workers (id, concurrency, heartbeat_at) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (worker_id, concurrency, _to_epoch(utcnow())),
            )

        await self._write(write)

    async def remove_worker(self, worker_id: str) -> None:
        await self._write(lambda db: db.execute("DELETE FROM workers WHERE id = ?", (worker_id,)))

    async def live_workers(self, since: datetime) -> list[WorkerInfo]:
        rows = await self._fetchall(
            "SELECT id, concurrency, heartbeat_at FROM workers WHERE heartbeat_at >= ?",
            (_to_epoch(since),),
        )
        return [
            WorkerInfo(row[0], int(row[1]), datetime.fromtimestamp(row[2], UTC)) for row in rows
        ]

    # Backend hooks ---------------------------------------------------------------------

    async def _insert(self, job: Job) -> tuple[Job, bool]:
        def write(db: sqlite3.Connection) -> tuple[Job, bool]:
            if job.idempotency_key is not None:
                existing = db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE idempotency_key = ?",
                    (job.idempotency_key,),
                ).fetchone()
                if existing is not None:
                    return _job_from_row(existing), False
            columns = _job_to_columns(job)
            names = ", ".join(columns)
            marks = ", ".join("?" * len(columns))
            row = db.execute(
                f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING seq",
                tuple(columns.values()),
            ).fetchone()
            stored = job.evolve(seq=int(row[0]))
            self._record(db, stored, EventKind.QUEUED)
            return stored, True

        return await self._write(write)

    async def _claim(
        self, worker_id: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Job]:
        def write(db: sqlite3.Connection) -> list[Job]:
            claimed = []
            for _ in range(limit):
                row = db.execute(
                    f"UPDATE jobs SET status = 'running', started_at = ?, lease_owner = ?, "
                    f"lease_expires_at = ?, progress = 0, progress_message = NULL, "
                    f"status_reason = NULL WHERE seq = (SELECT seq FROM jobs "
                    f"WHERE status = 'queued' AND scheduled_at <= ? "
                    f"ORDER BY priority DESC, seq LIMIT 1) RETURNING {_COLUMNS}",
                    (_to_epoch(now), worker_id, _to_epoch(lease_until), _to_epoch(now)),
                ).fetchone()
                if row is None:
                    break
                job = _job_from_row(row)
                self._record(db, job, EventKind.STARTED)
                claimed.append(job)
            return claimed

        return await self._write(write)

    async def _renew(self, worker_id: str, lease_until: datetime) -> list[tuple[str, bool]]:
        def write(db: sqlite3.Connection) -> list[tuple[str, bool]]:
            rows = db.execute(
                "UPDATE jobs SET lease_expires_at = ? WHERE status = 'running' "
                "AND lease_owner = ? RETURNING id, cancel_requested",
                (_to_epoch(lease_until), worker_id),
            ).fetchall()
            return [(row[0], bool(row[1])) for row in rows]

        return await self._write(write)

    async def _update(self, change: Change) -> Job | None:
        columns = _values_to_columns(change.values)
        # A change with no values only records its event; SQL needs one assignment anyway.
        assignments = ", ".join(f"{name} = ?" for name in columns) or "seq = seq"
        sql = f"UPDATE jobs SET {assignments} WHERE id = ? AND status = ?"
        params: list[Any] = [*columns.values(), change.job_id, change.expect_status.value]
        if change.expect_owner is not None:
            sql += " AND lease_owner = ?"
            params.append(change.expect_owner)

        def write(db: sqlite3.Connection) -> Job | None:
            row = db.execute(f"{sql} RETURNING {_COLUMNS}", tuple(params)).fetchone()
            if row is None:
                return None
            job = _job_from_row(row)
            if change.event is not None:
                self._record(db, job, change.event)
            return job

        return await self._write(write)

    async def _running_jobs(self) -> list[Job]:
        rows = await self._fetchall(f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running'")
        return [_job_from_row(row) for row in rows]

    async def _purge(self, finished_before: datetime, tombstones_before: datetime) -> int:
        cutoff = _to_epoch(finished_before)

        def write(db: sqlite3.Connection) -> int:
            db.execute(
                "INSERT OR REPLACE INTO purged_jobs (id, purged_at) SELECT id, ? FROM jobs "
                "WHERE finished_at IS NOT NULL AND finished_at < ?",
                (_to_epoch(utcnow()), cutoff),
            )
            db.execute(
                "DELETE FROM events WHERE job_id IN (SELECT id FROM jobs "
                "WHERE finished_at IS NOT NULL AND finished_at < ?)",
                (cutoff,),
            )
            purged = db.execute(
                "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)
            ).rowcount
            db.execute(
                "DELETE FROM purged_jobs WHERE purged_at < ?", (_to_epoch(tombstones_before),)
            )
            db.execute(
                "DELETE FROM workers WHERE heartbeat_at < ?", (_to_epoch(tombstones_before),)
            )
            return int(purged)

        return await self._write(write)

    def _record(self, db: sqlite3.Connection, job: Job, kind: EventKind) -> None:
        # NOTE: this runs on the writer thread. ``describe`` only reads the estimator's
        # state, which the event loop replaces whole (the plan) or one entry at a time
        # (learned durations), so a concurrent read gets either the old or the new value.
        data = self.describe(job)
        at = utcnow()
        cursor = db.execute(
            "INSERT INTO events (job_id, kind, at, data) VALUES (?, ?, ?, ?)",
            (job.id, kind.value, _to_epoch(at), json.dumps(data, separators=(",", ":"))),
        )
        assert cursor.lastrowid is not None
        self._batch_events.append(Event(cursor.lastrowid, job.id, kind, at, data))


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


def _job_from_row(row: sqlite3.Row) -> Job:
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


def _event_from_row(row: sqlite3.Row) -> Event:
    return Event(
        id=int(row[0]),
        job_id=row[1],
        kind=EventKind(row[2]),
        at=_from_epoch(row[3]) or utcnow(),
        data=json.loads(row[4]),
    )
