"""`gemini` (Lyria 3 / 3.5 on the Gemini API) over real HTTP against a fake on 127.0.0.1, and google-genai on it."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from soundforge import (
    AuthenticationError,
    ContentRefusedError,
    InvalidRequestError,
    ModelNotAvailableError,
    ProviderError,
    RateLimitError,
    SoundforgeError,
)

from ...fakes import KEY
from ...helpers import cloud


def test_a_clip_with_lyrics_keeps_the_text_and_the_watermark(gemini, downloads) -> None:
    client = cloud("gemini", gemini, downloads)
    g = client.generate("indie pop about rain", provider="gemini", duration=12, lyrics="[Verse]\nrain again")
    body = gemini.bodies[-1]
    assert body["generationConfig"] == {"responseModalities": ["AUDIO", "TEXT"], "responseMimeType": "audio/mpeg"}
    text = body["contents"][0]["parts"][0]["text"]
    assert text.startswith("indie pop about rain") and "Lyrics:\n[Verse]\nrain again" in text
    assert "Length" not in text  # the clip model always makes 30 s
    assert g.sample_rate == 44100 and g.audio.shape == (2, 12 * 44100)  # trimmed from the 30 s clip
    prov = g.provenance
    assert prov.parameters["returned_text"] == "[Verse]\nrain on the window" and prov.watermarks == ["SynthID (Google)"]
    assert prov.parameters["returned_seconds"] == pytest.approx(30.0, abs=0.1)
    assert g.license.commercial_use.value == "unknown" and g.license.id == "LicenseRef-Unknown-Gemini-API-Preview"
    assert not list(downloads.iterdir())


def test_pro_songs_are_wav_and_take_their_length_in_the_prompt(gemini, downloads) -> None:
    client = cloud("gemini", gemini, downloads)
    g = client.generate("orchestral ballad", provider="gemini:lyria-3-pro-preview", duration=65, instrumental=True)
    body = gemini.bodies[-1]
    text = body["contents"][0]["parts"][0]["text"]
    assert "Instrumental only, no vocals." in text and text.endswith("Length: 1:05.")
    assert body["generationConfig"]["responseMimeType"] == "audio/wav"
    # The song came back 40 s long: kept whole and padded to the length asked for, the real length recorded.
    assert g.sample_rate == 48000 and g.audio.shape == (2, 65 * 48000)
    assert g.provenance.parameters["returned_seconds"] == pytest.approx(40.0) and not g.audio[:, 41 * 48000 :].any()
    mp3 = client.generate(
        "x", provider="gemini:lyria-3-pro-preview", duration=5, extra={"response_mime_type": "audio/mpeg"}
    )
    assert gemini.bodies[-1]["generationConfig"]["responseMimeType"] == "audio/mpeg" and mp3.sample_rate == 48000


def test_lyria_35_through_the_interactions_api(gemini, downloads) -> None:
    g = cloud("gemini", gemini, downloads).generate("a pop song", provider="gemini:lyria-3.5", duration=20)
    body = gemini.bodies[-1]
    assert body["model"] == "lyria-3.5" and body["input"].startswith("a pop song") and "Length: 0:20." in body["input"]
    assert g.audio.shape == (2, 20 * 44100) and g.provenance.parameters["returned_text"] == "[Chorus]\nla la"
    # A failed interaction names its reasons in `errors` (the SDK's list): a safety reason is a refusal, kept.
    with pytest.raises(ContentRefusedError, match="blocked for safety"):
        cloud("gemini", gemini, downloads).generate("a forbidden song", provider="gemini:lyria-3.5", duration=20)


def test_refusals_and_errors(gemini, downloads) -> None:
    client = cloud("gemini", gemini, downloads)
    with pytest.raises(ContentRefusedError, match="PROHIBITED_CONTENT"):
        client.generate("a forbidden song", provider="gemini", duration=5)
    with pytest.raises(ContentRefusedError, match="SAFETY"):
        client.generate("an unsafe song", provider="gemini", duration=5)
    with pytest.raises(AuthenticationError, match="API key not valid") as bad:
        cloud("gemini", gemini, downloads, api_key="wrong-key-456").generate("x", provider="gemini", duration=5)
    assert "wrong-key-456" not in str(bad.value) and "wrong-key-456" not in repr(bad.value.to_dict())
    sent = gemini.requests
    with pytest.raises(InvalidRequestError, match="audio/mpeg"):
        client.generate("x", provider="gemini", duration=5, extra={"response_mime_type": "audio/wav"})
    with pytest.raises(InvalidRequestError, match="30 s maximum"):
        client.generate("x", provider="gemini", duration=45)
    with pytest.raises(ModelNotAvailableError):
        client.generate("x", provider="gemini:lyria-2", duration=5)
    assert gemini.requests == sent  # all refused before sending
    gemini.faults.append("quota")  # 429 RESOURCE_EXHAUSTED, retried after its RetryInfo delay
    assert client.generate("x", provider="gemini", duration=5).audio.shape[1] == 5 * 44100
    # A daily quota's RetryInfo asks for 10 hours: over max_retry_after, it is an error at once (it was slept).
    gemini.faults.append("daily-quota")
    started = gemini.requests
    with pytest.raises(RateLimitError) as daily:
        client.generate("x", provider="gemini", duration=5)
    assert daily.value.retry_after == 36000 and gemini.requests == started + 1
    gemini.faults.append("malformed")
    with pytest.raises(ProviderError, match="malformed"):
        client.generate("x", provider="gemini", duration=5)


def test_fault_suite_loses_nothing_and_bills_once(gemini, downloads) -> None:
    rng = np.random.default_rng(5)
    gemini.faults.extend(
        str(rng.choice(["429", "quota", "503", "500", "truncate"])) if rng.random() < 0.15 else "ok" for _ in range(400)
    )
    client = cloud("gemini", gemini, downloads, max_concurrency=4)

    async def run():
        return await asyncio.gather(
            *(client.agenerate(f"song {i}", provider="gemini", duration=2) for i in range(24)), return_exceptions=True
        )

    results = asyncio.run(run())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, SoundforgeError) for f in failures), failures[:3]
    # Only a cut-off answer fails (the song may have been billed, so it is never re-sent); no prompt made two songs.
    assert all("cut off" in str(f) for f in failures) and len(failures) < 10
    assert len(gemini.billed) == len(set(gemini.billed)) and gemini.delivered == len(results) - len(failures)
    assert not list(downloads.iterdir())


def test_google_genai_speaks_to_the_fake(gemini) -> None:
    genai = pytest.importorskip("google.genai")
    from google.genai import errors, types

    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gemini.url, api_version="v1beta"))
    config = types.GenerateContentConfig(response_modalities=["AUDIO", "TEXT"], response_mime_type="audio/mpeg")
    answer = client.models.generate_content(model="lyria-3-clip-preview", contents="calm piano", config=config)
    audio = next(p.inline_data for p in answer.parts if p.inline_data is not None)
    assert audio.mime_type == "audio/mpeg" and (audio.data[:3] == b"ID3" or audio.data[:2] == b"\xff\xfb")
    assert (
        answer.text == "[Verse]\nrain on the window" and answer.candidates[0].finish_reason == types.FinishReason.STOP
    )
    blocked = client.models.generate_content(model="lyria-3-clip-preview", contents="forbidden", config=config)
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    stranger = genai.Client(api_key="nope", http_options=types.HttpOptions(base_url=gemini.url, api_version="v1beta"))
    with pytest.raises(errors.ClientError) as wrong:
        stranger.models.generate_content(model="lyria-3-clip-preview", contents="x", config=config)
    assert wrong.value.code == 400 and wrong.value.status == "INVALID_ARGUMENT"
    with pytest.raises(errors.ClientError) as missing:
        client.models.generate_content(model="lyria-9", contents="x", config=config)
    assert missing.value.code == 404
    song = client.interactions.create(model="lyria-3.5", input="a pop song")
    assert song.status == "completed" and song.output_text == "[Chorus]\nla la"
    assert (
        base64.b64decode(song.output_audio.data)[:3] in (b"ID3",)
        or base64.b64decode(song.output_audio.data)[:2] == b"\xff\xfb"
    )
