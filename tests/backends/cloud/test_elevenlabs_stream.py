"""ElevenLabs' `/v1/music/stream` through soundforge's stream, against a fake written from the official SDK
(elevenlabs 2.78 `music/raw_client.py` `stream()`; tests/fakes.py `FakeElevenLabs.stream_mp3`), which the SDK
itself is driven against too."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import soundfile as sf

from soundforge import AuthenticationError, ProviderError, UnsupportedFeatureError
from soundforge.audio import load_audio
from soundforge.backends._mp3stream import Mp3Stream, frame_length

from ...fakes import KEY, _without_info_frame, audio_bytes
from ...helpers import cloud


def sent(seconds: float, rate: int = 44100) -> np.ndarray:
    """What the fake streams for a prompt of this length, decoded whole."""
    return load_audio(_without_info_frame(audio_bytes(seconds, "mp3", rate)))[0]


def test_the_stream_is_the_whole_decode_of_what_was_sent_and_arrives_before_the_end(eleven, downloads) -> None:
    eleven.stream_gate = threading.Event()
    client = cloud("elevenlabs", eleven, downloads)
    stream = client.stream("calm piano", provider="elevenlabs", duration=20)
    first = next(stream)  # the fake has sent four pieces (64 KiB, ~4 s) and waits for the gate
    assert first.offset == 0 and first.sample_rate == 44100 and first.audio.shape[0] == 2
    assert 0 < first.audio.shape[1] < 20 * 44100 / 2
    eleven.stream_gate.set()
    rest = list(stream)
    audio = np.concatenate([first.audio, *[c.audio for c in rest]], axis=1)
    expected = sent(20)[:, : 20 * 44100]
    assert np.array_equal(audio, expected)  # every sample as the whole file decodes, none lost at a seam
    generation = stream.generation
    assert generation is not None and np.array_equal(generation.audio, expected)
    assert generation.provenance.parameters["output_format"] == "mp3_44100_128"
    assert eleven.bodies[-1]["music_length_ms"] == 20000 and eleven.requests == 1
    assert list(downloads.iterdir()) == []  # nothing went through a temp file


def test_official_sdk_streams_from_the_fake(eleven) -> None:
    elevenlabs = pytest.importorskip("elevenlabs.client")
    sdk = elevenlabs.ElevenLabs(api_key=KEY, base_url=eleven.url)
    pieces = list(sdk.music.stream(prompt="calm piano", music_length_ms=5000))
    assert len(pieces) > 1  # it arrived in pieces
    data, rate = sf.read(io.BytesIO(b"".join(pieces)), dtype="float32", always_2d=True)
    assert rate == 44100 and np.array_equal(data.T, sent(5))


def test_a_dropped_stream_fails_once_and_is_not_sent_again(eleven, downloads) -> None:
    eleven.faults.append("drop")
    client = cloud("elevenlabs", eleven, downloads)
    stream = client.stream("calm piano", provider="elevenlabs", duration=30)
    first = next(stream)
    assert first.audio.shape[1] > 0
    with pytest.raises(ProviderError, match="cut off") as cut:
        list(stream)
    assert "does not re-send" in (cut.value.hint or "") and eleven.requests == 1


def test_an_undecodable_stream_is_the_provider_s_fault(eleven, downloads) -> None:
    # Bytes that are no MP3: a ProviderError, as on the plain path, never an InvalidRequestError blaming the caller.
    eleven.faults.append("garbage")
    with pytest.raises(ProviderError, match="cannot be decoded"):
        list(cloud("elevenlabs", eleven, downloads).stream("calm piano", provider="elevenlabs", duration=30))


def test_refusals_come_before_any_request(eleven, downloads) -> None:
    client = cloud("elevenlabs", eleven, downloads)
    with pytest.raises(UnsupportedFeatureError, match="mp3"):
        client.stream("x", provider="elevenlabs", duration=5, extra={"output_format": "opus_48000_128"})
    with pytest.raises(UnsupportedFeatureError) as stems:
        client.stream(
            "x",
            provider="elevenlabs:two_stems_v1",
            duration=5,
            audio_prompt=(np.zeros((2, 44100), dtype=np.float32), 44100),
            audio_prompt_mode="extract",
            stem="vocals",
        )
    assert stems.value.field == "streaming"
    assert eleven.requests == 0
    wrong_key = cloud("elevenlabs", eleven, downloads, api_key="not-the-key")
    with pytest.raises(AuthenticationError):  # the fake's 401, mapped as for a plain call
        next(wrong_key.stream("x", provider="elevenlabs", duration=5))
    assert eleven.requests == 1


def test_mp3_frames_are_found_and_prefixes_decode_as_the_whole() -> None:
    data = _without_info_frame(audio_bytes(12, "mp3", 44100))
    position = 0
    while position < len(data):  # frame by frame from the first header, the lengths land on the end exactly
        found = frame_length(data[position : position + 4])
        assert found is not None and found[1] == 1152
        position += found[0]
    assert position == len(data) and frame_length(b"\x00\x00\x00\x00") is None
    whole = load_audio(data)[0]
    decoder = Mp3Stream(first_seconds=0.5)
    got = []
    for start in range(0, len(data), 1000):  # bytes in awkward pieces, cutting frames anywhere
        got += decoder.feed(data[start : start + 1000])
    assert len(got) > 2
    got += decoder.finish()
    assert np.array_equal(np.concatenate(got, axis=1), whole)


def test_a_whole_stream_that_fails_after_it_arrived_is_replayed_not_paid_again(eleven, downloads, monkeypatch) -> None:
    """The streaming path kept no copy of its paid answer: a fault after the whole MP3 had arrived (here a full disk
    while the song is put together) lost it, and the next call paid again. Now the answer is kept once whole and the
    next stream of the same request replays it from disk: the same audio, no request."""
    import errno

    import soundforge.backends.elevenlabs as elevenlabs
    from soundforge.backends.cloud import CloudJobJournal
    from soundforge.backends.cloud import default_journal_path as default_path

    client = cloud("elevenlabs", eleven, downloads)
    real = elevenlabs._song

    def disk_full_once(*args, **kwargs):
        monkeypatch.setattr(elevenlabs, "_song", real)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(elevenlabs, "_song", disk_full_once)
    heard = []
    with pytest.raises(OSError, match="No space left"):
        for chunk in client.stream("calm piano", provider="elevenlabs", duration=6):
            heard.append(chunk.audio)
    assert eleven.requests == 1
    [kept] = CloudJobJournal(default_path()).all()
    assert kept.kind == "answer" and kept.failed is None
    again = client.stream("calm piano", provider="elevenlabs", duration=6)
    replayed = np.concatenate([chunk.audio for chunk in again], axis=1)
    assert eleven.requests == 1  # replayed from disk: not sent, not paid again
    assert np.array_equal(replayed, np.concatenate(heard, axis=1))
    assert again.generation is not None and np.array_equal(again.generation.audio, replayed)
    assert CloudJobJournal(default_path()).all() == []  # delivered: forgotten, file and all
    assert list(downloads.iterdir()) == []
    list(client.stream("calm piano", provider="elevenlabs", duration=6))
    assert eleven.requests == 2  # after delivery, a new call is a new generation


def test_a_stream_left_early_keeps_nothing(eleven, downloads) -> None:
    """A listener that leaves before the end cancels the download: an incomplete answer is not kept."""
    from soundforge.backends.cloud import CloudJobJournal
    from soundforge.backends.cloud import default_journal_path as default_path

    eleven.stream_gate = threading.Event()
    stream = cloud("elevenlabs", eleven, downloads).stream("calm piano", provider="elevenlabs", duration=20)
    next(stream)
    stream.close()
    eleven.stream_gate.set()
    assert CloudJobJournal(default_path()).all() == []
    assert list(downloads.iterdir()) == []
