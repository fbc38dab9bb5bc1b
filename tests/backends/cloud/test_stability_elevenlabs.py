"""Stability and ElevenLabs adapters over real HTTP against fakes on 127.0.0.1 that follow the vendors' contracts."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from soundforge import (
    AuthenticationError,
    CancelToken,
    ContentRefusedError,
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    SoundforgeError,
)
from soundforge.backends.cloud import HttpSettings, check_output_url
from soundforge.client import Client
from soundforge.config import Config

from ...fakes import KEY
from ...helpers import cloud


# --- Stability ---------------------------------------------------------------------------------------
def test_stability_text_to_audio(stability, downloads) -> None:
    g = cloud("stability", stability, downloads).generate(
        "driving techno", provider="stability", duration=3.5, seed=7, steps=8, guidance=3
    )
    assert g.audio.shape == (2, round(3.5 * 44100)) and g.sample_rate == 44100
    form = stability.bodies[-1]
    assert form["model"] == "stable-audio-2.5" and form["duration"] == "4" and form["seed"] == "7"
    assert form["steps"] == "8" and form["cfg_scale"] == "3" and form["output_format"] == "wav"
    assert g.license.id == "LicenseRef-Stability-API-ToS" and g.provenance.seed == 7
    assert g.provenance.device == "cloud" and not list(downloads.iterdir())


def test_a_short_vendor_answer_comes_back_exactly_as_long_as_asked(stability, downloads) -> None:
    # Exactly `duration` is one rule (base.fit_length): a vendor's answer a few ms short is padded, not returned short.
    stability.faults.append("short")
    g = cloud("stability", stability, downloads).generate("x", provider="stability", duration=4, seed=1)
    assert g.audio.shape == (2, 4 * 44100)
    assert np.all(g.audio[:, -400:] == 0)  # the padding is silence


def test_stability_audio_to_audio(stability, downloads) -> None:
    clip = (np.sin(np.linspace(0, 2000, 44100 * 6)).astype(np.float32), 44100)
    g = cloud("stability", stability, downloads).generate(
        "make it jazz",
        provider="stability",
        duration=6,
        audio_prompt=clip,
        audio_prompt_mode="variation",
        strength=0.4,
        seed=1,
    )
    form = stability.bodies[-1]
    assert form["strength"] == "0.4" and g.provenance.parameters["endpoint"] == "audio-to-audio"
    assert form["audio"][:3] == b"ID3" or form["audio"][:2] == b"\xff\xfb"  # MP3, not a 4x larger WAV


def test_stability_sends_a_compact_clip_and_refuses_what_cannot_fit(stability, downloads) -> None:
    client = cloud("stability", stability, downloads)
    rng = np.random.default_rng(0)
    seventy = (rng.uniform(-0.5, 0.5, (2, 44100 * 70)).astype(np.float32), 44100)  # noise: the hardest to compress
    client.generate("x", provider="stability", duration=10, audio_prompt=seventy, audio_prompt_mode="variation")
    mp3 = len(stability.bodies[-1]["audio"])
    assert mp3 < 3.0e6  # 320 kbps: 2.8 MB, where 16-bit stereo WAV was 12.3 MB
    lossless = cloud("stability", stability, downloads, upload_format="wav")
    lossless.generate("x", provider="stability", duration=10, audio_prompt=seventy, audio_prompt_mode="variation")
    assert stability.bodies[-1]["audio"][:4] == b"RIFF" and len(stability.bodies[-1]["audio"]) > 4 * mp3
    sent = stability.requests
    too_long = (np.zeros((2, 44100 * 191), dtype=np.float32), 44100)
    too_short = (np.zeros((2, 44100 * 5), dtype=np.float32), 44100)
    for clip, message in ((too_long, "6-190 s, not 191.00"), (too_short, "at least 6 s")):
        with pytest.raises(InvalidRequestError, match=message):
            client.generate("x", provider="stability", duration=10, audio_prompt=clip, audio_prompt_mode="variation")
    with pytest.raises(InvalidRequestError, match="upload_format"):
        cloud("stability", stability, downloads, upload_format="flac").generate(
            "x", provider="stability", duration=10, audio_prompt=seventy, audio_prompt_mode="variation"
        )
    assert stability.requests == sent  # nothing was uploaded


def test_stability_inpaint_is_the_vocabularys_repaint(stability, downloads) -> None:
    from soundforge import UnsupportedFeatureError

    client = cloud("stability", stability, downloads)
    clip = (np.sin(np.linspace(0, 3000, 44100 * 8)).astype(np.float32), 44100)
    g = client.generate(
        "a drum fill here",
        provider="stability",
        duration=8,
        audio_prompt=clip,
        audio_prompt_mode="repaint",
        region=(2.5, 4.0),
        seed=3,
    )
    form = stability.bodies[-1]
    assert (form["mask_start"], form["mask_end"]) == ("2.5", "4") and "strength" not in form
    assert g.provenance.parameters["endpoint"] == "inpaint" and g.audio.shape == (2, 8 * 44100)
    sent = len(stability.bodies)
    short = (np.zeros(44100 * 3, dtype=np.float32), 44100)
    with pytest.raises(InvalidRequestError, match="6-190 s"):
        client.generate(
            "x", provider="stability", duration=8, audio_prompt=short, audio_prompt_mode="repaint", region=(1.0, 2.0)
        )
    with pytest.raises(InvalidRequestError, match="region ends"):
        client.generate(
            "x", provider="stability", duration=8, audio_prompt=clip, audio_prompt_mode="repaint", region=(1.0, 9.0)
        )
    assert len(stability.bodies) == sent  # refused before the upload
    with pytest.raises(UnsupportedFeatureError) as info:  # inpaint is documented for stable-audio-2.5 only
        client.generate(
            "x",
            provider="stability:stable-audio-2",
            duration=8,
            audio_prompt=clip,
            audio_prompt_mode="repaint",
            region=(1.0, 2.0),
        )
    assert "stability" in info.value.supported_by


def test_stability_error_mapping(stability, downloads) -> None:
    client = cloud("stability", stability, downloads)
    with pytest.raises(ContentRefusedError, match="moderation"):
        client.generate("something forbidden", provider="stability", duration=2)
    stability.faults.append("invalid")
    with pytest.raises(InvalidRequestError, match="cfg_scale"):
        client.generate("x", provider="stability", duration=2)
    stability.faults.append("proxy_413")
    with pytest.raises(InvalidRequestError, match=r"\(413\): Request Entity Too Large"):  # it said "(413 )"
        client.generate("x", provider="stability", duration=2)
    with pytest.raises(InvalidRequestError, match="4-8 steps"):
        client.generate("x", provider="stability", duration=2, steps=50)
    with pytest.raises(InvalidRequestError, match="maximum"):
        client.generate("x", provider="stability", duration=191)
    bad_key = Client(
        Config.load(user_file=False, providers={"stability": {"base_url": stability.url, "api_key": "sk-wrong-secret"}})
    )
    with pytest.raises(AuthenticationError) as info:
        bad_key.generate("x", provider="stability", duration=2)
    assert "sk-wrong-secret" not in str(info.value) and "sk-wrong-secret" not in repr(bad_key.backend("stability"))


def test_retries_honour_retry_after_and_stop_on_unknown_outcome(stability, downloads) -> None:
    client = cloud("stability", stability, downloads)
    stability.faults.extend(["429", "503"])
    start = time.perf_counter()
    g = client.generate("x", provider="stability", duration=1, seed=1)
    assert g.duration == pytest.approx(1.0) and stability.requests == 3
    assert time.perf_counter() - start >= 0.05  # waited at least the Retry-After
    stability.retry_after = "1000"
    stability.faults.append("429")
    with pytest.raises(RateLimitError) as info:
        client.generate("x", provider="stability", duration=1)
    assert info.value.retry_after == 1000
    stability.faults.extend(["500"] * 5)  # max_retries 4: five attempts
    with pytest.raises(ProviderError) as failed:
        client.generate("x", provider="stability", duration=1)
    assert failed.value.status == 500 and failed.value.request_id
    before = stability.requests
    stability.faults.append("truncate")
    with pytest.raises(ProviderError, match="cut off") as cut:
        client.generate("x", provider="stability", duration=1)
    assert stability.requests == before + 1 and "not re-send" in str(cut.value)  # not retried: outcome unknown
    stability.faults.append("malformed")
    with pytest.raises(ProviderError, match="cannot be decoded"):
        client.generate("x", provider="stability", duration=1)
    stability.faults.append("slow")
    slow = cloud("stability", stability, downloads, read_timeout=0.3)
    with pytest.raises(GenerationTimeoutError):
        slow.generate("x", provider="stability", duration=1)
    assert not list(downloads.iterdir())


# --- ElevenLabs ----------------------------------------------------------------------------------------
def test_elevenlabs_compose_and_plan_dependent_licence(eleven, downloads) -> None:
    client = cloud("elevenlabs", eleven, downloads)
    g = client.generate("warm lo-fi beat", provider="elevenlabs", duration=4.5, instrumental=True)
    body = eleven.bodies[-1]
    assert body == {
        "model_id": "music_v1",
        "prompt": "warm lo-fi beat",
        "music_length_ms": 4500,
        "force_instrumental": True,
    }
    assert g.audio.shape[1] == round(4.5 * 44100) and g.license.commercial_use.value == "not_allowed"
    assert "strictest" in g.license.plan_note
    pro = cloud("elevenlabs", eleven, downloads, plan="pro").generate("x", provider="elevenlabs", duration=3)
    assert pro.license.commercial_use.value == "conditional" and pro.license.plan == "pro"
    plan = {
        "positive_global_styles": ["synthwave"],
        "negative_global_styles": [],
        "sections": [
            {
                "section_name": "intro",
                "positive_local_styles": [],
                "negative_local_styles": [],
                "duration_ms": 3000,
                "lines": [],
            },
            {
                "section_name": "verse",
                "positive_local_styles": ["drums"],
                "negative_local_styles": [],
                "duration_ms": 4000,
                "lines": ["la la"],
            },
        ],
    }
    planned = client.generate("synthwave song", provider="elevenlabs", duration=7, extra={"composition_plan": plan})
    assert "prompt" not in eleven.bodies[-1] and planned.duration == pytest.approx(7.0, abs=0.1)
    # A plan is the SDK's MusicPrompt, for music_v1 only, with every field it requires: checked before sending.
    sent = len(eleven.bodies)
    with pytest.raises(InvalidRequestError, match="sections are for music_v1"):
        client.generate("x", provider="elevenlabs:music_v2", duration=7, extra={"composition_plan": plan})
    chunks = {"chunks": [{"text": "[Intro]", "duration_ms": 3000, "positive_styles": ["synthwave"]}]}
    with pytest.raises(InvalidRequestError, match="chunks is for music_v2"):
        client.generate("x", provider="elevenlabs", duration=7, extra={"composition_plan": chunks})
    broken = {**plan, "sections": [{"section_name": "verse", "duration_ms": 4000, "lines": []}]}
    with pytest.raises(InvalidRequestError, match="lacks positive_local_styles, negative_local_styles"):
        client.generate("x", provider="elevenlabs", duration=7, extra={"composition_plan": broken})
    too_short = {**plan, "sections": [{**plan["sections"][0], "duration_ms": 1000}]}
    with pytest.raises(InvalidRequestError, match="3000-120000"):
        client.generate("x", provider="elevenlabs", duration=7, extra={"composition_plan": too_short})
    assert len(eleven.bodies) == sent
    stored = client.generate("x", provider="elevenlabs", duration=3, extra={"store_for_inpainting": True})
    assert eleven.bodies[-1]["store_for_inpainting"] is True and len(stored.provenance.parameters["song_id"]) == 32


def test_elevenlabs_errors(eleven, downloads) -> None:
    client = cloud("elevenlabs", eleven, downloads)
    with pytest.raises(ContentRefusedError) as refused:
        client.generate("in the style of a forbidden artist", provider="elevenlabs", duration=3)
    assert "upbeat pop" in str(refused.value)
    eleven.faults.append("invalid")
    with pytest.raises(InvalidRequestError, match="422") as invalid:
        client.generate("x", provider="elevenlabs", duration=3)
    # The validation list in words, never the raw dict.
    assert "model_id: unknown model" in str(invalid.value) and "{" not in invalid.value.message
    with pytest.raises(InvalidRequestError, match="unknown elevenlabs extra"):
        client.generate("x", provider="elevenlabs", duration=3, extra={"temperature": 1})
    with pytest.raises(InvalidRequestError, match="minimum"):
        client.generate("x", provider="elevenlabs", duration=2)
    from soundforge import UnsupportedFeatureError

    with pytest.raises(UnsupportedFeatureError, match="seed"):
        client.generate("x", provider="elevenlabs", duration=3, seed=1)


def test_official_elevenlabs_sdk_speaks_to_the_fake(eleven) -> None:
    elevenlabs = pytest.importorskip("elevenlabs.client")
    sdk = elevenlabs.ElevenLabs(api_key=KEY, base_url=eleven.url)
    audio = b"".join(sdk.music.compose(prompt="calm piano", music_length_ms=3000, force_instrumental=True))
    data, rate = sf.read(io.BytesIO(audio))
    assert rate == 44100 and data.shape[0] == pytest.approx(3 * 44100, abs=2000)
    assert eleven.bodies[-1]["music_length_ms"] == 3000


def test_missing_key_makes_the_provider_unavailable() -> None:
    rows = {r.name: r for r in Client(Config.load(user_file=False)).providers()}
    assert not rows["stability"].available and rows["stability"].fix == "export STABILITY_API_KEY=..."
    assert "ELEVENLABS_API_KEY" in rows["elevenlabs"].reason


# --- reliability -------------------------------------------------------------------------------------------
def test_two_hundred_requests_with_faults(stability, downloads) -> None:
    rng = np.random.default_rng(0)
    kinds = ["429", "503", "500", "truncate", "malformed"]
    plan = [str(rng.choice(kinds)) if rng.random() < 0.1 else "ok" for _ in range(400)]
    stability.faults.extend(plan)
    client = cloud("stability", stability, downloads, max_concurrency=8)

    async def run() -> list[object]:
        return await asyncio.gather(
            *(client.agenerate("x", provider="stability", duration=1, seed=i) for i in range(200)),
            return_exceptions=True,
        )

    results = asyncio.run(run())
    successes = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, SoundforgeError) for f in failures), failures[:3]
    # The fake counts a delivery after its last write returns, which can be after the client already has the
    # body: wait for the count to settle, then every complete delivery reached the caller exactly once.
    deadline = time.monotonic() + 5
    while stability.delivered < len(successes) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(successes) == stability.delivered
    assert len({s.provenance.seed for s in successes}) == len(successes)
    assert 0 < len(failures) < 40 and len(successes) + len(failures) == 200
    assert stability.peak_in_flight <= 8
    assert not list(downloads.iterdir())


def test_cancel_mid_download_leaves_nothing(stability, downloads) -> None:
    stability.faults.append("slow_body")
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    with pytest.raises(GenerationCancelledError):
        cloud("stability", stability, downloads).generate("x", provider="stability", duration=30, cancel=token)
    deadline = time.monotonic() + 5  # the background loop removes the partial file as it unwinds
    while list(downloads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list(downloads.iterdir())


def test_no_secret_in_provenance_or_sidecar(stability, downloads, tmp_path) -> None:
    g = cloud("stability", stability, downloads).generate("x", provider="stability", duration=1, seed=3)
    g.save(tmp_path / "s.wav")
    assert KEY not in json.dumps(g.provenance.model_dump(mode="json"))
    assert KEY not in (tmp_path / "s.wav.json").read_text() and KEY.encode() not in (tmp_path / "s.wav").read_bytes()
    assert KEY not in repr(HttpSettings.from_settings({"api_key": KEY}, default_base_url="x", key_env="Y"))


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://93.184.216.34/out.wav", True),
        ("http://93.184.216.34/out.wav", False),
        ("https://10.0.0.5/out.wav", False),
        ("https://169.254.169.254/latest", False),
        ("https://127.0.0.1/x", False),
        ("ftp://93.184.216.34/x", False),
        ("https://[::1]/x", False),
    ],
)
def test_output_url_guard(url: str, ok: bool) -> None:
    settings = HttpSettings(base_url="x", api_key=None)
    if ok:
        check_output_url(url, settings)
    else:
        with pytest.raises(ProviderError):
            check_output_url(url, settings)
    check_output_url("http://127.0.0.1:9/x", HttpSettings(base_url="x", api_key=None, allow_loopback_urls=True))


def test_tests_cannot_reach_a_real_provider_whatever_keys_are_set(monkeypatch) -> None:
    # A developer's machine with a real key: the request is refused before it leaves, by the kill switch.
    monkeypatch.setenv("STABILITY_API_KEY", "sk-real-looking-key-000000")
    client = Client(Config.load(user_file=False, providers={"stability": {"max_retries": 0}}))
    with pytest.raises(ProviderError, match="remote requests are blocked"):
        client.generate("techno", provider="stability", duration=2)


def test_async_client_closes_the_connections_it_opened_on_the_callers_loop(stability, downloads) -> None:
    import warnings

    seen = {}

    async def main() -> None:
        async with cloud("stability", stability, downloads) as client:
            await client.agenerate("techno", provider="stability", duration=2)
            http = client.backend("stability")._http
            seen["client"] = http._clients[asyncio.get_running_loop()]
        assert seen["client"].is_closed

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())


def test_extra_is_checked_by_key_and_type_before_any_request(eleven, stability, replicate, fal, downloads) -> None:
    cases = [
        ("elevenlabs", eleven, "elevenlabs", {"sign_with_c2pa": "yes"}, "must be bool"),
        ("elevenlabs", eleven, "elevenlabs", {"colour": 1}, "unknown elevenlabs extra"),
        ("stability", stability, "stability", {"output_format": 3}, "must be str"),
        ("fal", fal, "fal:fal-ai/stable-audio", {"seconds": 3}, "extra={'input'"),
        ("replicate", replicate, "replicate:meta/musicgen", {"input": "not a dict"}, "must be a dict"),
        ("replicate", replicate, "replicate:meta/musicgen", {"continuation_start": "soon"}, "must be int or float"),
    ]
    for name, server, spec, extra, message in cases:
        before = server.requests
        with pytest.raises(InvalidRequestError, match=message):
            cloud(name, server, downloads).generate("x", provider=spec, duration=3, extra=extra)
        assert server.requests == before, (name, extra)  # refused before anything was sent


def test_elevenlabs_sings_lyrics_through_a_composition_plan(eleven, downloads) -> None:

    client = cloud("elevenlabs", eleven, downloads)
    lyrics = "[verse]\nneon on the street\nwalking home alone\n[chorus]\nsing it back\n[outro]"
    g = client.generate("synthwave", provider="elevenlabs", duration=20, lyrics=lyrics, bpm=110, key="am")
    body = eleven.bodies[-1]
    plan = body["composition_plan"]
    assert "prompt" not in body and body["respect_sections_durations"] is True
    assert plan["positive_global_styles"] == ["synthwave", "110 BPM", "in A minor"]
    assert [(s["section_name"], s["lines"]) for s in plan["sections"]] == [
        ("Verse", ["neon on the street", "walking home alone"]),
        ("Chorus", ["sing it back"]),
        ("Outro", []),
    ]
    assert sum(s["duration_ms"] for s in plan["sections"]) == 20000
    assert all(3000 <= s["duration_ms"] <= 120000 for s in plan["sections"])
    assert g.audio.shape[1] == 20 * g.sample_rate
    # Without lyrics, tempo and key go into the prompt's words (the API has no field for them).
    client.generate("synthwave", provider="elevenlabs", duration=5, bpm=110, time_signature="6/8")
    assert eleven.bodies[-1]["prompt"] == "synthwave, 110 BPM, 6/8 time"
    sent = len(eleven.bodies)
    with pytest.raises(InvalidRequestError, match="3-120 s a section"):
        client.generate("x", provider="elevenlabs", duration=8, lyrics=lyrics)  # three sections need 9 s
    with pytest.raises(InvalidRequestError, match="200 characters"):
        client.generate("x", provider="elevenlabs", duration=10, lyrics="[verse]\n" + "la " * 80)
    assert len(eleven.bodies) == sent  # refused before anything was sent
    # music_v2 (and v2_5) take the lyrics as the SDK's CompositionPlan: one chunk per section, its tag as a header.
    v2 = client.generate("synthwave", provider="elevenlabs:music_v2", duration=20, lyrics=lyrics, bpm=110)
    chunks = eleven.bodies[-1]["composition_plan"]["chunks"]
    assert [c["text"] for c in chunks] == [
        "[Verse]\nneon on the street\nwalking home alone",
        "[Chorus]\nsing it back",
        "[Outro]",
    ]
    assert all(c["positive_styles"] == ["synthwave", "110 BPM"] for c in chunks)
    assert sum(c["duration_ms"] for c in chunks) == 20000 and "respect_sections_durations" not in eleven.bodies[-1]
    assert v2.audio.shape[1] == 20 * v2.sample_rate
    bad = {"chunks": [{"text": "[Verse]", "duration_ms": 2000, "positive_styles": []}]}
    with pytest.raises(InvalidRequestError, match="3000-120000"):
        client.generate("x", provider="elevenlabs:music_v2_5", duration=5, extra={"composition_plan": bad})
    ref = {"chunks": [{"song_id": "abc", "range": {"start_ms": 5000, "end_ms": 2000}}]}
    with pytest.raises(InvalidRequestError, match="end after start"):
        client.generate("x", provider="elevenlabs:music_v2", duration=5, extra={"composition_plan": ref})


def test_the_fake_accepts_the_plan_the_official_sdk_sends(eleven) -> None:
    elevenlabs = pytest.importorskip("elevenlabs.client")
    from elevenlabs.types import MusicPrompt, SongSection

    sdk = elevenlabs.ElevenLabs(api_key=KEY, base_url=eleven.url)
    plan = MusicPrompt(
        positive_global_styles=["synthwave"],
        negative_global_styles=[],
        sections=[
            SongSection(
                section_name="Verse",
                positive_local_styles=[],
                negative_local_styles=[],
                duration_ms=3000,
                lines=["neon on the street"],
            )
        ],
    )
    audio = b"".join(sdk.music.compose(composition_plan=plan, model_id="music_v1"))
    assert len(audio) > 1000 and eleven.bodies[-1]["composition_plan"]["sections"][0]["duration_ms"] == 3000
    from soundforge.backends.elevenlabs import composition_plan
    from soundforge.request import GenerationRequest

    ours = composition_plan(GenerationRequest(prompt="synthwave", duration=12, lyrics="[verse]\na\n[chorus]\nb"))
    MusicPrompt.model_validate(ours)  # soundforge's plan is one the SDK's own type accepts
    from elevenlabs.types import CompositionPlan, GenerationChunkInput

    from soundforge.backends.elevenlabs import chunk_plan

    v2 = CompositionPlan(chunks=[GenerationChunkInput(text="[Verse]\nneon", duration_ms=3000, positive_styles=["x"])])
    b"".join(sdk.music.compose(composition_plan=v2, model_id="music_v2"))
    assert eleven.bodies[-1]["composition_plan"]["chunks"][0]["text"] == "[Verse]\nneon"
    mine = chunk_plan(GenerationRequest(prompt="synthwave", duration=12, lyrics="[verse]\na\n[chorus]\nb"))
    parsed = CompositionPlan.model_validate(mine)
    assert [c.duration_ms for c in parsed.chunks] == [c["duration_ms"] for c in mine["chunks"]]


def test_elevenlabs_stem_separation_is_the_vocabularys_extract(eleven, downloads, tmp_path) -> None:
    from soundforge import UnsupportedFeatureError

    client = cloud("elevenlabs", eleven, downloads)
    song = (np.sin(np.linspace(0, 4000, 44100 * 6)).astype(np.float32), 44100)
    g = client.generate(
        "split it",
        provider="elevenlabs:six_stems_v1",
        duration=6,
        audio_prompt=song,
        audio_prompt_mode="extract",
        stem="keyboard",
    )
    form = eleven.bodies[-1]
    assert form["stem_variation_id"] == "six_stems_v1"
    assert form["file"][:3] == b"ID3" or form["file"][:2] == b"\xff\xfb"  # sent as MP3, not WAV
    roles = [t.role for t in g.tracks]
    assert roles[0] == "keyboard" and set(roles[1:]) == {"vocals", "drums", "bass", "guitar", "other"}
    assert all(t.audio.shape[1] == 6 * t.sample_rate for t in g.tracks)
    assert g.tracks[0].provenance.parameters["file"] == "piano" and g.tracks[0].provenance.role == "keyboard"
    paths = g.save(tmp_path / "song.wav")  # one file per stem, named by role: nothing paid for is dropped
    assert sorted(p.name for p in paths)[0] == "song.bass.wav" and len(paths) == 6
    two = client.generate(
        "x",
        provider="elevenlabs:two_stems_v1",
        duration=6,
        audio_prompt=song,
        audio_prompt_mode="extract",
        stem="vocals",
    )
    assert [t.role for t in two.tracks] == ["vocals", "instrumental"]
    sent = len(eleven.bodies)
    with pytest.raises(UnsupportedFeatureError, match="stem"):  # two stems: vocals and the rest, no drums
        client.generate(
            "x",
            provider="elevenlabs:two_stems_v1",
            duration=6,
            audio_prompt=song,
            audio_prompt_mode="extract",
            stem="drums",
        )
    with pytest.raises(UnsupportedFeatureError):  # the compose models separate nothing
        client.generate(
            "x", provider="elevenlabs", duration=6, audio_prompt=song, audio_prompt_mode="extract", stem="vocals"
        )
    assert len(eleven.bodies) == sent
    assert not list(downloads.iterdir())


def test_the_sdks_stem_separation_speaks_to_the_fake(eleven, tmp_path) -> None:
    import io
    import zipfile

    elevenlabs = pytest.importorskip("elevenlabs.client")
    sdk = elevenlabs.ElevenLabs(api_key=KEY, base_url=eleven.url)
    clip = tmp_path / "clip.wav"
    import soundfile as sf

    sf.write(clip, np.zeros((44100 * 3, 2), dtype=np.float32), 44100)
    with clip.open("rb") as handle:
        answer = b"".join(sdk.music.separate_stems(file=handle, stem_variation_id="two_stems_v1"))
    assert sorted(zipfile.ZipFile(io.BytesIO(answer)).namelist()) == ["instrumental.mp3", "vocals.mp3"]


def test_elevenlabs_sound_effects(eleven, downloads) -> None:
    client = cloud("elevenlabs-sfx", eleven, downloads)
    g = client.generate(
        "glass shattering on stone",
        provider="elevenlabs-sfx",
        duration=2.5,
        extra={"loop": True, "prompt_influence": 0.8},
    )
    assert eleven.bodies[-1] == {
        "text": "glass shattering on stone",
        "duration_seconds": 2.5,
        "model_id": "eleven_text_to_sound_v2",
        "prompt_influence": 0.8,
        "loop": True,
    }
    assert (
        g.audio.shape[1] == round(2.5 * g.sample_rate) and g.license.id == "LicenseRef-ElevenLabs-SFX-Free"
    )  # no plan set: the free plan's terms
    wav = client.generate(
        "door creak",
        provider="elevenlabs-sfx:eleven_text_to_sound_v3",
        duration=1,
        extra={"output_format": "wav_48000"},
    )
    assert wav.sample_rate == 48000 and eleven.bodies[-1]["model_id"] == "eleven_text_to_sound_v3"
    sent = len(eleven.bodies)
    with pytest.raises(InvalidRequestError, match="30 s maximum"):
        client.generate("x", provider="elevenlabs-sfx", duration=31)
    with pytest.raises(InvalidRequestError, match="0 to 1"):
        client.generate("x", provider="elevenlabs-sfx", duration=2, extra={"prompt_influence": 1.5})
    with pytest.raises(InvalidRequestError, match="wav_"):
        client.generate("x", provider="elevenlabs-sfx", duration=2, extra={"output_format": "flac_44100"})
    # Headerless PCM would be billed, then could not be decoded: refused before sending.
    with pytest.raises(InvalidRequestError, match="headerless"):
        client.generate("x", provider="elevenlabs-sfx", duration=2, extra={"output_format": "pcm_44100"})
    assert len(eleven.bodies) == sent
    with pytest.raises(ContentRefusedError):
        client.generate("a forbidden noise", provider="elevenlabs-sfx", duration=2)
    assert not list(downloads.iterdir())


def test_the_sdks_sound_effects_speak_to_the_fake(eleven) -> None:
    elevenlabs = pytest.importorskip("elevenlabs.client")
    sdk = elevenlabs.ElevenLabs(api_key=KEY, base_url=eleven.url)
    audio = b"".join(sdk.text_to_sound_effects.convert(text="rain", duration_seconds=1.5, loop=True))
    assert len(audio) > 1000 and eleven.bodies[-1]["loop"] is True and eleven.bodies[-1]["duration_seconds"] == 1.5


def test_a_provider_that_cannot_be_reached_is_named_with_its_host_and_the_reason(tmp_path) -> None:
    """Nothing listens on the port: the error names the provider, where it tried and the system's reason, with a
    hint; it said only "ConnectError"."""
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = {"base_url": f"http://127.0.0.1:{port}", "api_key": KEY, "max_retries": 0, "download_dir": str(tmp_path)}
    client = Client(Config.load(user_file=False, providers={"stability": settings}))
    with pytest.raises(ProviderError) as failed:
        client.generate("x", provider="stability", duration=2)
    message = str(failed.value)
    assert f"cannot connect to stability at http://127.0.0.1:{port}: Connection refused" in message
    assert "base_url" in failed.value.hint and KEY not in message + failed.value.hint
