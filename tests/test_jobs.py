"""Replicate and fal job adapters over real HTTP against fakes on 127.0.0.1 with full job life cycles."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from soundforge import (
    CancelToken,
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
    ProviderUnavailableError,
    SoundforgeError,
)
from soundforge.client import Client
from soundforge.config import Config

from .fakes import KEY, FakeFal
from .helpers import cloud


def test_replicate_musicgen_prediction(replicate, downloads) -> None:
    client = cloud("replicate", replicate, downloads)
    g = client.generate(
        "lofi beat",
        provider="replicate:meta/musicgen",
        duration=4.5,
        seed=3,
        guidance=3.2,
        temperature=0.9,
        extra={"model_version": "stereo-melody-large"},
    )
    body = replicate.bodies[-1]["input"]
    assert body == {
        "prompt": "lofi beat",
        "duration": 5,
        "output_format": "wav",
        "temperature": 0.9,
        "classifier_free_guidance": 3,
        "seed": 3,
        "model_version": "stereo-melody-large",
    }
    prov = g.provenance
    assert prov.parameters["prediction_id"] in replicate.jobs and g.audio.shape[1] == round(4.5 * 32000)
    assert g.license.id == "CC-BY-NC-4.0" and not list(downloads.iterdir())


def test_replicate_pinned_version_melody_and_errors(replicate, downloads) -> None:
    client = cloud("replicate", replicate, downloads, prefer_wait=0)
    melody = (np.sin(np.linspace(0, 500, 32000)).astype(np.float32), 32000)
    g = client.generate("jazz", provider="replicate:meta/musicgen:abc123", duration=2, melody=melody)
    sent = replicate.bodies[-1]
    assert sent["version"] == "abc123" and sent["input"]["input_audio"].startswith("data:audio/wav;base64,")
    assert g.provenance.model_revision == "abc123"
    with pytest.raises(ProviderError, match="CUDA out of memory"):
        client.generate("please fail", provider="replicate:meta/musicgen", duration=2)
    with pytest.raises(ProviderError, match="not found"):
        client.generate("lost job", provider="replicate:meta/musicgen", duration=2)
    from soundforge import GenerationTimeoutError

    # "aborted" is final (it passed its deadline before starting): no endless polling, a timeout error.
    with pytest.raises(GenerationTimeoutError, match="deadline"):
        client.generate("missed the deadline", provider="replicate:meta/musicgen", duration=2)
    with pytest.raises(InvalidRequestError, match="unknown replicate extra"):
        client.generate("x", provider="replicate:meta/musicgen", duration=2, extra={"cfg": 3})
    other = client.generate(
        "x", provider="replicate:someone/sfx-model", duration=2, extra={"input": {"style": "retro"}}
    )
    assert other.license.commercial_use.value == "unknown" and replicate.bodies[-1]["input"]["style"] == "retro"


def test_replicate_timeout_and_cancel_cancel_the_remote_job(replicate, downloads) -> None:
    client = cloud("replicate", replicate, downloads, job_timeout=0.3, prefer_wait=0)
    with pytest.raises(GenerationTimeoutError):
        client.generate("slow piece", provider="replicate:meta/musicgen", duration=2)
    assert len(replicate.cancelled) == 1
    token = CancelToken()
    slow = cloud("replicate", replicate, downloads, prefer_wait=0)
    # Cancel once the job is known to be running remotely (its first poll), not after a guessed delay: on a
    # loaded machine a timer can fire before the submit has been answered, or long after.
    with pytest.raises(GenerationCancelledError):
        slow.generate(
            "slow piece",
            provider="replicate:meta/musicgen",
            duration=2,
            cancel=token,
            on_progress=lambda event: token.cancel(),
        )
    deadline = time.monotonic() + 5  # the remote cancel goes out as the job unwinds
    while (len(replicate.cancelled) < 2 or list(downloads.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(replicate.cancelled) == 2 and not list(downloads.iterdir())


def test_official_replicate_client_speaks_to_the_fake(replicate, monkeypatch) -> None:
    sdk = pytest.importorskip("replicate")
    client = sdk.Client(api_token=KEY, base_url=replicate.url)
    prediction = client.models.predictions.create(model="meta/musicgen", input={"prompt": "calm", "duration": 2})
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.output.endswith(".wav")
    again = client.predictions.get(prediction.id)
    assert again.id == prediction.id


def test_fal_queue_job(fal, downloads) -> None:
    client = cloud("fal", fal, downloads)
    events = []
    g = client.generate(
        "ambient pad", provider="fal:fal-ai/stable-audio", duration=3.2, seed=9, steps=50, on_progress=events.append
    )
    assert fal.bodies[-1] == {"prompt": "ambient pad", "seconds_total": 4, "steps": 50, "seed": 9}
    assert g.provenance.parameters["request_id"] in fal.jobs and g.audio.shape[1] == round(3.2 * 44100)
    assert g.license.id == "LicenseRef-Unknown-Fal-Model" and g.license.attribution == "Powered by Stability AI"
    assert events and events[0].phase == "queued"
    with pytest.raises(ProviderError, match="runner_error"):
        client.generate("fail please", provider="fal:fal-ai/stable-audio", duration=2)
    with pytest.raises(GenerationTimeoutError):
        cloud("fal", fal, downloads, job_timeout=0.2).generate("slow", provider="fal:fal-ai/stable-audio", duration=2)
    assert fal.cancelled and not list(downloads.iterdir())


def test_fal_never_sends_the_key_elsewhere(fal, downloads) -> None:
    other = FakeFal()
    try:
        # The submit answer points status URLs at another host: the adapter rebuilds them on its own base.
        fal.url, real = other.url, fal.url
        client = cloud("fal", fal, downloads, base_url=real)
        client.generate("x", provider="fal:fal-ai/stable-audio", duration=2)
        assert other.requests == 1 and other.auth_seen == [None]  # only the file download, and without the key
    finally:
        other.close()


@pytest.mark.parametrize("kind, spec", [("replicate", "replicate:meta/musicgen"), ("fal", "fal:fal-ai/stable-audio")])
def test_job_fault_suite(kind: str, spec: str, request, downloads) -> None:
    server = request.getfixturevalue(kind)
    rng = np.random.default_rng(1)
    server.faults.extend(
        str(rng.choice(["429", "503", "500", "truncate"])) if rng.random() < 0.1 else "ok" for _ in range(4000)
    )
    client = cloud(kind, server, downloads, max_concurrency=8, **({"prefer_wait": 0} if kind == "replicate" else {}))

    async def run():
        return await asyncio.gather(
            *(client.agenerate("x", provider=spec, duration=1, seed=i) for i in range(60)), return_exceptions=True
        )

    results = asyncio.run(run())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, SoundforgeError) for f in failures), failures[:3]
    # Only a cut-off submit (outcome unknown) may fail; polls and downloads are retried through faults.
    assert len(results) - len(failures) >= 50 and server.peak_in_flight <= 8
    assert not list(downloads.iterdir())


def test_suno_and_udio_are_honest() -> None:
    rows = {r.name: r for r in Client(Config.load(user_file=False)).providers()}
    assert "no official public API" in rows["suno"].reason and "no official public API" in rows["udio"].reason
    with pytest.raises(ProviderUnavailableError, match="Suno publishes no official public API"):
        Client(Config.load(user_file=False)).generate("x", provider="suno")


@pytest.mark.parametrize("audio_key", ["bytesBase64Encoded", "audioContent"])
def test_lyria_predict(tmp_path, audio_key: str) -> None:
    from soundforge import ContentRefusedError

    from .fakes import FakeLyria

    server = FakeLyria()
    server.audio_key = audio_key
    try:
        client = Client(
            Config.load(
                user_file=False,
                providers={
                    "lyria": {"base_url": server.url, "api_key": KEY, "project": "demo", "location": "europe-west4"}
                },
            )
        )
        g = client.generate("orchestral swell", provider="lyria", duration=12, negative_prompt="drums", seed=4)
        assert server.bodies[-1] == {
            "instances": [{"prompt": "orchestral swell", "negative_prompt": "drums", "seed": 4}]
        }
        assert g.sample_rate == 48000 and g.audio.shape == (2, 12 * 48000)
        assert any("SynthID" in r for r in g.license.restrictions)
        many = client.generate("x", provider="lyria", duration=5, num_outputs=3)
        assert len(many.tracks) == 3 and server.bodies[-1]["parameters"] == {"sample_count": 3}
        with pytest.raises(InvalidRequestError, match="either a seed"):
            client.generate("x", provider="lyria", duration=5, num_outputs=2, seed=1)
        with pytest.raises(ContentRefusedError, match="safety"):
            client.generate("forbidden words", provider="lyria", duration=5)
        server.faults.append("malformed")
        with pytest.raises(ProviderError):
            client.generate("x", provider="lyria", duration=5)
    finally:
        server.close()
    rows = {r.name: r for r in Client(Config.load(user_file=False)).providers()}
    assert "project" in rows["lyria"].reason
