"""On-disk job store of `soundforge serve`: one folder per job with `job.json` and the audio, written atomically.

A restart keeps finished results; jobs that were queued or running when the server stopped are marked
failed (never left "running"); jobs older than the retention period are deleted.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from ..audio import write_atomic

ACTIVE = ("queued", "running")


class JobStore:
    """Job records and result files under `root`."""

    def __init__(self, root: str | Path, retention_s: float = 7 * 24 * 3600) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_s
        self._memory: dict[str, dict[str, Any]] = {}  # write-through: polls read memory, restarts read disk

    def new_id(self) -> str:
        """A fresh job id (url-safe)."""
        return uuid.uuid4().hex

    def folder(self, job_id: str) -> Path:
        """The folder of a job (ids are hex, so no path tricks get through)."""
        if not job_id.isalnum():
            raise KeyError(job_id)
        return self.root / job_id

    def save(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write a job record atomically; returns the stored snapshot (with `updated_at`).

        Records are snapshots, never changed in place: a request may be serialising the previous one on the
        event loop while a service thread writes the next.
        """
        snapshot = {**record, "updated_at": time.time()}
        folder = self.folder(snapshot["id"])
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "job.json", json.dumps(snapshot, separators=(",", ":")).encode("utf-8"), overwrite=True)
        self._memory[snapshot["id"]] = snapshot
        return snapshot

    def remember(self, record: dict[str, Any]) -> dict[str, Any]:
        """Replace a record in memory only, for states a restart would not need (running, progress)."""
        snapshot = {**record, "updated_at": time.time()}
        self._memory[snapshot["id"]] = snapshot
        return snapshot

    def load(self, job_id: str) -> dict[str, Any]:
        """A job record; KeyError when there is none."""
        if job_id in self._memory:
            return self._memory[job_id]
        try:
            data: dict[str, Any] = json.loads((self.folder(job_id) / "job.json").read_text("utf-8"))
            return data
        except (OSError, ValueError):
            raise KeyError(job_id) from None

    def recover(self) -> int:
        """At start: fail jobs a previous process left unfinished and drop expired ones; returns failed count."""
        failed = 0
        now = time.time()
        for path in self.root.glob("*/job.json"):
            try:
                record = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if now - record.get("created_at", now) > self.retention_s:
                shutil.rmtree(path.parent, ignore_errors=True)
                continue
            if record.get("status") in ACTIVE:
                self.save(
                    {
                        **record,
                        "status": "failed",
                        "error": {
                            "code": "server_restarted",
                            "type": "ServerRestarted",
                            "message": "the server stopped before this job finished",
                        },
                    }
                )
                failed += 1
        return failed
