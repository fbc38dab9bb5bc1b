"""`minimax` (MiniMax Music) over real HTTP against a fake on 127.0.0.1 that follows MiniMax's own clients."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from soundforge import (
    AuthenticationError,
    ContentRefusedError,
    InvalidRequestError,
    LicensePolicy,
    LicensePolicyError,
    ProviderError,
    RateLimitError,
    SoundforgeError,
    UnsupportedFeatureError,
)

from ...helpers import cloud

LYRICS = "[Verse]\nstreetlights hum\n[Chorus]\nwe run"


def test_a_song_from_a_prompt_and_lyrics(minimax, downloads) -> None:
    client = cloud("minimax", minimax, downloads)
    g = client.generate("city pop, female vocals", provider="minimax", duration=15, lyrics=LYRICS)
    assert minimax.bodies[-1] == {
        "model": "music-2.6",
        "prompt": "city pop, female vocals",
        "lyrics": LYRICS,
        "audio_setting": {"sample_rate": 44100, "bitrate": 256000, "format": "mp3"},
        "output_format": "hex",
    }
    assert g.sample_rate == 44100 and g.audio.shape[1] == 15 * 44100  # trimmed from the 20 s song
    prov = g.provenance
    assert prov.parameters["music_duration_ms"] == 20000 and prov.parameters["returned_seconds"] == pytest.approx(
        20, abs=0.1
    )
    assert prov.parameters["trace_id"] and prov.watermarks == []
    assert g.license.id == "LicenseRef-MiniMax-Terms" and g.license.commercial_use.value == "unknown"
    assert not list(downloads.iterdir())


def test_instrumental_url_output_watermark_and_sample_rate(minimax, downloads) -> None:
    client = cloud("minimax", minimax, downloads)
    g = client.generate(
        "ambient piano",
        provider="minimax:music-2.5+",
        duration=25,
        instrumental=True,
        sample_rate=32000,
        extra={"output_format": "url", "aigc_watermark": True},
    )
    body = minimax.bodies[-1]
    assert body["is_instrumental"] is True and "lyrics" not in body and body["aigc_watermark"] is True
    assert body["audio_setting"]["sample_rate"] == 32000 and body["output_format"] == "url"
    # Downloaded through the guard; the 20 s song padded to the 25 s asked for, the real length recorded.
    assert g.audio.shape[1] == 25 * g.sample_rate and not g.audio[:, 21 * g.sample_rate :].any()
    assert g.provenance.watermarks == ["AIGC watermark (MiniMax)"] and not list(downloads.iterdir())
    written = client.generate("x", provider="minimax", duration=5, extra={"lyrics_optimizer": True})
    assert minimax.bodies[-1]["lyrics_optimizer"] is True and written.audio.shape[1] == 5 * 44100


def test_limits_are_checked_before_anything_is_sent(minimax, downloads) -> None:
    client = cloud("minimax", minimax, downloads)
    cases = [
        ({"lyrics": None}, InvalidRequestError, "needs lyrics"),
        ({"lyrics": "x" * 3501}, InvalidRequestError, "1-3500"),
        ({"prompt": "p" * 2001, "lyrics": LYRICS}, InvalidRequestError, "2000"),
        ({"lyrics": LYRICS, "extra": {"bitrate": 192000}}, InvalidRequestError, "bitrates"),
        ({"lyrics": LYRICS, "extra": {"output_format": "base64"}}, InvalidRequestError, "hex"),
        ({"lyrics": LYRICS, "extra": {"voice": "alto"}}, InvalidRequestError, "voice"),
        ({"lyrics": LYRICS, "sample_rate": 48000}, UnsupportedFeatureError, "sample_rate"),
        ({"lyrics": LYRICS, "seed": 3}, UnsupportedFeatureError, "seed"),
    ]
    for fields, kind, message in cases:
        prompt = fields.pop("prompt", "x")
        with pytest.raises(kind, match=message):
            client.generate(prompt, provider="minimax", duration=10, **fields)
    with pytest.raises(UnsupportedFeatureError, match="instrumental"):  # music-2.5 has no instrumental mode
        client.generate("x", provider="minimax:music-2.5", duration=10, instrumental=True)
    assert minimax.requests == 0


def test_base_resp_codes_map_to_the_error_tree(minimax, downloads) -> None:
    client = cloud("minimax", minimax, downloads, max_retries=2)
    with pytest.raises(ContentRefusedError, match="1026"):
        client.generate("x", provider="minimax", duration=5, lyrics="a forbidden line")
    with pytest.raises(AuthenticationError, match="1004") as bad:
        cloud("minimax", minimax, downloads, api_key="mm-wrong-789").generate(
            "x", provider="minimax", duration=5, lyrics=LYRICS
        )
    assert "mm-wrong-789" not in str(bad.value.to_dict())
    minimax.faults.append("broke")
    with pytest.raises(ProviderError, match="1008") as broke:
        client.generate("x", provider="minimax", duration=5, lyrics=LYRICS)
    assert "top up" in (broke.value.hint or "")
    # 1002 made nothing: sent again after a backoff, up to max_retries, then a RateLimitError.
    minimax.faults.extend(["busy", "busy"])
    assert client.generate("x", provider="minimax", duration=5, lyrics=LYRICS).audio.shape[1] == 5 * 44100
    minimax.faults.extend(["busy"] * 3)
    with pytest.raises(RateLimitError, match="1002"):
        client.generate("x", provider="minimax", duration=5, lyrics=LYRICS)
    minimax.faults.append("malformed")
    with pytest.raises(ProviderError, match="malformed"):
        client.generate("x", provider="minimax", duration=5, lyrics=LYRICS)


def test_a_commercial_policy_refuses_it_until_the_terms_are_read(minimax, downloads) -> None:
    from soundforge.client import Client
    from soundforge.config import Config

    from ...fakes import KEY

    settings = {"base_url": minimax.url, "api_key": KEY, "download_dir": str(downloads)}
    config = Config.load(user_file=False, providers={"minimax": settings})
    with pytest.raises(LicensePolicyError, match="unknown"):
        Client(config, policy=LicensePolicy.commercial()).generate("x", provider="minimax", duration=5, lyrics=LYRICS)
    assert minimax.requests == 0


def test_fault_suite_loses_nothing_and_bills_once(minimax, downloads) -> None:
    rng = np.random.default_rng(9)
    faults = ["429", "503", "500", "truncate", "busy"]
    minimax.faults.extend(str(rng.choice(faults)) if rng.random() < 0.15 else "ok" for _ in range(400))
    client = cloud("minimax", minimax, downloads, max_concurrency=4)

    async def run():
        return await asyncio.gather(
            *(client.agenerate(f"song {i}", provider="minimax", duration=2, lyrics=LYRICS) for i in range(24)),
            return_exceptions=True,
        )

    results = asyncio.run(run())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, SoundforgeError) for f in failures), failures[:3]
    assert all("cut off" in str(f) for f in failures) and len(failures) < 10  # only an unknown outcome fails
    # A cut-off answer was billed and is never re-sent: one song made per request at most.
    assert minimax.billed == len(results) and minimax.delivered == len(results) - len(failures)
    assert not list(downloads.iterdir())


def _song_file(tmp_path, seconds: float, rate: int = 22050):
    """A stereo reference track on disk, as a user has one."""
    import soundfile as sf

    t = np.arange(round(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 220 * t)
    path = tmp_path / f"reference-{seconds:g}.wav"
    sf.write(path, np.stack([left, np.roll(left, 50)]).T, rate, subtype="PCM_16")
    return path


def test_music_3_is_a_model_with_instrumental_mode_and_a_url_answer(minimax, downloads) -> None:
    client = cloud("minimax", minimax, downloads)
    g = client.generate("cinematic orchestral", provider="minimax:music-3.0", duration=10, instrumental=True)
    assert minimax.bodies[-1]["model"] == "music-3.0" and minimax.bodies[-1]["is_instrumental"] is True
    assert g.provenance.model == "music-3.0" and g.audio.shape[1] == 10 * 44100
    # MiniMax's SDK types a URL answer as data.audio_url (its MCP server reads data.audio): both are read.
    minimax.url_field = "audio_url"
    h = client.generate("x", provider="minimax:music-3.0", duration=5, lyrics=LYRICS, extra={"output_format": "url"})
    assert h.audio.shape[1] == 5 * 44100 and not list(downloads.iterdir())


def test_lyrics_optimizer_goes_with_neither_lyrics_nor_instrumental(minimax, downloads) -> None:
    """MiniMax's SDK refuses both pairs (`validateParams`); they were sent and billed-or-refused before."""
    client = cloud("minimax", minimax, downloads)
    for fields in ({"lyrics": LYRICS}, {"instrumental": True}):
        with pytest.raises(InvalidRequestError, match="lyrics_optimizer") as info:
            client.generate("x", provider="minimax", duration=5, extra={"lyrics_optimizer": True}, **fields)
        assert info.value.field == "extra"
    assert minimax.requests == 0


