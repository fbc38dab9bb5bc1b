"""The fault suite: a real `soundforge serve` process meets the faults an unlucky operator meets.

Each scenario runs the server as its own process (so it can be killed), over real HTTP, on a store that really fails:
- a full disk: the store on a small tmpfs filled to the last byte;
- a read-only store: the same tmpfs remounted read-only while the server runs;
- a locked index: another process holding SQLite's write lock past the index's timeout;
- kill -9 mid-job, then a restart on the same store.
After each: no job stuck in `queued`/`running`, nothing lost (finished jobs and their audio intact), nothing
half-written (no temp files, every `job.json` whole), the server still serving, and the operator told why
(`/healthz` and the job's error). Mounting a tmpfs needs root and mount rights (CI's machines have both); without
them the two disk scenarios are skipped, saying so, and the others still run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from ..helpers import hears_ctrl_c  # noqa: E402

#: Statuses a job may not be left in once the server has settled.
UNSETTLED = ("queued", "running")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`soundforge serve` in a child process, with its log kept for the assertions."""

    def __init__(self, store: Path, log: Path, *, index: str | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "soundforge.cli", "serve", "--port", str(self.port), "--store", str(store)]
        command += ["--workers", "1", "--engine", "inline"]
        if index is not None:
            command += ["--index", index]
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=os.environ.copy(), preexec_fn=hears_ctrl_c
            )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/healthz").status_code in (200, 503):
                    return
            time.sleep(0.1)
        raise AssertionError(f"the server did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def submit(self, prompt: str, duration: float = 1, seed: int = 1) -> httpx.Response:
        body = {"request": {"prompt": prompt, "duration": duration, "seed": seed}, "provider": "synth"}
        return self.http.post("/v1/generations", json=body)

    def settled(self, job_id: str, timeout: float = 60) -> dict:
        """The job's record once it is neither queued nor running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.http.get(f"/v1/generations/{job_id}").json()
            if record["status"] not in UNSETTLED:
                return record
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} is stuck: {record}")

    def health(self) -> httpx.Response:
        return self.http.get("/healthz")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.health().status_code != 200:
            assert time.monotonic() < deadline, self.health().text
            time.sleep(0.1)

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def kill(self) -> None:
        self.http.close()
        self.process.kill()  # SIGKILL: no handler runs, nothing is flushed
        self.process.wait(10)


@contextlib.contextmanager
def serving(store: Path, log: Path, **kwargs: str) -> Iterator[Server]:
    server = Server(store, log, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def assert_nothing_half_written(store: Path) -> None:
    """No temp file anywhere in the store, and every job record whole and settled."""
    leftovers = [p for p in store.rglob("*") if p.name.endswith((".tmp", ".part")) or p.name.startswith(".")]
    assert leftovers == [], leftovers
    for record_file in store.glob("*/job.json"):
        record = json.loads(record_file.read_text())  # whole JSON, never a cut file
        assert record["status"] not in UNSETTLED, record


def assert_delivered(server: Server, job_id: str) -> None:
    """A finished job's record and audio are still served."""
    record = server.http.get(f"/v1/generations/{job_id}").json()
    assert record["status"] == "succeeded", record
    audio = server.http.get(f"/v1/generations/{job_id}/audio")
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own, unmounted at the end; skipped where this process may not mount."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the full-disk and read-only scenarios need one")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "soundforge-faults", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Write a file until the disk has no byte left, then give `leave` bytes back; its path, to free the space."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as handle:
        for size in (1 << 16, 1):  # blocks, then the last few bytes
            with contextlib.suppress(OSError):
                while handle.write(b"\0" * size):
                    pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_a_full_disk_fails_the_jobs_it_hits_says_why_and_the_server_comes_back(small_disk, tmp_path) -> None:
    store = small_disk / "jobs"
    with serving(store, tmp_path / "server.log") as server:
        done = server.submit("before the disk fills", seed=1).json()["id"]
        assert server.settled(done)["status"] == "succeeded"
        # Room for a job's record, not for its audio (20 s of 16-bit stereo: 3.5 MB): the job fails with the reason.
        filler = fill(small_disk, leave=256 * 1024)
        hit_id = server.submit("the audio does not fit", duration=20, seed=2).json()["id"]
        hit = server.settled(hit_id)
        assert hit["status"] == "failed" and "No space left" in hit["error"]["message"], hit
        assert hit["license"]["id"] == "CC0-1.0"  # what was made is still described
        # No room at all: a new job is refused whole (nothing queued, nothing charged), typed, with the reason.
        fill(small_disk)
        answer = server.submit("while the disk is full", seed=3)
        error = answer.json()["error"]
        assert answer.status_code == 503 and error["code"] == "store_unavailable", answer.text
        assert "No space left" in error["message"] and "nothing was queued" in error["hint"]
        health = server.health()
        assert health.status_code == 503 and "No space left" in health.text  # the operator sees why
        assert_delivered(server, done)  # still serving what it has
        filler.unlink()
        server.wait_healthy()
        after = server.submit("after the space came back", seed=4).json()["id"]
        assert server.settled(after)["status"] == "succeeded"
    assert_nothing_half_written(store)
    assert "Traceback" not in server.output()


