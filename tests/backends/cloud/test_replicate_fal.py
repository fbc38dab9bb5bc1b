"""Replicate and fal job adapters over real HTTP against fakes on 127.0.0.1 with full job life cycles."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from soundforge import (
    CancelToken,
    ContentRefusedError,
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
    ProviderUnavailableError,
    SoundforgeError,
    UnsupportedFeatureError,
)
from soundforge.client import Client
from soundforge.config import Config

from ...fakes import KEY, FakeFal
from ...helpers import cloud


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
    # meta/musicgen is a community model: run by its latest version (the official-model route answers 422).
    latest = replicate.models["meta/musicgen"]
    assert replicate.bodies[-1]["version"] == latest and prov.model_revision == latest


def test_replicate_resolves_versions_once_and_keeps_the_official_route(replicate, downloads) -> None:
    client = cloud("replicate", replicate, downloads, prefer_wait=0)
    for seed in (1, 2):
        client.generate("x", provider="replicate:meta/musicgen", duration=1, seed=seed)
    assert replicate.model_lookups == 1  # cached
    assert [b["version"] for b in replicate.bodies] == [replicate.models["meta/musicgen"]] * 2
    official = client.generate("x", provider="replicate:official-lab/official-audio", duration=1)
    assert "version" not in replicate.bodies[-1] and official.provenance.parameters["prediction_id"]
    expired = cloud("replicate", replicate, downloads, prefer_wait=0, version_cache_seconds=0)
    expired.generate("x", provider="replicate:meta/musicgen", duration=1)
    expired.generate("x", provider="replicate:meta/musicgen", duration=1)
    assert replicate.model_lookups == 4  # 1 + the official model's + 2 without a cache
    with pytest.raises(ProviderError, match="no such model"):
        client.generate("x", provider="replicate:nobody/nothing", duration=1)


def test_replicate_safety_refusal_is_a_content_refusal(replicate, downloads) -> None:
    client = cloud("replicate", replicate, downloads, prefer_wait=0)
    with pytest.raises(ContentRefusedError, match="flagged as sensitive") as caught:
        client.generate("a forbidden melody", provider="replicate:meta/musicgen", duration=1)
    assert "same input again" in (caught.value.hint or "") and not list(downloads.iterdir())


def test_replicate_pinned_version_melody_and_errors(replicate, downloads) -> None:
    client = cloud("replicate", replicate, downloads, prefer_wait=0)
    melody = (np.sin(np.linspace(0, 500, 32000)).astype(np.float32), 32000)
    older = next(iter(replicate.pinned))
    g = client.generate("jazz", provider=f"replicate:meta/musicgen:{older}", duration=2, melody=melody)
    sent = replicate.bodies[-1]
    assert sent["version"] == older and sent["input"]["input_audio"].startswith("data:audio/wav;base64,")
    assert g.provenance.model_revision == older and replicate.model_lookups == 0  # pinned: nothing to look up
    with pytest.raises(InvalidRequestError, match="Invalid version"):
        client.generate("x", provider="replicate:meta/musicgen:0000", duration=2)
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
    client = cloud("replicate", replicate, downloads, job_timeout=0.3, prefer_wait=0, cancel_on_timeout=True)
    with pytest.raises(GenerationTimeoutError, match="it was cancelled"):
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
    model = client.models.get("meta/musicgen")  # the SDK's Model/Version types parse the fake's model
    assert model.latest_version is not None and model.latest_version.id == replicate.models["meta/musicgen"]
    prediction = client.predictions.create(version=model.latest_version.id, input={"prompt": "calm", "duration": 2})
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.output.endswith(".wav")
    again = client.predictions.get(prediction.id)
    assert again.id == prediction.id
    # The official-model route: refused for a community model, taken by an official one.
    with pytest.raises(sdk.exceptions.ReplicateError) as refused:
        client.models.predictions.create(model="meta/musicgen", input={"prompt": "calm"})
    assert refused.value.status == 422
    official = client.models.predictions.create(model="official-lab/official-audio", input={"prompt": "calm"})
    official.wait()
    assert official.status == "succeeded"
    assert client.models.get("official-lab/official-audio").latest_version is None


def test_fal_queue_job(fal, downloads) -> None:
    client = cloud("fal", fal, downloads)
    events = []
    g = client.generate(
        "ambient pad", provider="fal:fal-ai/stable-audio", duration=3.2, steps=50, on_progress=events.append
    )
    assert fal.bodies[-1] == {"prompt": "ambient pad", "seconds_total": 4, "steps": 50}  # the app takes no seed
    assert g.provenance.parameters["request_id"] in fal.jobs and g.audio.shape[1] == round(3.2 * 44100)
    # fal runs the Community-licensed weights, so their duties are fal's: listed, binding the host, not the user.
    assert g.license.id == "LicenseRef-Unknown-Fal-Model" and g.license.attribution is None
    assert any(c.binds == "host" and c.license.attribution for c in g.license.components)
    assert events and events[0].phase == "queued"
    with pytest.raises(ProviderError, match="runner_error"):
        client.generate("fail please", provider="fal:fal-ai/stable-audio", duration=2)
    with pytest.raises(GenerationTimeoutError, match="it was cancelled"):
        cloud("fal", fal, downloads, job_timeout=0.2, cancel_on_timeout=True).generate(
            "slow", provider="fal:fal-ai/stable-audio", duration=2
        )
    assert fal.cancelled and not list(downloads.iterdir())


def test_fal_apps_get_their_own_schema(fal, downloads) -> None:
    client = cloud("fal", fal, downloads)
    sa25 = client.generate(
        "drum loop", provider="fal:fal-ai/stable-audio-25/text-to-audio", duration=2.5, steps=8, guidance=4, seed=1
    )
    assert fal.bodies[-1] == {
        "prompt": "drum loop",
        "seconds_total": 3,
        "num_inference_steps": 8,
        "guidance_scale": 4.0,
        "seed": 1,
    }
    assert sa25.audio.shape[1] == round(2.5 * 44100)
    lyria = client.generate("strings", provider="fal:fal-ai/lyria2", duration=12, negative_prompt="drums", seed=4)
    assert fal.bodies[-1] == {"prompt": "strings", "negative_prompt": "drums", "seed": 4}  # no duration field
    assert lyria.sample_rate == 48000 and lyria.audio.shape[1] == 12 * 48000  # trimmed from the 30 s clip
    # A field the app lacks is refused before anything is sent; so is a length it cannot make.
    sent = fal.requests
    with pytest.raises(InvalidRequestError, match="steps"):
        client.generate("x", provider="fal:fal-ai/lyria2", duration=10, steps=20)
    with pytest.raises(InvalidRequestError, match="30"):
        client.generate("x", provider="fal:fal-ai/lyria2", duration=40)
    with pytest.raises(InvalidRequestError, match="negative_prompt"):
        client.generate("x", provider="fal:fal-ai/stable-audio", duration=4, negative_prompt="noise")
    with pytest.raises(InvalidRequestError, match="seed"):  # the app has no seed input
        client.generate("x", provider="fal:fal-ai/stable-audio", duration=4, seed=3)
    with pytest.raises(InvalidRequestError, match="steps from 4 to 8"):
        client.generate("x", provider="fal:fal-ai/stable-audio-25/text-to-audio", duration=4, steps=50)
    assert fal.requests == sent
    # An app without a schema gets the prompt and its own inputs, nothing guessed.
    client.generate("x", provider="fal:someone/music-app", duration=3, extra={"input": {"length_s": 3}})
    assert fal.bodies[-1] == {"prompt": "x", "length_s": 3}
    assert fal.ignored == []  # no key any app would have silently ignored


def test_fal_elevenlabs_music_apps_take_milliseconds_and_bill_per_started_minute(fal, downloads) -> None:
    """fal's ElevenLabs Music apps (fal's llms.txt pages): the length is `music_length_ms`, instrumental is
    `force_instrumental`, and the price is per output minute, rounded up."""
    client = cloud("fal", fal, downloads)
    song = client.generate("city pop", provider="fal:fal-ai/elevenlabs/music", duration=30.5, instrumental=True)
    assert fal.bodies[-1] == {"prompt": "city pop", "music_length_ms": 30500, "force_instrumental": True}
    assert song.audio.shape[1] == round(30.5 * 44100)
    assert song.cost.basis == "per_started_minute" and song.cost.amount == pytest.approx(0.8)  # one started minute
    v2 = client.generate("lo-fi", provider="fal:elevenlabs/music/v2", duration=61)
    assert fal.bodies[-1] == {"prompt": "lo-fi", "music_length_ms": 61000} and v2.sample_rate == 48000
    assert v2.cost.amount == pytest.approx(1.2)  # 61 s bills two minutes at $0.6
    sent = fal.requests
    with pytest.raises(InvalidRequestError, match="minimum"):
        client.generate("x", provider="fal:elevenlabs/music/v2", duration=2)
    with pytest.raises(InvalidRequestError, match="seed"):
        client.generate("x", provider="fal:elevenlabs/music/v2", duration=10, seed=1)
    assert fal.requests == sent and fal.ignored == []


def test_fal_ace_step_takes_the_prompt_as_tags_and_sings_lyrics(fal, downloads) -> None:
    """`fal-ai/ace-step` as fal's own client types it (@fal-ai/client 1.10.1 `AceStepInput`): the style prompt is
    `tags`, the length `duration`, steps `number_of_steps`."""
    client = cloud("fal", fal, downloads)
    lyrics = "[verse]\nneon rain\n[chorus]\nsing it back"
    song = client.generate(
        "synth-pop, female vocals", provider="fal:fal-ai/ace-step", duration=20, lyrics=lyrics, steps=27, seed=3
    )
    assert fal.bodies[-1] == {
        "tags": "synth-pop, female vocals",
        "duration": 20,
        "lyrics": lyrics,
        "number_of_steps": 27,
        "seed": 3,
    }
    assert song.sample_rate == 48000 and song.audio.shape[1] == 20 * 48000 and fal.ignored == []
    with pytest.raises(UnsupportedFeatureError, match="negative_prompt"):
        client.generate("x", provider="fal:fal-ai/ace-step", duration=10, negative_prompt="noise")


def test_fal_content_checker_refusal(fal, downloads) -> None:
    client = cloud("fal", fal, downloads)
    with pytest.raises(ContentRefusedError, match=r"prompt \(violence\)") as caught:
        client.generate("a forbidden scene", provider="fal:fal-ai/stable-audio", duration=2)
    assert caught.value.code == "content_refused" and not list(downloads.iterdir())
    with pytest.raises(ProviderError, match="runner_error"):
        client.generate("fail please", provider="fal:fal-ai/stable-audio", duration=2)
    # Both answers are final (X-Fal-Retryable: false): each result was asked for once, never retried.
    assert sorted(fal.result_fetches.values()) == [1, 1]


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


@pytest.mark.parametrize(
    "kind, spec", [("replicate", "replicate:meta/musicgen"), ("fal", "fal:fal-ai/stable-audio-25/text-to-audio")]
)
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

    from ...fakes import FakeLyria

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


def test_official_fal_client_speaks_to_the_fake(fal) -> None:
    fal_client = pytest.importorskip("fal_client")
    import httpx

    port = int(fal.url.rsplit(":", 1)[1])

    class ToTheFake(httpx.HTTPTransport):
        """Sends what fal-client addresses to https://queue.fal.run to the fake on 127.0.0.1."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=port)
            return super().handle_request(request)

    client = fal_client.SyncClient(key=KEY)
    # fal-client builds its httpx.Client lazily (a cached property); giving it one with our transport is the only
    # change: submit, status, result and cancel below are the SDK's own code paths and URLs.
    client.__dict__["_client"] = httpx.Client(
        transport=ToTheFake(), headers={"Authorization": f"Key {KEY}"}, follow_redirects=True
    )
    handle = client.submit("fal-ai/stable-audio-25/text-to-audio", {"prompt": "calm", "seconds_total": 2})
    result = handle.get(interval=0.02)
    assert result["audio"]["url"].endswith(".wav") and isinstance(handle.status(), fal_client.Completed)
    refused = client.submit("fal-ai/lyria2", {"prompt": "a forbidden scene"})
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        refused.get(interval=0.02)
    assert caught.value.status_code == 422
    assert caught.value.response.json()["detail"][0]["type"] == "content_policy_violation"
    with pytest.raises(fal_client.FalClientHTTPError) as invalid:
        client.submit("fal-ai/stable-audio-25/text-to-audio", {"prompt": "x", "num_inference_steps": 50})
    assert invalid.value.status_code == 422
    slow = client.submit("fal-ai/stable-audio", {"prompt": "slow", "seconds_total": 2})
    slow.cancel()
    assert slow.request_id in fal.cancelled
