"""Streams of audio as it is made: `AudioStream` (from `Client.stream`) and `AsyncAudioStream` (`Client.astream`).

A stream yields `AudioChunk`s (float32, channels-first, each with its sample offset in its track) while the
engine works. When the last chunk has been taken, `stream.generation` holds the finished `Generation`: the same
licence, provenance and PCM hash as `generate` gives, built from exactly the samples that were streamed.
Stopping early (leaving the `with` block, `close()`, breaking out of a loop over a stream nobody else holds)
stops the engine at its next step and releases what the call held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any

from ..backends.base import AudioChunk, CancelToken, Steering
from ..result import Generation

log = logging.getLogger("soundforge")

#: What the client's stream generator is: chunks, then the finished generation as its return value.
ChunkSource = Generator[AudioChunk, None, Generation]


class AudioStream(Iterator[AudioChunk]):
    """Audio chunks as they are made, then the finished generation (`generation`, or `result()`).

    Use it as a context manager so that leaving early stops the engine at once:

        with client.stream("rain on a tin roof", provider="synth", duration=60) as stream:
            for chunk in stream:
                speaker.write(chunk.audio.T)
        stream.generation.save("rain.wav")
    """

    def __init__(self, source: ChunkSource, cancel: CancelToken, steering: Steering | None = None) -> None:
        self._source = source
        self._cancel = cancel
        self._steering = steering or Steering()
        #: The finished generation, once the last chunk has been taken (None before, and after a stop).
        self.generation: Generation | None = None

    def __iter__(self) -> AudioStream:
        return self

    def __next__(self) -> AudioChunk:
        try:
            return next(self._source)
        except StopIteration as done:
            if done.value is not None:
                self.generation = done.value
            raise StopIteration from None

    def result(self) -> Generation:
        """Take the chunks not taken yet and return the finished generation."""
        for _ in self:
            pass
        if self.generation is None:
            raise RuntimeError("the stream was closed before it finished")
        return self.generation

    def close(self) -> None:
        """Stop: the engine stops at its next step; what the call held is released. Safe to call twice."""
        self._cancel.cancel()
        self._source.close()

    def steer(self, **changes: Any) -> None:
        """Change the music while it plays, for a provider that takes changes (lyria-realtime: `prompts`, `bpm`,
        `density`, `brightness`, `key`, ... — its page in docs/providers/ lists them). The change is checked here
        (a value the model cannot take raises `InvalidRequestError` and nothing is sent) and reaches the session
        before its next chunks; a stream whose provider cannot be steered raises `UnsupportedFeatureError`."""
        self._steering.send(changes)

    def to_async(self) -> AsyncAudioStream:
        """The same stream for async code (nothing taken from it yet): each chunk is made on a worker thread."""
        return AsyncAudioStream(self._source, self._cancel, self._steering)

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class AsyncAudioStream(AsyncIterator[AudioChunk]):
    """`AudioStream` for async code: `async for chunk in stream`, `await stream.result()`, `async with`.

    The engine runs on a worker thread, so the event loop stays free between chunks; cancelling the task that
    waits for a chunk stops the engine as closing the stream does.
    """

    def __init__(self, source: ChunkSource, cancel: CancelToken, steering: Steering | None = None) -> None:
        self._stream = AudioStream(source, cancel, steering)
        self._cancel = cancel
        self._busy: asyncio.Future[AudioChunk | None] | None = None

    def steer(self, **changes: Any) -> None:
        """`AudioStream.steer`: change the music while it plays (checked at once; it never blocks)."""
        self._stream.steer(**changes)

    @property
    def generation(self) -> Generation | None:
        """The finished generation, once the last chunk has been taken."""
        return self._stream.generation

    def __aiter__(self) -> AsyncAudioStream:
        return self

    async def __anext__(self) -> AudioChunk:
        loop = asyncio.get_running_loop()
        self._busy = loop.run_in_executor(None, _next_or_none, self._stream)
        try:
            chunk = await asyncio.shield(self._busy)
        except asyncio.CancelledError:
            self._cancel.cancel()
            raise
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def result(self) -> Generation:
        """Take the chunks not taken yet and return the finished generation."""
        async for _ in self:
            pass
        if self.generation is None:
            raise RuntimeError("the stream was closed before it finished")
        return self.generation

    async def aclose(self) -> None:
        """Stop the engine and release the call (waits for a chunk being made to be abandoned)."""
        self._cancel.cancel()
        busy = self._busy
        if busy is not None and not busy.done():
            try:
                await busy
            except Exception as exc:  # the listener is leaving: the chunk's error (usually the cancel) has no reader
                log.debug("a stream closed while its next chunk failed: %s", exc)
        await asyncio.to_thread(self._stream.close)

    async def __aenter__(self) -> AsyncAudioStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()


def _next_or_none(stream: AudioStream) -> AudioChunk | None:
    """The next chunk, or None at the end (StopIteration cannot cross a future)."""
    return next(stream, None)