def test_a_store_made_read_only_while_serving_fails_jobs_with_the_reason_and_recovers(small_disk, tmp_path) -> None:
    # The index lives elsewhere: Linux will not remount a file system read-only while a file on it is open for
    # writing (SQLite keeps its index open), as a store on a mount of its own turning read-only would be.
    store = small_disk / "jobs"
    with serving(store, tmp_path / "server.log", index=f"sqlite:///{tmp_path / 'index.sqlite'}") as server:
        done = server.submit("before", seed=1).json()["id"]
        assert server.settled(done)["status"] == "succeeded"
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        try:
            answer = server.submit("while read-only", seed=2)
            error = answer.json()["error"]
            assert answer.status_code == 503 and error["code"] == "store_unavailable", answer.text
            assert "Read-only file system" in error["message"]
            health = server.health()
            assert health.status_code == 503 and "Read-only file system" in health.text
            assert_delivered(server, done)
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        server.wait_healthy()
        after = server.submit("writable again", seed=3).json()["id"]
        assert server.settled(after)["status"] == "succeeded"
    assert_nothing_half_written(store)
    assert "Traceback" not in server.output()


def test_an_index_locked_past_its_timeout_fails_the_job_not_the_server(tmp_path) -> None:
    store = tmp_path / "jobs"
    index_file = tmp_path / "index.sqlite"
    with serving(store, tmp_path / "server.log", index=f"sqlite:///{index_file}?timeout=1") as server:
        done = server.submit("before the lock", seed=1).json()["id"]
        assert server.settled(done)["status"] == "succeeded"
        locker = sqlite3.connect(index_file, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            answer = server.submit("while locked", seed=2)
            error = answer.json()["error"]
            assert answer.status_code == 503 and error["code"] == "store_unavailable", answer.text
            assert "database is locked" in error["message"]
            health = server.health()
            assert health.status_code == 503 and "database is locked" in health.text
            assert_delivered(server, done)  # reads do not wait for the writer (WAL)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        server.wait_healthy()
        after = server.submit("unlocked", seed=3).json()["id"]
        assert server.settled(after)["status"] == "succeeded"
        assert_delivered(server, done)
    assert_nothing_half_written(store)
    assert "Traceback" not in server.output()


def test_kill_9_mid_job_loses_nothing_finished_and_leaves_nothing_stuck(tmp_path) -> None:
    store = tmp_path / "jobs"
    server = Server(store, tmp_path / "server.log")
    try:
        done = server.submit("finished before the kill", seed=1).json()["id"]
        assert server.settled(done)["status"] == "succeeded"
        long_job = server.submit("cut short by kill -9", duration=600, seed=2).json()["id"]
        deadline = time.monotonic() + 60
        while server.http.get(f"/v1/generations/{long_job}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        server.kill()
    with serving(store, tmp_path / "server.log") as again:
        cut = again.settled(long_job, timeout=5)  # failed at start, not left running
        assert cut["status"] == "failed" and cut["error"]["message"], cut
        assert_delivered(again, done)
        after = again.submit("after the restart", seed=3).json()["id"]
        assert again.settled(after)["status"] == "succeeded"
    assert_nothing_half_written(store)
    assert not (store / long_job / "audio.wav").exists()
