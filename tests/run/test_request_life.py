"""One life for a request (soundforge.run): every door accepts and refuses alike, with the same error code, because
each asks the same plan. Doors: the library's generate and stream, a serve job and a streamed serve job (admission
only: the manager is not started), a batch row (a real run) and a batch dry run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soundforge import LicensePolicy, SoundforgeError, batch
from soundforge.client import Client
from soundforge.config import Config
from soundforge.request import GenerationRequest

pytest.importorskip("fastapi")

from soundforge.serve.jobs import JobManager
from soundforge.serve.settings import ServeSettings

DOORS = ("generate", "stream", "job", "streamed_job", "row", "dry_run")
STREAMED = {"stream", "streamed_job"}
JOB = {"job", "streamed_job"}
MAX_JOB_SECONDS = 60.0


def everywhere(code: str | None) -> dict[str, str | None]:
    return dict.fromkeys(DOORS, code)


def except_on(doors: set[str], code: str, otherwise: str | None = None) -> dict[str, str | None]:
    return {door: code if door in doors else otherwise for door in DOORS}


#: (request fields, policy, what each door answers: None = accepted, else the error code).
CASES: dict[str, tuple[dict[str, Any], LicensePolicy | None, dict[str, str | None]]] = {
    "plain": ({}, None, everywhere(None)),
    "quality report": ({"quality": "report"}, None, everywhere(None)),
    "quality retry": ({"quality": "retry", "quality_retries": 1}, None, except_on(STREAMED, "invalid_request")),
    "loop": ({"loop": True, "bpm": 120, "duration": 2}, None, except_on(STREAMED, "invalid_request")),
    # The loop's take (160 slow bars) is longer than synth's 600 s maximum: refused before any take is made.
    "loop take over the maximum": ({"loop": True, "loop_bars": 160}, None, everywhere("invalid_request")),
    "loudness": ({"loudness": -16}, None, except_on({"streamed_job"}, "invalid_request")),
    "fade": ({"fade_in": 0.25}, None, except_on({"streamed_job"}, "invalid_request")),
    "trim": ({"trim": 0.5}, None, except_on({"streamed_job"}, "invalid_request")),
    "unknown synth extra": ({"extra": {"bogus": 1}}, None, everywhere("invalid_request")),
    "unknown synth section": ({"extra": {"sections": ["cadenza"]}}, None, everywhere("invalid_request")),
    "over the model's maximum": ({"duration": 700}, None, everywhere("invalid_request")),
    "two outputs": ({"num_outputs": 2}, None, except_on(JOB | {"row", "dry_run"}, "invalid_request")),
    "over the job limit": ({"duration": 70}, None, except_on(JOB, "invalid_request")),
    "quality takes over the job limit": (
        {"duration": 25, "quality": "retry", "quality_retries": 2},
        None,
        {**except_on(JOB, "invalid_request"), "stream": "invalid_request"},
    ),
    "refused by the policy": ({}, LicensePolicy(deny=("synth",)), everywhere("license_policy")),
    # No Demucs weights in the (empty) hub cache and downloads off: the separator is refused before any work.
    "stems": ({"stems": ["drums"]}, None, except_on(STREAMED, "invalid_request", "model_not_available")),
    # AudioSeal's weights are not in its (empty) cache: refused before any work, by every door.
    "watermark": ({"watermark": True}, None, except_on(STREAMED, "invalid_request", "model_not_available")),
}


def _door(name: str, tmp_path: Path, policy: LicensePolicy | None) -> Callable[[dict[str, Any]], None]:
    config = Config.load(user_file=False)

    def client() -> Client:
        return Client(config, policy=policy)

    def generate(fields: dict[str, Any]) -> None:
        client().generate("lofi", provider="synth", **fields)

    def stream(fields: dict[str, Any]) -> None:
        with client().stream("lofi", provider="synth", **fields):
            pass  # accepted: planned, closed before the first chunk

    def job(fields: dict[str, Any], streamed: bool = False) -> None:
        settings = ServeSettings(store=tmp_path / "jobs", engine="inline", max_job_seconds=MAX_JOB_SECONDS)
        manager = JobManager(client(), settings)
        request = GenerationRequest(prompt="lofi", **fields)

        async def admit() -> str | None:
            try:
                return await manager.submit(request, "synth", stream=streamed)
            finally:
                await manager.close()  # its threads and index connection end with the test

        assert asyncio.run(admit()) is not None

    def row(fields: dict[str, Any], dry_run: bool = False) -> None:
        manifest = tmp_path / "rows.jsonl"
        manifest.write_text(json.dumps({"name": "a", "prompt": "lofi", "provider": "synth", **fields}) + "\n")
        report = batch(manifest, tmp_path / ("dry" if dry_run else "out"), client=client(), dry_run=dry_run)
        assert report.failed == {}, report.failed

    doors: dict[str, Callable[[dict[str, Any]], None]] = {
        "generate": generate,
        "stream": stream,
        "job": job,
        "streamed_job": lambda fields: job(fields, streamed=True),
        "row": row,
        "dry_run": lambda fields: row(fields, dry_run=True),
    }
    return doors[name]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_door_accepts_and_refuses_alike(case: str, door: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUDIOSEAL_CACHE_DIR", str(tmp_path / "no-audioseal"))
    # An empty hub cache (read at each call): other tests install a tiny Demucs in the session's cache.
    pytest.importorskip("huggingface_hub")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "no-hub"))
    fields, policy, expected = CASES[case]
    fields = {"duration": 1, "seed": 3, **fields}
    try:
        _door(door, tmp_path, policy)(fields)
        answered = None
    except SoundforgeError as exc:
        answered = exc.code
    assert answered == expected[door], f"{case} at {door}: {answered} (expected {expected[door]})"


# --- the drifts the review reproduced, each pinned -----------------------------------------------------------
def test_a_streamed_loop_job_is_refused_at_admission(tmp_path) -> None:
    settings = ServeSettings(store=tmp_path / "jobs", engine="inline")
    manager = JobManager(Client(Config.load(user_file=False)), settings)
    request = GenerationRequest(prompt="x", duration=4, loop=True)
    with pytest.raises(SoundforgeError, match="loop=True cannot be streamed"):
        asyncio.run(manager.submit(request, "synth", stream=True))
    assert manager.queue.qsize() == 0


def test_a_loop_job_is_limited_by_the_audio_its_take_makes(tmp_path) -> None:
    # A 1 s loop at 20 bpm is cut from a take of several bars: that take, not the 1 s, is what the limit weighs.
    settings = ServeSettings(store=tmp_path / "jobs", engine="inline", max_job_seconds=60)
    manager = JobManager(Client(Config.load(user_file=False)), settings)
    request = GenerationRequest(prompt="x", duration=1, loop=True, loop_bars=8, bpm=20)
    with pytest.raises(SoundforgeError, match=r"this job would make .* 60 s per job"):
        asyncio.run(manager.submit(request, "synth"))


def test_every_take_of_quality_retry_is_estimated_and_counted(stability, downloads, tmp_path) -> None:
    from soundforge import BudgetExceededError

    key = "sk-test-stability"
    settings = {"base_url": stability.url, "api_key": key, "download_dir": str(downloads)}
    client = Client(Config.load(user_file=False, providers={"stability": settings}))
    single = client.plan("x", provider="stability", duration=2).estimate.amount
    retrying = client.plan("x", provider="stability", duration=2, quality="retry", quality_retries=2)
    assert retrying.takes == 3 and retrying.estimate.amount == pytest.approx(3 * single)
    manifest = tmp_path / "rows.jsonl"
    row = {"name": "a", "prompt": "x", "duration": 2, "provider": "stability", "quality": "retry"}
    manifest.write_text(json.dumps({**row, "quality_retries": 2}) + "\n")
    dry = batch(manifest, tmp_path / "dry", client=client, dry_run=True)
    assert dry.estimated_total == pytest.approx(3 * single)
    with pytest.raises(BudgetExceededError):  # two takes' worth of budget cannot pay for three
        batch(manifest, tmp_path / "tight", client=client, budget=2.5 * single)
    assert stability.requests == 0


def test_takes_cost_adds_the_rejected_takes() -> None:
    from soundforge.run.steps import takes_cost

    cost = {"amount": 0.2, "basis": "per_generation"}
    provenance = {"cost": cost, "quality": {"rejected": [{"cost": cost}, {"cost": cost}]}}
    total = takes_cost(provenance)
    assert total is not None and total.amount == pytest.approx(0.6)
    assert takes_cost({"cost": cost}).amount == pytest.approx(0.2)
    unknown = {"cost": cost, "quality": {"rejected": [{"cost": None}]}}
    assert takes_cost(unknown).amount is None
    assert takes_cost({}) is None


def test_one_generate_with_loop_and_stems_asks_the_router_once_for_the_request(monkeypatch) -> None:
    client = Client(Config.load(user_file=False))
    calls: list[str] = []
    plan = client.router.plan

    def counting(request, spec, **kwargs):
        calls.append(request.prompt)
        return plan(request, spec, **kwargs)

    monkeypatch.setattr(client.router, "plan", counting)
    client.generate("x", provider="synth", duration=2, loop=True, bpm=120, quality="report")
    # The request (once) and the loop's take (once, since the take is what runs): no other door asks again.
    assert len(calls) == 2
