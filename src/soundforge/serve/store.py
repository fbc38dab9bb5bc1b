"""The job store of `soundforge serve`: each job's record and audio in a folder of files, found through an index.

The files live in a local folder or on any fsspec URL (`s3://bucket/jobs`, `gs://…`, `az://…`), one folder per
job: `job.json` (the record) and the audio, each written whole or not at all. The index (`index.py`: SQLite on one
node, PostgreSQL for several) holds every job's latest record, so that any server replica answers for any job and a
restart finds unfinished jobs without listing the bucket.

A restart keeps finished results. Jobs that were queued or running when their server stopped are marked failed,
never left "running": at once by a server that runs alone (`shared=False`), or, where several replicas share the
store, once the replica that ran them has missed its heartbeats for the lease time. Jobs older than the retention
period are deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..output.location import OutputLocation
from .index import JobIndex

ACTIVE = ("queued", "running")
RECORD_FILE = "job.json"
#: How often a shared store writes a running job's progress into the index (its status changes go at once).
PROGRESS_WRITE_S = 0.5


def _failure(code: str, message: str) -> dict[str, str]:
    return {"code": code, "type": "".join(word.title() for word in code.split("_")), "message": message}


#: A file written and removed when a store opens, to find a store that cannot be written before any job.
_WRITE_CHECK = ".soundforge-write-check"


class JobStore:
    """Job records and result files under `root`, indexed in `index`.

    Args:
        root: a local folder or an fsspec URL.
        retention_s: jobs older than this are deleted at start.
        index: `sqlite:///PATH` or `postgresql://USER@HOST/DB`; default: `index.sqlite` in a local `root`.
        shared: several replicas use this store: running state goes into the index, and a replica fails only the
            jobs of owners whose heartbeat is older than `lease_s` (`sweep`), not every unfinished job at start.
        owner: this replica's name in the index (default: a fresh one).
        lease_s: how long an owner may miss heartbeats before its unfinished jobs are failed.
        index_password_env: the environment variable holding a PostgreSQL index's password.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        retention_s: float = 7 * 24 * 3600,
        *,
        index: str | None = None,
        shared: bool = False,
        owner: str | None = None,
        lease_s: float = 30.0,
        index_password_env: str = "PGPASSWORD",
    ) -> None:
        self.files = OutputLocation(root)
        try:  # a store this user cannot write is refused at start (it was a traceback), not at the first job
            self.files.makedirs()
            self._check_files()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write the job store at {self.files.url}: {exc.strerror or exc}",
                hint="give a folder (or fsspec URL) this user can write: --store or [serve] store",
            ) from None
        if index is None:
            if self.files.folder is None:
                raise ConfigurationError(
                    f"a job store at {self.files.url} needs [serve] index: sqlite:///PATH on one node, "
                    "postgresql://USER@HOST/DB where several share it"
                )
            index = f"sqlite:///{self.files.folder.resolve() / 'index.sqlite'}"
        self.index = JobIndex(index, password_env=index_password_env)
        self.retention_s = retention_s
        self.shared = shared
        self.owner = owner or f"{os.uname().nodename if hasattr(os, 'uname') else 'host'}-{uuid.uuid4().hex[:12]}"
        self.lease_s = lease_s
        self._memory: dict[str, dict[str, Any]] = {}  # write-through: polls of this replica's jobs read memory
        self._indexed: dict[str, tuple[str, float]] = {}  # job id -> (status, time) last written to the index

    @property
    def root(self) -> Path:
        """The local folder of the store (a remote store has none: `files` reaches it)."""
        folder = self.files.folder
        if folder is None:
            raise ConfigurationError(f"the job store at {self.files.url} is not a local folder")
        return folder

    def new_id(self) -> str:
        """A fresh job id (url-safe)."""
        return uuid.uuid4().hex

    @staticmethod
    def name(job_id: str, file: str) -> str:
        """A job's file, relative to the store (ids are hex, so no path tricks get through)."""
        if not job_id.isalnum():
            raise KeyError(job_id)
        return f"{job_id}/{file}"

    def folder(self, job_id: str) -> Path:
        """The local folder of a job."""
        return self.root / self.name(job_id, "").rstrip("/")

    def target(self, job_id: str, file: str) -> str:
        """Where a job's file is: a local path or a URL, what an engine writes to."""
        name = self.name(job_id, file)
        return self.files.path(name) if self.files.is_local else f"{self.files.url.rstrip('/')}/{name}"

    # --- records ---
    def save(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write a job record (its file, then its index row); returns the stored snapshot (with `updated_at`).

        Records are snapshots, never changed in place: a request may be serialising the previous one on the
        event loop while a service thread writes the next.
        """
        snapshot = {**record, "updated_at": time.time()}
        job_id = snapshot["id"]
        self.files.write(self.name(job_id, RECORD_FILE), json.dumps(snapshot, separators=(",", ":")).encode("utf-8"))
        self.index.put(snapshot, self.owner)
        self._indexed[job_id] = (snapshot.get("status", ""), time.monotonic())
        self._memory[job_id] = snapshot
        return snapshot

    def _check_files(self) -> None:
        self.files.write(_WRITE_CHECK, b"")
        self.files.remove(_WRITE_CHECK)

    def check_writable(self) -> None:
        """Write (and remove) a file and an index row: raises what a job's save would while the store cannot
        take writes (a full disk, a read-only store, an index locked past its timeout)."""
        self._check_files()
        self.index.check_writable()

    def discard(self, job_id: str) -> None:
        """Remove what a job that was never admitted may have left (its folder, its row), as far as the store lets."""
        self._memory.pop(job_id, None)
        self._indexed.pop(job_id, None)
        with contextlib.suppress(Exception):
            self.index.delete(job_id)
        with contextlib.suppress(OSError):
            self.files.remove_folder(self.name(job_id, "").rstrip("/"))

    def keep(self, record: dict[str, Any]) -> dict[str, Any]:
        """Hold a record in memory only (the store could not take it): readers see it until it is saved."""
        snapshot = {**record, "updated_at": time.time()}
        self._memory[snapshot["id"]] = snapshot
        return snapshot

    def remember(self, record: dict[str, Any]) -> dict[str, Any]:
        """Replace a record for states a restart would not need (running, progress): in memory, and in a shared
        store in the index too, where other replicas read it (progress at most every `PROGRESS_WRITE_S`)."""
        snapshot = {**record, "updated_at": time.time()}
        job_id = snapshot["id"]
        self._memory[job_id] = snapshot
        if self.shared:
            status, at = self._indexed.get(job_id, ("", 0.0))
            now = time.monotonic()
            if status != snapshot.get("status") or now - at >= PROGRESS_WRITE_S:
                self.index.put(snapshot, self.owner)
                self._indexed[job_id] = (snapshot.get("status", ""), now)
        return snapshot

    def load(self, job_id: str) -> dict[str, Any]:
        """A job record; KeyError when there is none."""
        if job_id in self._memory:
            return self._memory[job_id]
        name = self.name(job_id, RECORD_FILE)
        found = self.index.get(job_id)
        if found is not None:
            return found
        try:
            data: dict[str, Any] = json.loads(self.files.read_bytes(name))
            return data
        except (OSError, ValueError):
            raise KeyError(job_id) from None

    def newest(self, limit: int, offset: int = 0) -> list[dict[str, Any]]:
        """Job records, newest first (a page of the index), each as this replica last knew it."""
        return [self._memory.get(record["id"], record) for record in self.index.newest(limit, offset)]

    # --- files ---
    def exists(self, job_id: str, file: str) -> bool:
        """Whether a job has that file."""
        return self.files.exists(self.name(job_id, file))

    def read(self, job_id: str, file: str) -> bytes:
        """A job file's bytes."""
        return self.files.read_bytes(self.name(job_id, file))

    def write(self, job_id: str, file: str, data: bytes) -> None:
        """Write a job file whole (temp name, then a rename)."""
        self.files.write(self.name(job_id, file), data)

    def size(self, job_id: str, file: str) -> int:
        """A job file's size in bytes."""
        return self.files.size(self.name(job_id, file))

    def chunks(self, job_id: str, file: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """A job file's bytes in pieces, read as they are asked for (a download streams from the store)."""
        with self.files.open(self.name(job_id, file)) as handle:
            while piece := handle.read(chunk_bytes):
                yield piece

    # --- life cycle ---
    def recover(self) -> int:
        """At start: drop expired jobs and fail the unfinished ones no server runs any more; returns how many."""
        now = time.time()
        if self.files.is_local:
            # Records the index does not know (a store from before the index, a crash between file and row).
            for name in self.files.glob(f"*/{RECORD_FILE}"):
                job_id = name.split("/", 1)[0]
                if job_id.isalnum() and self.index.get(job_id) is None:
                    try:
                        record = json.loads(self.files.read_bytes(name))
                    except (OSError, ValueError):
                        continue
                    if isinstance(record, dict) and record.get("id") == job_id:
                        self.index.put(record, None)
        for job_id in self.index.created_before(now - self.retention_s):
            self.files.remove_folder(self.name(job_id, "").rstrip("/"))
            self.index.delete(job_id)
            self._memory.pop(job_id, None)
        if self.shared:
            return self.sweep()
        failed = 0
        for record, _ in self.index.active():
            self.save(
                {
                    **record,
                    "status": "failed",
                    "error": _failure("server_restarted", "the server stopped before this job finished"),
                }
            )
            failed += 1
        return failed

    def sweep(self) -> int:
        """A shared store's heartbeat: this replica is alive; jobs of owners silent for `lease_s` (or of none)
        are failed. Returns how many were failed."""
        now = time.time()
        self.index.beat(self.owner, now)
        seen = self.index.seen()
        failed = 0
        for record, owner in self.index.active():
            if owner == self.owner or (owner is not None and now - seen.get(owner, 0.0) <= self.lease_s):
                continue
            self.save(
                {
                    **record,
                    "status": "failed",
                    "error": _failure(
                        "server_restarted", "the server replica running this job stopped before it finished"
                    ),
                }
            )
            failed += 1
        return failed

    def close(self) -> None:
        """A clean stop: this replica's heartbeat row goes (its jobs were ended), the index is closed."""
        if self.shared:
            self.index.forget_owner(self.owner)
        self.index.close()
