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


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_encoded_downloads_are_the_stored_samples_never_edited_again(tmp_path, fmt: str) -> None:
    """The stored WAV carries the request's trim, fades and loudness; every other format encodes those samples
    (lossless: the same samples; lossy: within the codec's error), never applying the edits a second time."""
    import numpy as np
    import pyloudnorm

    from soundforge.audio import load_audio
    from soundforge.output.tags import read_tags_bytes

    async def main() -> tuple[bytes, bytes]:
        jobs = manager(tmp_path)
        await jobs.start()
        try:
            request = GenerationRequest(
                prompt="ambient", duration=4, seed=2, loudness=-20, trim=3, fade_in=1, fade_out=0.5
            )
            job_id = await jobs.submit(request, "synth")
            assert job_id is not None
            record = await jobs.wait(job_id, jobs.record(job_id), 30)
            assert record["status"] == "succeeded"
            return await jobs.audio(job_id, record, "wav"), await jobs.audio(job_id, record, fmt)
        finally:
            await jobs.close()

    wav, encoded = asyncio.run(main())
    stored, rate = load_audio(wav)
    other, other_rate = load_audio(encoded)
    assert other_rate == rate
    if fmt == "flac":
        np.testing.assert_array_equal(other, stored)  # lossless: exactly the stored samples
    else:
        # Lossy: the codec's own delay and error, never a second fade (the first second would be at ~0.7 of it).
        n = min(stored.shape[1], other.shape[1])
        meter = pyloudnorm.Meter(rate)
        assert abs(meter.integrated_loudness(other.T) - meter.integrated_loudness(stored.T)) < 0.5
        assert abs(other.shape[1] - stored.shape[1]) < 0.05 * rate
        window = slice(rate // 4, rate)  # inside the fade-in: a second fade would scale it down again
        ratio = np.sqrt(np.mean(other[:, window] ** 2)) / np.sqrt(np.mean(stored[:, window] ** 2))
        assert 0.85 < ratio < 1.15, ratio
        assert n > 0
    tags = read_tags_bytes(encoded)
    stored_tags = read_tags_bytes(wav)
    assert tags["EDITS"] == stored_tags["EDITS"] and tags["LOUDNESS_LUFS"] == stored_tags["LOUDNESS_LUFS"]


def test_a_record_the_store_cannot_take_fails_the_job_and_the_worker_lives_on(tmp_path, monkeypatch) -> None:
    """A full disk (or an index locked past its timeout) at a job's last save: the job ends failed with the reason,
    its listeners hear it, the worker takes the next job, /healthz says the store cannot be written, and the records
    are saved once the store takes them again."""
    import json
    import threading

    import soundforge.serve.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "RESAVE_S", 0.05, raising=False)

    async def main() -> None:
        jobs = manager(tmp_path, workers=1)
        await jobs.start()
        try:
            real_save = jobs.store.save
            full = threading.Event()
            full.set()

            def save(record):
                if full.is_set() and record.get("status") in ("succeeded", "failed"):
                    raise OSError(28, "No space left on device")
                return real_save(record)

            monkeypatch.setattr(jobs.store, "save", save)
            first = await jobs.submit(GenerationRequest(prompt="x", duration=1, seed=1), "synth")
            record = await jobs.wait(first, jobs.record(first), 30)
            assert record["status"] == "failed" and record["outcome"] == "succeeded"
            assert record["error"]["code"] == "store_error" and "No space left" in record["error"]["message"]
            assert record["license"]["id"] == "CC0-1.0"  # nothing of the job is dropped
            assert jobs.health()["status"] == "degraded" and "No space left" in jobs.health()["store"]
            second = await jobs.submit(GenerationRequest(prompt="y", duration=1, seed=2), "synth")
            assert (await jobs.wait(second, jobs.record(second), 30))["status"] == "failed"  # the worker lived on
            full.clear()
            await asyncio.wait_for(jobs._resaver, 30)  # the store takes them again
            assert jobs.health() == {"status": "ok"}
            for job_id in (first, second):
                on_disk = json.loads((jobs.store.folder(job_id) / "job.json").read_text())
                assert on_disk["status"] == "failed" and on_disk["error"]["code"] == "store_error"
        finally:
            await jobs.close()

    asyncio.run(main())


def test_admission_never_waits_behind_encodes(tmp_path, monkeypatch) -> None:
    """Four first downloads in new formats, each a long encode, held: a submission is still admitted at once (it
    waited 227 s when encodes shared the admission threads)."""
    import threading

    import soundforge.serve.jobs as jobs_module

    release = threading.Event()
    started = threading.Semaphore(0)
    real = jobs_module.encode_saved

    def slow_encode(*args, **kwargs):
        started.release()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs_module, "encode_saved", slow_encode)

    async def main() -> None:
        jobs = manager(tmp_path)
        await jobs.start()
        try:
            ids = []
            for seed in range(4):
                job_id = await jobs.submit(GenerationRequest(prompt="x", duration=1, seed=seed), "synth")
                ids.append(job_id)
            records = [await jobs.wait(i, jobs.record(i), 30) for i in ids]
            downloads = [
                asyncio.create_task(jobs.audio(i, r, fmt))
                for i, r, fmt in zip(ids, records, ["mp3", "ogg", "flac", "mp3"], strict=True)
            ]
            await asyncio.to_thread(started.acquire, True, 30)  # at least one encode is running, and held
            admitted = await asyncio.wait_for(jobs.submit(GenerationRequest(prompt="y", duration=1), "synth"), 10)
            assert admitted is not None
            release.set()
            assert all(await asyncio.gather(*downloads))
        finally:
            release.set()
            await jobs.close()

    asyncio.run(main())


def test_a_job_the_service_fails_carries_a_typed_error(tmp_path) -> None:
    """Every error a job record can hold has one shape: the `to_dict` of a class in `soundforge.errors` (the engine
    errors were hand-written dicts with their own fields and a `type` naming no class)."""
    import soundforge.errors as errors
    from soundforge.serve.engine import JobSpec

    class BrokenEngine:
        mode = "inline"

        async def start(self) -> None:
            pass

        async def run(self, spec: JobSpec, *args: object) -> object:
            raise RuntimeError("cannot start the engine")

        def cancel(self, job_id: str) -> None:
            pass

        async def close(self) -> None:
            pass

    async def main() -> dict:
        client = Client(Config.load(user_file=False))
        jobs = JobManager(client, ServeSettings(store=tmp_path / "jobs", engine="inline"), engine=BrokenEngine())
        await jobs.start()
        try:
            job_id = await jobs.submit(GenerationRequest(prompt="x", duration=1), "synth")
            assert job_id is not None
            return await jobs.wait(job_id, jobs.record(job_id), 30)
        finally:
            await jobs.close()

    record = asyncio.run(main())
    error = record["error"]
    assert record["status"] == "failed" and error["code"] == "engine_error" and "cannot start" in error["message"]
    kind = getattr(errors, error["type"])
    assert issubclass(kind, errors.ServiceError) and kind.code == error["code"]
    assert set(error) == set(kind("x").to_dict())
