"""The service's scheduler on its own, without HTTP: admit, queue, run, long-poll, encode once, cancel."""

from __future__ import annotations

import asyncio

import pytest

from soundforge import InvalidRequestError, LicensePolicy, LicensePolicyError
from soundforge.client import Client
from soundforge.config import Config
from soundforge.request import GenerationRequest

pytest.importorskip("fastapi")

from soundforge.serve.jobs import JobManager
from soundforge.serve.settings import ServeSettings


def manager(tmp_path, **settings) -> JobManager:
    client = Client(Config.load(user_file=False), policy=settings.pop("policy", None))
    return JobManager(client, ServeSettings(store=tmp_path / "jobs", engine="inline", **settings))


def test_a_job_runs_and_its_audio_is_encoded_once(tmp_path) -> None:
    async def main() -> None:
        jobs = manager(tmp_path)
        await jobs.start()
        try:
            job_id = await jobs.submit(GenerationRequest(prompt="lofi", duration=1, seed=2), "synth")
            assert job_id is not None
            record = await jobs.wait(job_id, jobs.record(job_id), 30)
            assert record["status"] == "succeeded" and record["license"]["id"] == "CC0-1.0"
            flac = await jobs.audio(job_id, record, "flac")
            assert flac[:4] == b"fLaC" and await jobs.audio(job_id, record, "flac") == flac
            assert (jobs.store.folder(job_id) / "audio.flac").read_bytes() == flac
        finally:
            await jobs.close()

    asyncio.run(main())


def test_refusals_are_raised_before_anything_is_queued(tmp_path) -> None:
    async def main() -> None:
        jobs = manager(tmp_path, policy=LicensePolicy(deny=("synth",)), max_job_seconds=5)
        await jobs.start()
        try:
            with pytest.raises(LicensePolicyError):
                await jobs.submit(GenerationRequest(prompt="x", duration=1), "synth")
            with pytest.raises(InvalidRequestError, match="5 s per job"):
                await jobs.submit(GenerationRequest(prompt="x", duration=6), "synth")
            assert jobs.queue.qsize() == 0 and not list((tmp_path / "jobs").glob("*/job.json"))
        finally:
            await jobs.close()

    asyncio.run(main())


def test_a_full_queue_says_later_and_a_queued_job_cancels_at_once(tmp_path) -> None:
    async def main() -> None:
        jobs = manager(tmp_path, max_queue=1, workers=1)
        # Not started: no worker takes jobs, so the queue fills deterministically.
        first = await jobs.submit(GenerationRequest(prompt="x", duration=1), "synth")
        assert first is not None
        assert await jobs.submit(GenerationRequest(prompt="y", duration=1), "synth") is None
        record = await jobs.cancel(first, jobs.record(first))
        assert record["status"] == "cancelled"
        await jobs.start()  # the worker reaches the cancelled job and drops it
        await jobs.queue.join()
        assert jobs.record(first)["status"] == "cancelled"
        await jobs.close()

    asyncio.run(main())
