"""The audio wing: pure signal code, no routing, no files on disk beyond encoding bytes.

`arrays` (sample arrays, formats, encoding and hashing: re-exported here, so `from soundforge.audio import …`
reads as before), `pcm16` (16-bit WAV written directly), `loudness`, `edits` (trim and fades), `loops` (the loop
cut), `quality` (the quality gate's checks), `wavstream` (streamed WAV). It imports only `errors`, `music` and the
request vocabulary.
"""

from __future__ import annotations

from .arrays import (
    ALGORITHMIC_MEDIA,
    FORMATS,
    TRAINED_ALGORITHMIC_MEDIA,
    AudioArray,
    AudioFormat,
    as_audio,
    decoded_sha256,
    encode,
    format_for,
    load_audio,
    pcm_sha256,
    resample,
    to_channels,
    write_atomic,
)

__all__ = [
    "ALGORITHMIC_MEDIA",
    "FORMATS",
    "TRAINED_ALGORITHMIC_MEDIA",
    "AudioArray",
    "AudioFormat",
    "as_audio",
    "decoded_sha256",
    "encode",
    "format_for",
    "load_audio",
    "pcm_sha256",
    "resample",
    "to_channels",
    "write_atomic",
]
