"""The run journal: a SQLite file (standard library `sqlite3`) recording each manifest row's state.

Only the process driving a run writes it (workers, local or on Ray, never touch it), so resume works the same
whatever ran the rows.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

JOURNAL = ".soundforge-batch.sqlite"


class Journal:
    """The SQLite record of a run, one row per manifest row (standard library `sqlite3`)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a crash of this process (what resume needs) without an fsync per row.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS rows (name TEXT PRIMARY KEY, fingerprint TEXT, state TEXT, "
            "output TEXT, error TEXT, license TEXT, attempts INTEGER DEFAULT 0, updated REAL)"
        )

    def states(self) -> dict[str, tuple[str, str]]:
        """Every row the journal has seen: name -> (state, fingerprint), read in one query (fast resume)."""
        return {name: (state, fp) for name, state, fp in self.db.execute("SELECT name, state, fingerprint FROM rows")}

    def mark(
        self,
        name: str,
        fingerprint: str,
        state: str,
        *,
        output: str | None = None,
        error: str | None = None,
        license: str | None = None,
    ) -> None:
        """Record a row's new state (committed at once)."""
        self.db.execute(
            "INSERT INTO rows (name, fingerprint, state, output, error, license, attempts, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "state = excluded.state, output = COALESCE(excluded.output, rows.output), error = excluded.error, "
            "license = COALESCE(excluded.license, rows.license), "
            "attempts = rows.attempts + (excluded.state = 'running'), updated = excluded.updated",
            (name, fingerprint, state, output, error, license, 1 if state == "running" else 0, time.time()),
        )

    def close(self) -> None:
        """Close the database."""
        self.db.close()
