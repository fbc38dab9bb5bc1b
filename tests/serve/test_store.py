"""serve's job store on its own: records and audio on a folder or an fsspec URL, found through an index (SQLite,
or PostgreSQL started by the test with pgserver), shared by replicas that fail each other's lost jobs by lease."""

from __future__ import annotations

import asyncio
import fcntl
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from soundforge.client import Client
from soundforge.config import Config
from soundforge.errors import ConfigurationError
from soundforge.request import GenerationRequest
from soundforge.serve.index import JobIndex
from soundforge.serve.jobs import JobManager
from soundforge.serve.settings import ServeSettings
from soundforge.serve.store import JobStore


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server on a Unix socket, started from pgserver's bundled binaries; its URL.

    Its data folder is not under pytest's temporary folder: run as root, pgserver hands the folder to a user of its
    own and opens every folder above it to that user, and any pytest process that starts meanwhile (the other
    worker's subprocesses, the Ray lane, scripts/check-installs' run) closes ``/tmp/pytest-of-root`` again (mode
    0700), so initdb failed now and then. Starting is serialised across workers: as root, pgserver creates its user
    with ``useradd``, which fails in the worker that comes second."""
    pgserver = pytest.importorskip("pgserver")
    data = Path(tempfile.mkdtemp(prefix="soundforge-test-pg-"))
    with open(Path(tempfile.gettempdir()) / "soundforge-test-pg.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = pgserver.get_server(str(data), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    base = request.getfixturevalue("postgres")
    # A database of its own per test: tables from another test never show.
    name = f"t{uuid.uuid4().hex[:12]}"
    admin = JobIndex(base)
    admin._connection.autocommit = True
    admin._execute(f"CREATE DATABASE {name}")
    admin.close()
    return base.replace("/postgres?", f"/{name}?")


def record(job_id: str, status: str = "queued", **extra) -> dict:
    return {"id": job_id, "status": status, "created_at": time.time(), **extra}


def test_replicas_share_one_index_and_a_lost_replica_jobs_fail_once_its_lease_ends(tmp_path, index_url) -> None:
    a = JobStore(tmp_path / "jobs", index=index_url, shared=True, owner="a", lease_s=30)
    b = JobStore(tmp_path / "jobs", index=index_url, shared=True, owner="b", lease_s=30)
    a.sweep(), b.sweep()
    a.save(record("0a"))
    a.remember({**a.load("0a"), "status": "running", "progress": {"phase": "render", "done": 1, "total": 4}})
    seen = b.load("0a")  # b never ran it: it reads the index
    assert seen["status"] == "running" and seen["progress"]["done"] == 1
    assert b.sweep() == 0 and b.load("0a")["status"] == "running"  # a is alive
    a.index.beat("a", time.time() - 31)  # a has been silent for longer than its lease
    assert b.sweep() == 1
    failed = b.load("0a")
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_restarted"
    assert json.loads((tmp_path / "jobs" / "0a" / "job.json").read_text())["status"] == "failed"
    assert b.sweep() == 0  # once
    a.close(), b.close()


def test_a_lone_server_fails_every_unfinished_job_at_start_and_drops_expired_ones(tmp_path, index_url) -> None:
    first = JobStore(tmp_path / "jobs", index=index_url)
    first.save(record("0b", "running"))
    first.save(record("0c", "succeeded"))
    first.save({**record("0d", "succeeded"), "created_at": time.time() - 8 * 86400})
    first.write("0d", "audio.wav", b"RIFF")
    first.close()
    again = JobStore(tmp_path / "jobs", index=index_url)
    assert again.recover() == 1
    assert again.load("0b")["error"]["code"] == "server_restarted" and again.load("0c")["status"] == "succeeded"
    with pytest.raises(KeyError):
        again.load("0d")
    assert not (tmp_path / "jobs" / "0d").exists()
    again.close()


def run_one(manager: JobManager) -> tuple[dict, bytes]:
    async def main() -> tuple[dict, bytes]:
        await manager.start()
        try:
            job_id = await manager.submit(GenerationRequest(prompt="lofi", duration=1, seed=5), "synth")
            assert job_id is not None
            done = await manager.wait(job_id, manager.record(job_id), 60)
            flac = await manager.audio(job_id, done, "flac")
            return done, flac
        finally:
            await manager.close()

    return asyncio.run(main())


@pytest.mark.parametrize("engine", ["inline", "process"])
def test_a_store_on_an_fsspec_url_holds_the_records_and_audio(tmp_path, engine: str) -> None:
    # local:// is fsspec's LocalFileSystem reached through a URL: the same code path as s3:// or gs://, and one
    # that an engine process reaches too (memory:// is one process's own).
    root = f"local://{tmp_path / 'bucket'}" if engine == "process" else f"memory://jobs-{uuid.uuid4().hex}"
    settings = ServeSettings(store=root, index=f"sqlite:///{tmp_path / 'index.sqlite'}", engine=engine)
    manager = JobManager(Client(Config.load(user_file=False)), settings)
    done, flac = run_one(manager)
    assert done["status"] == "succeeded" and flac[:4] == b"fLaC"
    store = JobStore(root, index=settings.index)
    job_id = done["id"]
    assert store.load(job_id)["status"] == "succeeded"
    assert store.read(job_id, "audio.flac") == flac and store.read(job_id, "audio.wav")[:4] == b"RIFF"
    assert b"".join(store.chunks(job_id, "audio.wav", chunk_bytes=1000)) == store.read(job_id, "audio.wav")
    if engine == "process":
        assert (tmp_path / "bucket" / job_id / "audio.wav").is_file()


def test_a_remote_store_needs_an_index_and_a_password_never_sits_in_its_url(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="needs \\[serve\\] index"):
        JobStore("memory://nowhere")
    with pytest.raises(ConfigurationError, match="PGPASSWORD") as refused:
        JobIndex("postgresql://app:hunter2-secret@db.example/jobs")
    assert "hunter2-secret" not in str(refused.value)
    with pytest.raises(ConfigurationError, match="sqlite:///PATH"):
        JobIndex("mysql://db/jobs")


def test_serve_refuses_a_store_it_cannot_index_with_a_message_not_a_traceback(tmp_path) -> None:
    from click.testing import CliRunner

    from soundforge.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--store", "memory://jobs", "--port", "0"])
    assert result.exit_code == 3 and "needs [serve] index" in result.output
    assert "Traceback" not in result.output


def test_a_postgresql_index_opens_its_connection_again_after_the_server_dropped_it(postgres) -> None:
    index = JobIndex(postgres)
    index.put(record("0e"))
    index._connection.close()  # what a database restart or failover leaves behind
    assert index.get("0e")["id"] == "0e"
    index.close()


def test_a_store_that_cannot_be_written_is_refused_at_start(tmp_path) -> None:
    """`soundforge serve --store` on a place this user cannot write printed a traceback while starting."""
    from click.testing import CliRunner

    from soundforge.cli import EXIT_PROVIDER, cli

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["serve", "--store", str(blocker / "jobs"), "--port", "0"])
    assert result.exit_code == EXIT_PROVIDER, (result.output, result.exception)
    assert "cannot write the job store" in result.output and "--store" in result.output
    assert "Traceback" not in result.output
