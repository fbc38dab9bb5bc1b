"""`JobFeed`: what one job tells its listeners while it runs: audio chunks (for `GET .../stream`) and events
(progress, chunk, end: for `GET .../events`, Server-Sent Events).

A feed keeps everything from the job's start, so a listener that connects late still hears the track from its
first sample; listeners wait on an event, never on a timer. Feeds live on the server's event loop: callbacks
that come from other threads (the inline engine's backends) reach them through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..audio.wavstream import wav_header


@dataclass(frozen=True)
class PcmChunk:
    """Interleaved 16-bit samples of one streamed chunk, `offset` samples into the track."""

    offset: int
    sample_rate: int
    channels: int
    data: bytes

    @property
    def samples(self) -> int:
        return len(self.data) // (2 * self.channels)


class JobFeed:
    """The chunks and events of one job, for any number of listeners, from its start."""

    def __init__(self) -> None:
        self.chunks: list[PcmChunk] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ended = False
        self._changed = asyncio.Event()

    def chunk(self, chunk: PcmChunk) -> None:
        """A chunk of audio arrived."""
        self.chunks.append(chunk)
        self.events.append(
            (
                "chunk",
                {
                    "offset": chunk.offset,
                    "samples": chunk.samples,
                    "sample_rate": chunk.sample_rate,
                    "seconds": (chunk.offset + chunk.samples) / chunk.sample_rate,
                },
            )
        )
        self._wake()

    def progress(self, phase: str, done: int, total: int) -> None:
        """The job reported progress."""
        self.events.append(("progress", {"phase": phase, "done": done, "total": total}))
        self._wake()

    def end(self, record: dict[str, Any]) -> None:
        """The job ended; `record` is its final record (status, licence and provenance, or the error)."""
        if not self.ended:
            self.events.append(("end", record))
            self.ended = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _follow(self, items: list[Any]) -> AsyncIterator[Any]:
        """The items of `items` (one of this feed's lists) from the first, waiting for more until the end."""
        index = 0
        while True:
            while index < len(items):
                yield items[index]
                index += 1
            if self.ended:
                return
            await self._changed.wait()

    async def wav(self) -> AsyncIterator[bytes]:
        """An open-ended 16-bit WAV of the track: the header with the first chunk, then each chunk's samples."""
        started = False
        async for chunk in self._follow(self.chunks):
            if not started:
                yield wav_header(chunk.channels, chunk.sample_rate) + chunk.data
                started = True
            else:
                yield chunk.data

    async def sse(self) -> AsyncIterator[str]:
        """The events as Server-Sent Events: `event: progress|chunk|end` with a JSON `data` line each."""
        async for kind, data in self._follow(self.events):
            yield sse_event(kind, data)


def sse_event(kind: str, data: dict[str, Any]) -> str:
    """One Server-Sent Event (JSON on one line: no newline can end the event early)."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