def test_a_cover_sends_the_reference_and_new_lyrics_go_through_preprocessing(minimax, downloads, tmp_path) -> None:
    client = cloud("minimax", minimax, downloads)
    reference = _song_file(tmp_path, 8.0)
    g = client.generate(
        "indie folk, acoustic guitar, warm male vocal",
        provider="minimax:music-cover",
        duration=20,
        audio_prompt=str(reference),
        audio_prompt_mode="cover",
        seed=42,
        channels=1,
    )
    body = minimax.bodies[-1]
    assert body["model"] == "music-cover" and body["seed"] == 42 and body["audio_setting"]["channel"] == 1
    assert minimax.reference_seconds(body["audio_base64"]) == pytest.approx(8.0)
    assert "lyrics" not in body and minimax.preprocessed == 0
    assert "audio_base64" not in g.provenance.parameters and g.audio.shape == (1, 20 * 44100)
    # New lyrics: the reference is preprocessed first, and the cover names the feature, not the audio.
    client.generate(
        "jazz, piano, slow and smoky",
        provider="minimax:music-cover-free",
        duration=20,
        audio_prompt=str(reference),
        lyrics=LYRICS,
    )
    preprocess, cover = minimax.bodies[-2:]
    assert preprocess["model"] == "music-cover" and "audio_base64" in preprocess and minimax.preprocessed == 1
    assert cover["cover_feature_id"] in minimax.features and "audio_base64" not in cover
    assert cover["lyrics"] == LYRICS and cover["model"] == "music-cover-free"


