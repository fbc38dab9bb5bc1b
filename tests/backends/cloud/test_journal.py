"""Cloud jobs that survive a timeout, a cancel or a killed process: the job journal, over real HTTP to the fakes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from soundforge import CancelToken, GenerationCancelledError, GenerationTimeoutError
from soundforge.backends.cloud import CloudJobJournal
from soundforge.backends.cloud import default_journal_path as default_path

from ...fakes import KEY
from ...helpers import cloud

SPEC = "replicate:meta/musicgen"


def test_a_timeout_keeps_the_job_and_the_next_call_collects_it(replicate, downloads) -> None:
    replicate.job_seconds = 1.5
    impatient = cloud("replicate", replicate, downloads, job_timeout=0.3, prefer_wait=0)
    with pytest.raises(GenerationTimeoutError, match="kept in the job journal") as caught:
        impatient.generate("a long song", provider=SPEC, duration=2, seed=4)
    assert "call again with the same request" in (caught.value.hint or "") and replicate.cancelled == []
    [pending] = CloudJobJournal(default_path()).all()
    assert pending.released and pending.provider == "replicate" and len(replicate.jobs) == 1
    patient = cloud("replicate", replicate, downloads, prefer_wait=0)
    g = patient.generate("a long song", provider=SPEC, duration=2, seed=4)
    assert len(replicate.jobs) == 1  # collected, not submitted again: paid once
    assert g.provenance.parameters["prediction_id"] == pending.job_id and g.audio.shape[1] == 2 * 32000
    assert CloudJobJournal(default_path()).all() == []  # delivered: forgotten
    patient.generate("a long song", provider=SPEC, duration=2, seed=4)
    assert len(replicate.jobs) == 2  # a new call after delivery is a new generation


def test_calls_waiting_at_once_each_get_their_own_job(replicate, downloads) -> None:
    replicate.job_seconds = 0.6
    client = cloud("replicate", replicate, downloads, prefer_wait=0)

    async def both():
        return await asyncio.gather(*(client.agenerate("same", provider=SPEC, duration=1) for _ in range(2)))

    first, second = asyncio.run(both())
    ids = {first.provenance.parameters["prediction_id"], second.provenance.parameters["prediction_id"]}
    assert len(ids) == 2 and len(replicate.jobs) == 2 and CloudJobJournal(default_path()).all() == []


def test_a_cancel_cancels_the_job_and_forgets_it(replicate, downloads) -> None:
    replicate.job_seconds = 5
    token = CancelToken()
    client = cloud("replicate", replicate, downloads, prefer_wait=0)
    with pytest.raises(GenerationCancelledError):
        client.generate("x", provider=SPEC, duration=1, cancel=token, on_progress=lambda event: token.cancel())
    # The job unwinds on the provider's loop after the caller has its error: wait for its remote cancel to land.
    deadline = time.monotonic() + 10
    while (not replicate.cancelled or CloudJobJournal(default_path()).all()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(replicate.cancelled) == 1 and CloudJobJournal(default_path()).all() == []


def test_without_a_journal_a_timeout_cancels_as_before(replicate, fal, downloads, tmp_path) -> None:
    replicate.job_seconds = 5
    with pytest.raises(GenerationTimeoutError, match="it was cancelled"):
        cloud("replicate", replicate, downloads, job_timeout=0.2, prefer_wait=0, job_journal="off").generate(
            "x", provider=SPEC, duration=1
        )
    assert len(replicate.cancelled) == 1
    # fal keeps and collects the same way, in a journal file of one's choosing.
    fal.job_seconds = 1.2
    journal = tmp_path / "jobs.sqlite"
    with pytest.raises(GenerationTimeoutError):
        cloud("fal", fal, downloads, job_timeout=0.2, job_journal=str(journal)).generate(
            "y", provider="fal:fal-ai/stable-audio", duration=2
        )
    assert len(CloudJobJournal(journal).all()) == 1 and fal.cancelled == []
    g = cloud("fal", fal, downloads, job_journal=str(journal)).generate(
        "y", provider="fal:fal-ai/stable-audio", duration=2
    )
    assert len(fal.jobs) == 1 and g.audio.shape[1] == 2 * 44100 and CloudJobJournal(journal).all() == []


def test_a_killed_process_never_pays_twice(replicate, downloads, tmp_path) -> None:
    """kill -9 while the job runs, call again: exactly one submission reaches the fake, the result is delivered."""
    replicate.job_seconds = 2.5
    journal = tmp_path / "jobs.sqlite"
    settings = {
        "base_url": replicate.url,
        "api_key": KEY,
        "prefer_wait": 0,
        "poll_interval": 0.05,
        "poll_max_interval": 0.1,
        "allow_loopback_urls": True,
        "job_journal": str(journal),
        "download_dir": str(downloads),
    }
    child = textwrap.dedent(
        f"""
        from soundforge.client import Client
        from soundforge.config import Config
        client = Client(Config.load(user_file=False, providers={{"replicate": {settings!r}}}))
        client.generate("killed mid-poll", provider={SPEC!r}, duration=1, seed=9)
        raise SystemExit("the job finished before the process was killed")
        """
    )
    process = subprocess.Popen([sys.executable, "-c", child], env=os.environ.copy())
    try:
        assert replicate.polled.wait(timeout=60), "the child never polled its job"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL and len(replicate.jobs) == 1
    [orphan] = CloudJobJournal(journal).all()
    assert not orphan.waited_for  # its process is gone: the next call may take it over
    again = cloud("replicate", replicate, downloads, job_journal=str(journal), prefer_wait=0)
    g = again.generate("killed mid-poll", provider=SPEC, duration=1, seed=9)
    assert len(replicate.jobs) == 1 and g.provenance.parameters["prediction_id"] == orphan.job_id
    assert CloudJobJournal(journal).all() == [] and g.audio.shape[1] == 32000


def test_soundforge_jobs_lists_and_collects(replicate, downloads, tmp_path) -> None:
    from click.testing import CliRunner

    from soundforge.cli import cli

    replicate.job_seconds = 1.2
    journal = tmp_path / "jobs.sqlite"
    with pytest.raises(GenerationTimeoutError):
        cloud("replicate", replicate, downloads, job_timeout=0.2, prefer_wait=0, job_journal=str(journal)).generate(
            "collect me", provider=SPEC, duration=1
        )
    runner = CliRunner()
    listed = runner.invoke(cli, ["jobs", "--journal", str(journal)])
    [job] = CloudJobJournal(journal).all()
    assert listed.exit_code == 0 and job.job_id in listed.output and "replicate:meta/musicgen" in listed.output
    config = tmp_path / "soundforge.toml"
    config.write_text(
        f'[providers.replicate]\nbase_url = "{replicate.url}"\napi_key = "{KEY}"\nprefer_wait = 0\n'
        f'allow_loopback_urls = true\npoll_interval = 0.05\ndownload_dir = "{downloads}"\n'
    )
    out = tmp_path / "collected.wav"
    collected = runner.invoke(
        cli, ["--config", str(config), "jobs", "--journal", str(journal), "--resume", job.job_id, "-o", str(out)]
    )
    assert collected.exit_code == 0, collected.output
    assert out.exists() and len(replicate.jobs) == 1 and CloudJobJournal(journal).all() == []
    assert "no pending cloud jobs" in runner.invoke(cli, ["jobs", "--journal", str(journal)]).output


def test_soundforge_jobs_reads_the_configured_journals_and_refuses_bad_ones(replicate, downloads, tmp_path) -> None:
    """`soundforge jobs` lists the journal a provider is configured with (not only the default one), refuses a
    mistyped --journal path (it created an empty journal there) and a file that is no journal (a traceback)."""
    from click.testing import CliRunner

    from soundforge.cli import cli

    replicate.job_seconds = 1.2
    journal = tmp_path / "team" / "jobs.sqlite"
    with pytest.raises(GenerationTimeoutError):
        cloud("replicate", replicate, downloads, job_timeout=0.2, prefer_wait=0, job_journal=str(journal)).generate(
            "configured journal", provider=SPEC, duration=1
        )
    [job] = CloudJobJournal(journal).all()
    config = tmp_path / "soundforge.toml"
    config.write_text(f'[providers.replicate]\njob_journal = "{journal}"\n')
    runner = CliRunner()
    listed = runner.invoke(cli, ["--config", str(config), "jobs"])
    assert listed.exit_code == 0 and job.job_id in listed.output, listed.output
    missing = tmp_path / "typo" / "jobs.sqlite"
    refused = runner.invoke(cli, ["jobs", "--journal", str(missing)])
    assert refused.exit_code == 2 and "no job journal" in refused.output and not missing.parent.exists()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    bad = runner.invoke(cli, ["jobs", "--journal", str(garbage)])
    assert bad.exit_code == 3 and "not a readable soundforge job journal" in bad.output
    assert "Traceback" not in bad.output


def test_threads_opening_a_new_journal_at_once_do_not_lock_each_other_out(tmp_path) -> None:
    """Several threads' first connections to a new journal raced to switch it to WAL: one got "database is locked"
    at once (seen in CI when the journal's work went to worker threads). Setup is now one connection at a time."""
    import threading

    errors: list[BaseException] = []
    for trial in range(150):
        journal = CloudJobJournal(tmp_path / f"journal-{trial}.sqlite")
        start = threading.Barrier(4)

        def claim(journal: CloudJobJournal = journal, start: threading.Barrier = start) -> None:
            try:
                start.wait()
                journal.claim("key", "answer")
            except BaseException as exc:  # collected: the assertion below names them
                errors.append(exc)

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
