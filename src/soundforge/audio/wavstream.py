"""16-bit WAV written while a stream runs: a file that grows chunk by chunk (`generate --stream-to`) and the
bytes of an open-ended WAV for HTTP (`serve`'s stream endpoint), from one header writer.

A WAV header states the data size up front. A growing file rewrites the two size fields after every chunk, so
it is a complete, playable file at any moment; an HTTP stream cannot go back, so it states the largest size
(0xFFFFFFFF), which browsers and ffmpeg read as "until the connection ends". Samples are quantised as the saved
files are (`pcm16.quantize`), so the streamed bytes are the saved file's samples.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from types import TracebackType

import numpy as np

from . import AudioArray
from .pcm16 import quantize

#: The size fields of a WAV whose length is not known: read as "until the end of the stream".
OPEN_ENDED = 0xFFFFFFFF
_HEADER_BYTES = 44


def wav_header(channels: int, sample_rate: int, data_bytes: int | None = None) -> bytes:
    """The 44-byte header of a PCM-16 WAV holding `data_bytes` of samples (None: open-ended, for a stream)."""
    if channels not in (1, 2):
        raise ValueError("streamed WAV is mono or stereo")
    data = OPEN_ENDED if data_bytes is None else data_bytes
    riff = OPEN_ENDED if data_bytes is None else 36 + data_bytes
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", data))
    )


def pcm16_frames(audio: AudioArray) -> bytes:
    """Float audio (channels, samples) as interleaved little-endian int16 frames."""
    samples = quantize(audio)
    return np.ascontiguousarray(samples.T, dtype="<i2").tobytes()


class GrowingWav:
    """A WAV file at `path` that chunks are appended to; it is a valid file after every `write`.

    Used as a context manager it removes itself when the block ends with an error (a cancelled stream leaves
    nothing behind); `keep()` or a clean exit leaves it.
    """

    def __init__(self, path: str | os.PathLike[str], channels: int, sample_rate: int) -> None:
        self.path = Path(path)
        self.channels, self.sample_rate = channels, sample_rate
        self.data_bytes = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - held for the stream's life, closed in close()
        self._file.write(wav_header(channels, sample_rate, 0))

    def write(self, audio: AudioArray) -> None:
        """Append a chunk (channels, samples) and update the header's sizes."""
        if audio.shape[0] != self.channels:
            raise ValueError(f"a {audio.shape[0]}-channel chunk for a {self.channels}-channel file")
        frames = pcm16_frames(audio)
        self._file.seek(0, os.SEEK_END)
        self._file.write(frames)
        self.data_bytes += len(frames)
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + self.data_bytes))
        self._file.seek(_HEADER_BYTES - 4)
        self._file.write(struct.pack("<I", self.data_bytes))
        self._file.flush()

    def close(self) -> None:
        """Close the file (kept)."""
        self._file.close()

    def discard(self) -> None:
        """Close and delete the file."""
        self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> GrowingWav:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()
