"""Streaming through the client: chunks as they are made, then the finished generation (synth and test doubles).

MusicGen's streaming runs on tiny checkpoints in tests/backends/test_musicgen_stream.py; serve's stream in
tests/serve/test_app.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import soundforge
from soundforge import (
    AudioChunk,
    Budget,
    CancelToken,
    GenerationCancelledError,
    InvalidRequestError,
    ProviderError,
    UnsupportedFeatureError,
)
from soundforge.backends.base import AudioChunk as BackendChunk
from soundforge.backends.base import ChunkAssembler, RawGeneration, RawTrack
from soundforge.client import Client
from soundforge.config import Config
from soundforge.ops.cache import DiskCache
from soundforge.testing import FunctionBackend


def joined(chunks: list[AudioChunk], track: int = 0) -> np.ndarray:
    mine = [c for c in chunks if c.track_index == track]
    assert [c.offset for c in mine] == [0, *[c.end for c in mine[:-1]]]  # no gap, no overlap
    return np.concatenate([c.audio for c in mine], axis=1)


@pytest.mark.parametrize(
    "params",
    [
        {"duration": 4.3, "seed": 7},
        {"duration": 2.0, "seed": 3, "channels": 1, "sample_rate": 22050},
        {"duration": 9.0, "seed": 11, "num_outputs": 2},  # past 8 s: the long fade-out spans chunks
    ],
)
def test_synth_chunks_are_the_samples_generate_makes(client: Client, params: dict) -> None:
    whole = client.generate("lofi hip hop", provider="synth", **params)
    with client.stream("lofi hip hop", provider="synth", **params) as stream:
        chunks = list(stream)
    assert all(c.audio.dtype == np.float32 and c.audio.ndim == 2 for c in chunks)
    for index, track in enumerate(whole.tracks):
        assert np.array_equal(joined(chunks, index), track.audio)
    finished = stream.generation
    assert finished is not None and len(finished) == len(whole)
    assert [t.provenance.pcm_sha256 for t in finished] == [t.provenance.pcm_sha256 for t in whole]
    assert finished.license == whole.license and finished.provenance.seed == whole.provenance.seed


def test_chunk_size_follows_the_setting_and_any_size_gives_the_same_audio() -> None:
    sizes = {}
    for seconds in (0.1, 0.5, 3.0):
        client = Client(Config.load(user_file=False, providers={"synth": {"stream_chunk_seconds": seconds}}))
        chunks = list(client.stream("techno", provider="synth", duration=3.0, seed=5))
        sizes[seconds] = (len(chunks), joined(chunks))
    assert [n for n, _ in sizes.values()] == [30, 6, 1]
    assert np.array_equal(sizes[0.1][1], sizes[3.0][1]) and np.array_equal(sizes[0.5][1], sizes[3.0][1])


def test_the_first_chunk_comes_before_the_rest_is_rendered(client: Client) -> None:
    events = []
    stream = client.stream("ambient", provider="synth", duration=60, seed=1, on_progress=events.append)
    first = next(stream)
    assert first.offset == 0 and first.audio.shape[1] == 22050
    assert events and events[-1].done < events[-1].total / 10  # one chunk in, most of the piece still to come
    stream.close()


def test_closing_stops_the_engine_and_releases_the_budget_hold() -> None:
    budget = Budget(1.0)
    cancel = CancelToken()
    client = Client(Config.load(user_file=False), budget=budget)
    stream = client.stream("ambient", provider="synth", duration=30, seed=1, cancel=cancel)
    next(stream)
    stream.close()
    assert cancel.cancelled and budget.reserved == 0.0 and stream.generation is None
    assert list(stream) == []  # closed: nothing more comes
    with pytest.raises(RuntimeError, match="closed before it finished"):
        stream.result()


def test_a_provider_that_cannot_stream_is_refused_with_who_can_or_delivers_whole_when_allowed() -> None:
    def beeps(request, context):
        return [np.full(int(request.duration * 8000), 0.1, dtype=np.float32)] * request.num_outputs

    tone = FunctionBackend(beeps, name="tone", sample_rate=8000)
    client = Client(Config.load(user_file=False), backends={"tone": tone})
    with pytest.raises(UnsupportedFeatureError) as refused:
        client.stream("beep", provider="tone", duration=1)
    assert refused.value.field == "streaming" and "synth" in refused.value.supported_by
    assert "whole=True" in str(refused.value)
    assert tone.calls == 0  # refused before any work
    with client.stream("beep", provider="tone", duration=1, num_outputs=2, whole=True) as stream:
        chunks = list(stream)
    assert [(c.track_index, c.offset, c.audio.shape[1]) for c in chunks] == [(0, 0, 8000), (1, 0, 8000)]
    assert stream.generation is not None and stream.generation.provider == "tone"


def test_auto_routes_a_stream_past_providers_that_cannot_stream() -> None:
    tone = FunctionBackend(
        lambda r, c: np.zeros(int(r.duration * 8000), dtype=np.float32), name="tone", sample_rate=8000
    )
    client = Client(Config.load(user_file=False, auto_order=["tone", "synth"]), backends={"tone": tone})
    assert client.generate("beep", provider="auto", duration=1).provider == "tone"
    generation = client.stream("beep", provider="auto", duration=1, seed=2).result()
    assert generation.provider == "synth"
    skipped = [a for a in generation.provenance.attempts if a.outcome == "skipped"]
    assert [a.error_code for a in skipped] == ["unsupported_feature"]


class _Streamer(FunctionBackend):
    """A streaming test double: two chunks of a ramp, then (optionally) a failure before or after the first."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__(lambda r, c: np.zeros(1, dtype=np.float32), name="streamer", sample_rate=1000)
        self.caps = self.caps.model_copy(update={"streaming": True})
        self.fail = fail

    def stream(self, request, model, context):
        if self.fail == "before":
            raise ProviderError("the engine fell over", provider=self.name)
        assembler = ChunkAssembler()
        half = round(request.duration * 1000) // 2
        ramp = np.linspace(0, 1, 2 * half, dtype=np.float32)[None]
        yield assembler.add(BackendChunk(ramp[:, :half], 0, 1000))
        if self.fail == "after":
            raise ProviderError("lost the connection", provider=self.name)
        context.progress("decode", 1, 2)
        yield assembler.add(BackendChunk(ramp[:, half:], half, 1000))
        return RawGeneration(tracks=[RawTrack(assembler.track(0), 1000, seed=1)])