def test_a_cover_is_checked_before_anything_is_sent(minimax, downloads, tmp_path) -> None:
    client = cloud("minimax", minimax, downloads)
    reference, short = _song_file(tmp_path, 8.0), _song_file(tmp_path, 3.0)
    style = "indie folk, acoustic guitar"
    cases = [
        ({}, InvalidRequestError, "audio_prompt", "reference track: it needs one"),
        ({"audio_prompt": str(short)}, InvalidRequestError, "audio_prompt", "6 s to 6 min"),
        ({"audio_prompt": str(reference), "prompt": "folk"}, InvalidRequestError, "prompt", "10-300"),
        ({"audio_prompt": str(reference), "lyrics": "la"}, InvalidRequestError, "lyrics", "10-1000"),
        ({"audio_prompt": str(reference), "seed": 2_000_000}, InvalidRequestError, "seed", "0 to 1000000"),
        ({"audio_prompt": str(reference), "instrumental": True}, UnsupportedFeatureError, "instrumental", ""),
        ({"audio_prompt": str(reference), "extra": {"aigc_watermark": True}}, InvalidRequestError, "extra", ""),
        (
            {"audio_prompt": str(reference), "audio_prompt_mode": "variation", "strength": 0.5},
            UnsupportedFeatureError,
            "audio_prompt_mode",
            "",
        ),
    ]
    for fields, kind, field, message in cases:
        prompt = fields.pop("prompt", style)
        with pytest.raises(kind, match=message or None) as info:
            client.generate(prompt, provider="minimax:music-cover", duration=10, **fields)
        assert info.value.field in (field, "strength"), (fields, info.value)
    # The song models take no reference: refused by name, pointing to the cover models.
    with pytest.raises(UnsupportedFeatureError) as refused:
        client.generate(style, provider="minimax:music-3.0", duration=10, lyrics=LYRICS, audio_prompt=str(reference))
    assert refused.value.field == "audio_prompt"
    assert minimax.requests == 0
