"""`lyria-realtime` (Lyria RealTime on the Gemini API) through Google's own client, google-genai, against a fake
`BidiGenerateMusic` service on 127.0.0.1 over TLS (tests/fake_lyria_realtime.py, written from the SDK's source and
the API reference): chunks as they arrive, steering while it plays, refusals before connecting, errors mapped."""

from __future__ import annotations

import numpy as np
import pytest

from soundforge import (
    AuthenticationError,
    ContentRefusedError,
    InvalidRequestError,
    UnsupportedFeatureError,
)

from ...fakes import KEY
from ...helpers import cloud

RATE = 48000


def client(server, downloads, **extra):
    return cloud("lyria-realtime", server, downloads, **extra)


def _frequency(audio: np.ndarray) -> float:
    """The strongest frequency of a stretch of the fake's sine."""
    spectrum = np.abs(np.fft.rfft(audio[0]))
    return float(np.argmax(spectrum) * RATE / audio.shape[1])


def test_a_session_streams_chunks_of_the_prompted_config(lyria_rt, downloads) -> None:
    c = client(lyria_rt, downloads)
    with c.stream(
        "minimal techno",
        provider="lyria-realtime",
        duration=2.0,
        bpm=90,
        key="F# minor",
        seed=7,
        guidance=4.0,
        extra={"density": 0.5, "brightness": 0.3, "mute_bass": True},
    ) as stream:
        chunks = list(stream)
    generation = stream.generation
    assert generation is not None and generation.audio.shape == (2, 2 * RATE) and generation.sample_rate == RATE
    assert len(chunks) > 2 and [c.offset for c in chunks] == sorted({c.offset for c in chunks})
    assert np.array_equal(np.concatenate([c.audio for c in chunks], axis=1), generation.audio)
    assert lyria_rt.kinds()[:4] == ["setup", "clientContent", "musicGenerationConfig", "PLAY"]
    prompts, config = lyria_rt.messages[1]["clientContent"], lyria_rt.messages[2]["musicGenerationConfig"]
    assert prompts == {"weightedPrompts": [{"text": "minimal techno", "weight": 1.0}]}
    # Google's client sends camelCase; F# minor is the scale of A major.
    assert config == {
        "bpm": 90,
        "seed": 7,
        "guidance": 4.0,
        "scale": "A_MAJOR_G_FLAT_MINOR",
        "density": 0.5,
        "brightness": 0.3,
        "muteBass": True,
    }
    assert _frequency(generation.audio[:, : RATE // 4]) == pytest.approx(190, abs=4)  # 100 + bpm
    assert generation.provenance.parameters["weighted_prompts"] == prompts["weightedPrompts"]
    assert generation.license.id == "LicenseRef-Unknown-Gemini-API-Preview"


def test_steering_changes_the_music_that_follows(lyria_rt, downloads) -> None:
    c = client(lyria_rt, downloads)
    # 30 s is 120 of the fake's chunks, made over more than a second: the change lands well before the end.
    with c.stream("ambient pads", provider="lyria-realtime", duration=30.0, bpm=80) as stream:
        first = next(stream)
        stream.steer(bpm=140, density=0.8, prompts=[("ambient pads", 1.0), ("tabla", 0.6)])
        rest = list(stream)
    audio = stream.generation.audio
    assert _frequency(first.audio) == pytest.approx(180, abs=8)
    assert _frequency(audio[:, -RATE // 4 :]) == pytest.approx(240, abs=8)  # the new tempo in the fake's tone
    assert np.abs(audio[:, -RATE // 4 :]).max() == pytest.approx(0.5, abs=0.02)  # density 0.8 -> 0.1 + 0.4
    kinds = lyria_rt.kinds()
    # Prompts, then the whole config (the API replaces it), then a context reset: the tempo changed.
    steer = kinds.index("PLAY") + 1
    assert kinds[steer : steer + 3] == ["clientContent", "musicGenerationConfig", "RESET_CONTEXT"]
    assert lyria_rt.messages[steer + 1]["musicGenerationConfig"] == {"bpm": 140, "density": 0.8}
    assert lyria_rt.messages[steer]["clientContent"]["weightedPrompts"][1] == {"text": "tabla", "weight": 0.6}
    assert stream.generation.provenance.parameters["steered"][0]["config"] == {"bpm": 140, "density": 0.8}
    assert rest and kinds[-1] == "STOP"


def test_a_change_it_cannot_take_is_refused_where_it_is_made(lyria_rt, downloads) -> None:
    c = client(lyria_rt, downloads)
    with c.stream("drone", provider="lyria-realtime", duration=1.0) as stream:
        next(stream)
        sent = len(lyria_rt.messages)
        with pytest.raises(InvalidRequestError, match="60 to 200") as info:
            stream.steer(bpm=300)
        assert info.value.field == "bpm"
        with pytest.raises(InvalidRequestError, match="cannot be steered by 'lyrics'"):
            stream.steer(lyrics="la la")
        with pytest.raises(InvalidRequestError, match="weight"):
            stream.steer(prompts=[("drone", 0)])
        assert len(lyria_rt.messages) == sent  # nothing was sent
        list(stream)
    with pytest.raises(UnsupportedFeatureError, match="steering"):  # the session is over
        stream.steer(bpm=100)
    with c.stream("x", provider="synth", duration=1.0) as other, pytest.raises(UnsupportedFeatureError) as info:
        other.steer(bpm=100)
    assert info.value.field == "steering"


def test_it_is_checked_before_connecting_and_generate_collects_the_session(lyria_rt, downloads) -> None:
    c = client(lyria_rt, downloads)
    for params, kind, field in (
        ({"bpm": 250}, InvalidRequestError, "bpm"),
        ({"extra": {"density": 2.0}}, InvalidRequestError, "density"),
        ({"extra": {"mode": "LOUD"}}, InvalidRequestError, "mode"),
        ({"extra": {"tempo": 3}}, InvalidRequestError, "extra"),
        ({"lyrics": "la la"}, UnsupportedFeatureError, "lyrics"),
        ({"negative_prompt": "drums"}, UnsupportedFeatureError, "negative_prompt"),
    ):
        with pytest.raises(kind) as info:
            c.generate("x", provider="lyria-realtime", duration=1.0, **params)
        assert info.value.field == field, (params, info.value)
    assert lyria_rt.sessions == 0
    whole = c.generate("jazz trio", provider="lyria-realtime", duration=1.5, extra={"prompts": [("jazz", 2.0)]})
    assert whole.audio.shape == (2, round(1.5 * RATE)) and lyria_rt.sessions == 1
    assert lyria_rt.messages[1]["clientContent"] == {"weightedPrompts": [{"text": "jazz", "weight": 2.0}]}


def test_refusals_and_an_early_close_end_the_session(lyria_rt, downloads) -> None:
    with pytest.raises(AuthenticationError, match="403"):
        cloud("lyria-realtime", lyria_rt, downloads, api_key="wrong-key").generate(
            "x", provider="lyria-realtime", duration=1.0
        )
    c = client(lyria_rt, downloads)
    with pytest.raises(ContentRefusedError, match="forbidden"):
        c.generate("a forbidden tune", provider="lyria-realtime", duration=1.0)
    with c.stream("long set", provider="lyria-realtime", duration=600.0) as stream:
        next(stream)
    # Leaving early stopped the session: the fake saw it close, and nothing keeps running.
    assert lyria_rt.wait_all_closed(timeout=10)
    assert lyria_rt.closed_sessions == lyria_rt.sessions
    assert KEY not in str(lyria_rt.messages)


def test_without_google_s_package_the_provider_is_unavailable_and_listing_providers_works(monkeypatch) -> None:
    """`soundforge providers` in a fresh environment with only the musicgen extra (scripts/check-installs) crashed:
    `find_spec("google.genai")` raises ModuleNotFoundError when no `google` package is installed at all."""
    import sys

    from soundforge.backends.runtime import missing_modules
    from soundforge.client import Client
    from soundforge.config import Config

    for name in [n for n in sys.modules if n.startswith("google.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "google", None)  # `import google` fails, as where nothing provides it
    assert missing_modules("google.genai", "json", "no_such_package.sub") == ["google.genai", "no_such_package.sub"]
    rows = {row.name: row for row in Client(Config.load(user_file=False)).providers()}
    assert not rows["lyria-realtime"].available and "google-genai" in rows["lyria-realtime"].reason
    assert rows["synth"].available