def test_a_failure_before_the_first_chunk_falls_back_and_one_after_it_ends_the_stream() -> None:
    config = Config.load(user_file=False, fallbacks=["synth"])
    early = Client(config, backends={"streamer": _Streamer("before")})
    generation = early.stream("x", provider="streamer", duration=1, seed=1).result()
    assert generation.provider == "synth" and generation.provenance.attempts[0].outcome == "failed"
    late = Client(config, backends={"streamer": _Streamer("after")})
    stream = late.stream("x", provider="streamer", duration=1)
    assert next(stream).audio.shape == (1, 500)
    with pytest.raises(ProviderError, match="lost the connection"):
        next(stream)
    fine = Client(config, backends={"streamer": _Streamer()}).stream("x", provider="streamer", duration=1)
    assert np.array_equal(fine.result().audio[0], np.linspace(0, 1, 1000, dtype=np.float32))


def test_cancel_token_stops_the_engine_between_steps(client: Client) -> None:
    cancel = CancelToken()
    stream = client.stream("ambient", provider="synth", duration=30, seed=1, cancel=cancel)
    next(stream)
    cancel.cancel()
    with pytest.raises(GenerationCancelledError):
        list(stream)


def test_quality_report_judges_the_streamed_take_and_retry_is_refused(client: Client) -> None:
    generation = client.stream("house", provider="synth", duration=3, seed=2, quality="report").result()
    assert generation.provenance.quality is not None and generation.provenance.quality["passed"] is True
    with pytest.raises(InvalidRequestError, match="already have been heard") as refused:
        client.stream("house", provider="synth", duration=3, quality="retry")
    assert refused.value.field == "quality"


def test_a_cached_result_streams_as_whole_tracks(tmp_path) -> None:
    client = Client(Config.load(user_file=False), cache=DiskCache(tmp_path / "cache"))
    first = client.stream("jazz", provider="synth", duration=2, seed=9).result()
    with client.stream("jazz", provider="synth", duration=2, seed=9) as again:
        chunks = list(again)
    assert len(chunks) == 1 and np.array_equal(chunks[0].audio, first.audio)
    assert again.generation is not None and again.generation.provenance.cache_hit


def test_a_streamed_take_saves_the_same_tagged_file(client: Client, tmp_path) -> None:
    import soundfile

    whole = client.generate("rock", provider="synth", duration=2, seed=4)
    streamed = client.stream("rock", provider="synth", duration=2, seed=4).result()
    a, b = whole.save(tmp_path / "whole.flac")[0], streamed.save(tmp_path / "streamed.flac")[0]
    assert np.array_equal(soundfile.read(a)[0], soundfile.read(b)[0])
    from soundforge.output.tags import read_tags

    tags_a, tags_b = read_tags(a), read_tags(b)
    assert tags_a["LICENSE"] == tags_b["LICENSE"] and tags_a["GENERATED_PCM_SHA256"] == tags_b["GENERATED_PCM_SHA256"]


def test_async_stream_matches_and_can_be_left_early() -> None:
    async def main() -> tuple[np.ndarray, np.ndarray, bool]:
        async with soundforge.astream("chiptune", provider="synth", duration=3, seed=6) as stream:
            chunks = [chunk async for chunk in stream]
        whole = await soundforge.agenerate("chiptune", provider="synth", duration=3, seed=6)
        cancel = CancelToken()
        async with soundforge.astream("chiptune", provider="synth", duration=60, seed=6, cancel=cancel) as early:
            await early.__anext__()
        return joined(chunks), whole.audio, cancel.cancelled and early.generation is None

    streamed, whole, stopped = asyncio.run(main())
    assert np.array_equal(streamed, whole) and stopped
