"""soundforge.audio.pcm16 against libsndfile: the same samples back, a WAV every reader accepts, the same tags."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from soundforge.audio import FORMATS, decoded_sha256, encode, load_audio, pcm16, pcm_sha256
from soundforge.output.files import encode_track
from soundforge.output.tags import read_tags_bytes


def _awkward(channels: int, n: int = 20000) -> np.ndarray:
    """Random audio plus the values where rounding and clipping could differ: halves, ±1, beyond ±1."""
    rng = np.random.default_rng(channels)
    audio = rng.uniform(-1.2, 1.2, (channels, n)).astype(np.float32)
    edges = np.array(
        [
            0.0,
            1.0,
            -1.0,
            1.5,
            -1.5,
            0.5 / 32767,
            -0.5 / 32767,
            1.5 / 32767,
            2.5 / 32767,
            np.nextafter(np.float32(1.0), np.float32(0.0)),
            1e-9,
            -1e-9,
        ],
        dtype=np.float32,
    )
    audio[:, : edges.size] = edges
    halves = (np.arange(-200, 200, dtype=np.float32) + np.float32(0.5)) / np.float32(32768)
    audio[:, edges.size : edges.size + halves.size] = halves
    return audio


@pytest.mark.parametrize("channels", [1, 2])
def test_quantized_samples_equal_libsndfiles_round_trip(channels: int) -> None:
    audio = _awkward(channels)
    samples = pcm16.quantize(audio)
    via_libsndfile, _ = load_audio(encode(audio, 44100, FORMATS["wav"]))
    assert samples.shape == audio.shape and samples.dtype == np.int16
    assert np.array_equal(pcm16.dequantize(samples), via_libsndfile)


def test_wav_bytes_match_libsndfiles_layout() -> None:
    audio = _awkward(2, 999)
    strings = {
        "title": "a title",
        "artist": "odd",
        "copyright": "© someone",
        "date": "2026-11-28",
        "comment": "line one\nline=two",
        "license": "https://example.org/licence",
    }
    ours = pcm16.wav_bytes(pcm16.quantize(audio), 32000, strings)
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, mode="w", samplerate=32000, channels=2, format="WAV", subtype="PCM_16") as handle:
        for key, value in strings.items():
            setattr(handle, key, value)
        handle.write(np.clip(audio, -1, 1).T)
    assert ours == buffer.getvalue()  # same chunks, same order, same padding, same samples
    with sf.SoundFile(io.BytesIO(ours)) as handle:
        assert (handle.samplerate, handle.channels, handle.frames) == (32000, 2, 999)
        assert handle.title == "a title" and handle.comment == "line one\nline=two"


def test_more_channels_are_left_to_libsndfile() -> None:
    with pytest.raises(ValueError, match="mono or stereo"):
        pcm16.wav_bytes(np.zeros((4, 3), np.int16), 44100)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_saved_hash_is_the_hash_of_the_decoded_file(fmt: str) -> None:
    from soundforge import generate

    track = generate("short test loop", provider="synth", duration=1.0, seed=3).tracks[0]
    data, fields = encode_track(track, FORMATS[fmt])
    assert fields["AUDIO_SHA256"] == decoded_sha256(data) == pcm_sha256(load_audio(data)[0])
    assert read_tags_bytes(data)["AUDIO_SHA256"] == fields["AUDIO_SHA256"]


def test_the_rule_holds_for_the_installed_libsndfile_and_the_fallback_agrees(monkeypatch) -> None:
    from soundforge import generate

    assert pcm16.matches_libsndfile()  # else saving silently takes the slower libsndfile round trip
    track = generate("short test loop", provider="synth", duration=1.0, seed=4).tracks[0]
    fast, fields = encode_track(track, FORMATS["wav"])
    monkeypatch.setattr(pcm16, "matches_libsndfile", lambda: False)
    slow, slow_fields = encode_track(track, FORMATS["wav"])
    assert fields["AUDIO_SHA256"] == slow_fields["AUDIO_SHA256"]
    assert load_audio(fast)[0].tobytes() == load_audio(slow)[0].tobytes()
    assert read_tags_bytes(fast) == read_tags_bytes(slow)
