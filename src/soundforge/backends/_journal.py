"""The cloud job journal: a remote job is written down before soundforge waits for it, so nothing paid is lost.

A cloud call that gets a job id (a Replicate prediction, a fal request) records it here under the request's key
before polling. If the process then dies, is interrupted or gives up waiting, the job is still there: the next call
for the same request (same provider, model and request, so the same key) takes that job over instead of submitting a
new one, and downloads the result that was already paid for. A job is taken over only when nobody waits for it any
more (its process is gone, or its call ended with a timeout): two calls for the same request at the same time each
get their own job. The entry is removed once the job's result is delivered or the job has ended without one.
`soundforge jobs` lists what is pending.

The same file keeps the paid answers of APIs that answer in one response (`_answers.PaidAnswers`): rows of kind
"answer" whose body files lie in a folder beside it, so an answer that was billed and then failed (a decode error, a
full disk, a crash) is delivered by the next call instead of being paid for again.

One small SQLite file (default: the user data dir's `cloud-jobs.sqlite`; setting `job_journal`, "off" for none),
safe across threads and processes (one connection per thread, kept open: closing the last one checkpoints the
write-ahead log, which would make every write cost a millisecond more).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..request import content_key

FILE_NAME = "cloud-jobs.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    request TEXT NOT NULL,
    data TEXT NOT NULL,
    pid INTEGER NOT NULL,
    released INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (key)
"""
_COLUMNS = "job_id, key, provider, model, created, request, data, pid, released"


def job_key(provider: str, model: str, record: dict[str, Any]) -> str:
    """The idempotency key of a call: the provider, the model and the request's record (audio by its hash)."""
    return content_key({"provider": provider, "model": model, "request": record})


@dataclass(frozen=True)
class PendingJob:
    """A remote job that was submitted and whose result was not delivered yet."""

    job_id: str
    key: str
    provider: str
    model: str
    created: float
    request: dict[str, Any]
    data: dict[str, Any]
    pid: int
    released: bool

    @property
    def kind(self) -> str:
        """ "job" (a remote job to collect) or "answer" (a paid answer kept on disk, `_answers.PaidAnswers`)."""
        return str(self.data.get("kind", "job"))

    @property
    def failed(self) -> str | None:
        """Why delivering a kept answer failed last time: such an answer is collected only when asked for by id
        (`soundforge jobs --resume`), never taken over by a call on its own (it would fail the same way)."""
        reason = self.data.get("failed")
        return str(reason) if reason is not None else None

    @property
    def waited_for(self) -> bool:
        """Whether a live call is still waiting for this job (then nobody else may take it over)."""
        return not self.released and _alive(self.pid)


def default_path() -> Path:
    """The journal's default place: the user data dir (a test's or a user's own home)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("soundforge")) / FILE_NAME


class CloudJobJournal:
    """Pending remote jobs by request key."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # Threads opening their first connections at once on a new journal race to switch it to WAL and create the
        # schema, and one of them gets "database is locked" at once (no busy wait for that switch): one at a time.
        self._setup = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        with self._setup:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            # WAL with synchronous=NORMAL: a commit survives the process being killed (what the journal is for)
            # without an fsync per write.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            self._local.connection = connection
            return connection

    def record(
        self, key: str, provider: str, model: str, job_id: str, request: dict[str, Any], data: dict[str, Any]
    ) -> None:
        """Write a submitted job down (before waiting for it), as this process's."""
        db = self._connect()
        db.execute(
            f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (
                job_id,
                key,
                provider,
                model,
                time.time(),
                json.dumps(request),
                json.dumps(data),
                os.getpid(),
            ),
        )

    def claim(self, key: str, kind: str = "job") -> PendingJob | None:
        """Take over an entry of this kind for this key that nobody waits for any more (oldest first), or None.
        An answer whose delivery failed is left alone (see `PendingJob.failed`)."""
        db = self._connect()
        # A read first: almost every call finds nothing, and needs no write lock to learn it.
        if db.execute("SELECT 1 FROM jobs WHERE key = ? LIMIT 1", (key,)).fetchone() is None:
            return None
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE key = ? ORDER BY created", (key,)).fetchall()
            job = next((j for j in map(_job, rows) if j.kind == kind and not j.failed and not j.waited_for), None)
            if job is not None:
                db.execute("UPDATE jobs SET pid = ?, released = 0 WHERE job_id = ?", (os.getpid(), job.job_id))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return job

    def release(self, job_id: str) -> None:
        """The call waiting for this job stopped waiting (it timed out): the next call may take the job over."""
        db = self._connect()
        db.execute("UPDATE jobs SET released = 1 WHERE job_id = ?", (job_id,))

    def update(self, job_id: str, data: dict[str, Any]) -> None:
        """Replace an entry's data (a kept answer's list of reply files grows as the call goes on)."""
        db = self._connect()
        db.execute("UPDATE jobs SET data = ? WHERE job_id = ?", (json.dumps(data), job_id))

    def fail(self, job_id: str, reason: str) -> None:
        """Delivering this kept answer failed: keep it for the user (`soundforge jobs`), out of automatic reuse."""
        db = self._connect()
        row = db.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is not None:
            data = {**json.loads(row[0]), "failed": reason}
            db.execute("UPDATE jobs SET data = ?, released = 1 WHERE job_id = ?", (json.dumps(data), job_id))

    def retry(self, job_id: str) -> None:
        """Make a failed kept answer collectable again (the user asked for it by id)."""
        db = self._connect()
        row = db.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is not None:
            data = {k: v for k, v in json.loads(row[0]).items() if k != "failed"}
            db.execute("UPDATE jobs SET data = ?, released = 1 WHERE job_id = ?", (json.dumps(data), job_id))

    def forget(self, job_id: str) -> None:
        """The job's result was delivered, or the job ended without one (a kept answer's files go with it)."""
        db = self._connect()
        row = db.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        for reply in json.loads(row[0]).get("replies", []) if row is not None else []:
            Path(reply["file"]).unlink(missing_ok=True)

    def answers_folder(self) -> Path:
        """Where kept answers' bodies lie: a folder beside the journal file."""
        return self.path.with_name(f"{self.path.stem}-answers")

    def all(self) -> list[PendingJob]:
        """Every pending job, oldest first."""
        if not self.path.exists():
            return []
        db = self._connect()
        rows = db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY created").fetchall()
        return [_job(row) for row in rows]


def _job(row: tuple[Any, ...]) -> PendingJob:
    job_id, key, provider, model, created, request, data, pid, released = row
    return PendingJob(
        job_id, key, provider, model, created, json.loads(request), json.loads(data), int(pid), bool(released)
    )


def _alive(pid: int) -> bool:
    """Whether a process of this machine is still running."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    except OSError:
        return False
    return True
