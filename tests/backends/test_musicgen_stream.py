"""MusicGen streaming through transformers on tiny random checkpoints: the real generate() and EnCodec decode.

The streamed audio is compared with the plain transformers call a user would write (tests/backends/test_musicgen.py's
`direct`): the tokens are the same for the same seed, the audio differs by float32 rounding only, because each
chunk is decoded from a window of frames rather than from the whole sequence (backends/musicgen/stream.py).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from soundforge import CancelToken, UnsupportedFeatureError  # noqa: E402
from soundforge.backends.musicgen import stream as streaming  # noqa: E402
from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.testing.musicgen import build_musicgen  # noqa: E402

from .test_musicgen import direct  # noqa: E402

SR, FRAME_RATE = 16000, 500  # the tiny checkpoints: 16 kHz EnCodec, hop 32, 4 codebooks (delay 3)
#: The tiny models' chunks: 20 frames (10 in the first), 40 frames of LSTM context: many windows in 0.4 s.
SETTINGS = {"stream_chunk_seconds": 0.04, "stream_context_seconds": 0.08}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("musicgen-stream")
    return {
        "causal": str(build_musicgen(root / "causal")),
        "non-causal": str(build_musicgen(root / "non-causal", causal=False)),
        "stereo": str(build_musicgen(root / "stereo", stereo=True, causal=False)),
    }


def client(**settings) -> Client:
    return Client(Config.load(user_file=False, providers={"musicgen": {**SETTINGS, **settings}}))


def streamed(folder: str, *, seed: int, duration: float, num_outputs: int = 1, **settings) -> tuple[list, object]:
    with client(**settings).stream(
        "calm piano with strings", provider=f"musicgen:{folder}", duration=duration, seed=seed, num_outputs=num_outputs
    ) as stream:
        chunks = list(stream)
    return chunks, stream.generation


def tracks(chunks: list, count: int) -> list[np.ndarray]:
    out = []
    for index in range(count):
        mine = [c for c in chunks if c.track_index == index]
        assert [c.offset for c in mine] == [0, *[c.end for c in mine[:-1]]]
        out.append(np.concatenate([c.audio for c in mine], axis=1))
    return out


@pytest.mark.parametrize("kind", ["causal", "non-causal", "stereo"])
def test_the_stream_is_the_direct_transformers_call_up_to_float_rounding(checkpoints, kind) -> None:
    folder = checkpoints[kind]
    chunks, generation = streamed(folder, seed=21, duration=0.4, num_outputs=2)
    frames = 200  # 0.4 s at 500 frames/s
    expected = direct(folder, ["calm piano with strings"] * 2, 21, frames + 3)[:, :, :6400]
    got = tracks(chunks, 2)
    assert len([c for c in chunks if c.track_index == 0]) == 11  # 10 frames, then 20 at a time: 11 chunks
    for index in range(2):
        assert got[index].shape == expected[index].shape
        peak = float(np.abs(expected[index]).max())
        assert peak > 0.01 and float(np.abs(got[index] - expected[index]).max()) < 1e-5 * peak * 100
        assert np.array_equal(generation.tracks[index].audio, got[index])  # the generation is what was streamed
    streamed_info = generation.provenance.parameters["streamed"]
    assert streamed_info["lookahead_frames"] == (0 if kind == "causal" else 6)


def test_without_waiting_for_the_lookahead_the_chunks_would_be_wrong(checkpoints, monkeypatch) -> None:
    """The guard that makes the stream right: release samples before the decoder's lookahead and they differ."""
    folder = checkpoints["non-causal"]
    expected = direct(folder, ["calm piano with strings"], 5, 203)[0, :, :6400]
    chunks, _ = streamed(folder, seed=5, duration=0.4)
    assert float(np.abs(tracks(chunks, 1)[0] - expected).max()) < 1e-5
    monkeypatch.setattr(streaming, "lookahead_frames", lambda encoder: 0)
    hasty, _ = streamed(folder, seed=5, duration=0.4)
    assert float(np.abs(tracks(hasty, 1)[0] - expected).max()) > 1e-3


def test_no_whole_decode_at_the_end_and_chunks_come_while_tokens_are_made(checkpoints, monkeypatch) -> None:
    decoded: list[int] = []
    real = transformers.EncodecModel.decode

    def counting(self, audio_codes, *args, **kwargs):
        decoded.append(int(audio_codes.shape[-1]))
        return real(self, audio_codes, *args, **kwargs)

    monkeypatch.setattr(transformers.EncodecModel, "decode", counting)
    events = []
    stream = client().stream(
        "jazz", provider=f"musicgen:{checkpoints['causal']}", duration=0.4, seed=1, on_progress=events.append
    )
    first = next(stream)
    assert first.offset == 0 and first.audio.shape == (1, 320)  # 10 frames of 32 samples
    assert events[-1].done < events[-1].total / 4  # the language model is still at work
    rest = list(stream)
    assert len(decoded) == 1 + len(rest)  # one decode per chunk: generate()'s own decode of everything is skipped
    assert max(decoded) <= 40 + 20 + 10  # context + chunk (+ the last chunk's remainder): never the whole 200


def test_closing_stops_generation_at_the_next_step(checkpoints) -> None:
    events = []
    cancel = CancelToken()
    musicgen = client()
    stream = musicgen.stream(
        "rock", provider=f"musicgen:{checkpoints['causal']}", duration=1.0, seed=2, cancel=cancel,
        on_progress=events.append,
    )  # fmt: skip
    next(stream)
    stream.close()  # returns once the device thread has let go
    seen = len(events)
    assert cancel.cancelled and seen < 503
    # The engine is free again, and the run did not go on in the background.
    again = musicgen.generate("rock", provider=f"musicgen:{checkpoints['causal']}", duration=0.05, seed=2)
    assert again.audio.shape == (1, 800) and len(events) == seen


def test_what_does_not_stream_is_refused_before_work(checkpoints) -> None:
    folder = checkpoints["causal"]
    musicgen = client()
    with pytest.raises(UnsupportedFeatureError, match="window is not streamed") as long_form:
        musicgen.stream("x", provider=f"musicgen:{folder}", duration=40)
    assert long_form.value.field == "streaming" and "synth" in long_form.value.supported_by
    with pytest.raises(UnsupportedFeatureError, match="continuation"):
        musicgen.stream(
            "x", provider=f"musicgen:{folder}", duration=0.5, audio_prompt=(np.zeros((1, 1600), dtype=np.float32), SR)
        )
    assert musicgen.loaded_models() == []  # nothing was loaded for any of them
