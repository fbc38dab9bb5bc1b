"""The job index of `soundforge serve`: one row per job (its status, owner and record) in a database.

The records and audio live in the store's files (`store.py`); the index is what finds them fast and what every
server replica sees at once: a poll answered by any replica reads the job's latest state here, a restarted
server finds the jobs left unfinished without listing a bucket, and expired jobs are found by age.

Two databases, chosen by URL (`[serve] index`):
- `sqlite:///path/index.sqlite`: the standard library's SQLite, for one node (WAL mode: readers do not wait
  for the writer; several processes on one machine share the file). `?timeout=SECONDS` (default 30) is how long
  a write waits for another process's lock before the write fails (the job then fails with `store_error`).
- `postgresql://user@host:5432/db`: PostgreSQL (PostgreSQL licence, permissive), for replicas on several nodes,
  through pg8000 (BSD-3-Clause, pure Python, maintained; psycopg is LGPL-3.0). The password comes from the
  environment variable `[serve] index_password_env` names (default `PGPASSWORD`), never from the URL.

Each replica that runs jobs is an *owner*: it writes a heartbeat into the index, and a job whose owner has not
been seen for the lease time is failed by whichever replica looks next (`JobStore.sweep`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigurationError
from ..secrets import register

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS soundforge_jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, owner TEXT, "
    "created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, record TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS soundforge_jobs_status ON soundforge_jobs (status)",
    "CREATE INDEX IF NOT EXISTS soundforge_jobs_created ON soundforge_jobs (created_at)",
    "CREATE TABLE IF NOT EXISTS soundforge_owners (name TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS soundforge_spent (token TEXT PRIMARY KEY, amount DOUBLE PRECISION NOT NULL)",
)


class JobIndex:
    """Job rows and owner heartbeats in SQLite or PostgreSQL; thread-safe (one connection, one lock).

    Statements are written once with `?` placeholders and translated for PostgreSQL's driver.
    """

    def __init__(self, url: str, *, password_env: str = "PGPASSWORD") -> None:
        self.url = url
        self._lock = threading.Lock()
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            path = unquote(parts.path)
            if not path or path == "/":
                raise ConfigurationError(f"[serve] index {url!r} names no file: use sqlite:///path/to/index.sqlite")
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            timeout = _sqlite_timeout(url, parse_qs(parts.query))
            connection = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._connection: Any = connection
            self._postgres = False
        elif parts.scheme in ("postgresql", "postgres"):
            self._reconnect: Callable[[], Any] = functools.partial(_connect_postgres, parts, password_env)
            self._connection = self._reconnect()
            self._postgres = True
        else:
            raise ConfigurationError(
                f"[serve] index must be sqlite:///PATH (one node) or postgresql://USER@HOST/DB (several), "
                f"not {parts.scheme or url!r}"
            )
        for statement in _SCHEMA:
            self._execute(statement)

    def __repr__(self) -> str:
        parts = urlsplit(self.url)
        return f"JobIndex({parts.scheme}://{parts.hostname or ''}{parts.path})"

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._postgres:
                return self._execute_postgres(sql.replace("?", "%s"), tuple(params))
            return [tuple(row) for row in self._connection.execute(sql, tuple(params)).fetchall()]

    def _execute_postgres(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One statement in its own transaction; a connection the server dropped (a restart, a failover) is
        opened again once and the statement retried: every statement here is an idempotent upsert, read or
        delete."""
        for attempt in (0, 1):
            try:
                cursor = self._connection.cursor()
                cursor.execute(sql, params)
                rows = cursor.fetchall() if cursor.description else []
                self._connection.commit()
                return [tuple(row) for row in rows]
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self._connection.rollback()
                if attempt or not _connection_lost(exc):
                    raise
                with contextlib.suppress(Exception):
                    self._connection.close()
                self._connection = self._reconnect()
        raise AssertionError("unreachable")

    def put(self, record: dict[str, Any], owner: str | None = None) -> None:
        """Insert or replace a job's row (its record as JSON)."""
        self._execute(
            "INSERT INTO soundforge_jobs (id, status, owner, created_at, updated_at, record) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status, owner = excluded.owner, "
            "updated_at = excluded.updated_at, record = excluded.record",
            (
                record["id"],
                record.get("status", "queued"),
                owner,
                float(record.get("created_at") or time.time()),
                float(record.get("updated_at") or time.time()),
                json.dumps(record, separators=(",", ":")),
            ),
        )

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A job's record, or None."""
        rows = self._execute("SELECT record FROM soundforge_jobs WHERE id = ?", (job_id,))
        return _record(rows[0][0]) if rows else None

    def delete(self, job_id: str) -> None:
        """Forget a job."""
        self._execute("DELETE FROM soundforge_jobs WHERE id = ?", (job_id,))

    def active(self) -> list[tuple[dict[str, Any], str | None]]:
        """Every queued or running job, with its owner."""
        rows = self._execute("SELECT record, owner FROM soundforge_jobs WHERE status IN ('queued', 'running')")
        return [(_record(text), owner) for text, owner in rows]

    def newest(self, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Job records, newest first: `limit` of them after skipping `offset` (a page of the history)."""
        rows = self._execute(
            "SELECT record FROM soundforge_jobs ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (int(limit), int(offset)),
        )
        return [_record(row[0]) for row in rows]

    def created_before(self, moment: float) -> list[str]:
        """Ids of the jobs created before `moment` (seconds since the epoch)."""
        return [row[0] for row in self._execute("SELECT id FROM soundforge_jobs WHERE created_at < ?", (moment,))]

    def beat(self, owner: str, now: float | None = None) -> None:
        """Record that `owner` is alive now."""
        self._execute(
            "INSERT INTO soundforge_owners (name, seen_at) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at",
            (owner, time.time() if now is None else now),
        )

    def check_writable(self) -> None:
        """Write and remove a row: raises what a job's write would (a locked index, a full disk) when it cannot."""
        self.beat(_WRITE_CHECK_OWNER)
        self.forget_owner(_WRITE_CHECK_OWNER)

    def seen(self) -> dict[str, float]:
        """When each owner last beat."""
        return {name: float(at) for name, at in self._execute("SELECT name, seen_at FROM soundforge_owners")}

    def forget_owner(self, owner: str) -> None:
        """An owner that stopped cleanly: its heartbeat row goes."""
        self._execute("DELETE FROM soundforge_owners WHERE name = ?", (owner,))

    def add_spent(self, token: str, amount: float) -> None:
        """Count `amount` (USD) as spent by a named token, for good: a restart or another replica reads it back."""
        self._execute(
            "INSERT INTO soundforge_spent (token, amount) VALUES (?, ?) "
            "ON CONFLICT (token) DO UPDATE SET amount = soundforge_spent.amount + excluded.amount",
            (token, float(amount)),
        )

    def spent(self, token: str) -> float:
        """What a named token has spent (USD), every replica and every run of the server counted."""
        rows = self._execute("SELECT amount FROM soundforge_spent WHERE token = ?", (token,))
        return float(rows[0][0]) if rows else 0.0

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()


def _connection_lost(exc: BaseException) -> bool:
    """Whether a database error means the connection is gone (pg8000's InterfaceError, a socket error)."""
    return isinstance(exc, OSError) or type(exc).__name__ == "InterfaceError"


def _record(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    return data


def _connect_postgres(parts: Any, password_env: str) -> Any:
    """A pg8000 connection for a postgresql:// URL; the password only from the environment."""
    if parts.password:
        raise ConfigurationError(
            "[serve] index has a password in its URL: leave it out and put it in the environment variable "
            f"{password_env} ([serve] index_password_env), so that it never lands in a config file or a log"
        )
    try:
        import pg8000.dbapi
    except ImportError:
        raise ConfigurationError("a postgresql:// index needs pg8000: pip install 'soundforge[postgres]'") from None
    password = os.environ.get(password_env) or None
    if password:
        register(password)
    # `?host=/run/postgresql` names the folder of a Unix socket, as libpq reads it.
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    where: dict[str, Any] = (
        {"unix_sock": f"{socket_dir.rstrip('/')}/.s.PGSQL.{parts.port or 5432}"}
        if socket_dir.startswith("/")
        else {"host": parts.hostname or "localhost", "port": parts.port or 5432}
    )
    try:
        return pg8000.dbapi.connect(
            user=unquote(parts.username or "postgres"),
            password=password,
            database=unquote(parts.path.lstrip("/")) or None,
            timeout=30,
            **where,
        )
    except Exception as exc:
        raise ConfigurationError(
            f"cannot reach the PostgreSQL index at {where.get('unix_sock') or where.get('host')}: {exc}"
        ) from None


#: The owner row `check_writable` writes and removes (never a replica's name: those carry a random suffix).
_WRITE_CHECK_OWNER = "soundforge-write-check"
#: Seconds a SQLite write waits for another connection's lock by default (`sqlite:///PATH?timeout=SECONDS`).
SQLITE_TIMEOUT = 30.0


def _sqlite_timeout(url: str, query: dict[str, list[str]]) -> float:
    """The `timeout` of a SQLite index URL; a ConfigurationError for anything else in its query."""
    unknown = sorted(set(query) - {"timeout"})
    if unknown:
        raise ConfigurationError(f"[serve] index {url!r}: unknown option {unknown[0]!r} (a SQLite index takes timeout)")
    if "timeout" not in query:
        return SQLITE_TIMEOUT
    try:
        timeout = float(query["timeout"][-1])
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 3600:
        raise ConfigurationError(
            f"[serve] index {url!r}: timeout must be seconds between 0 and 3600, not {query['timeout'][-1]!r}"
        )
    return timeout
