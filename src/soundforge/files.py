"""Saving tracks: loudness, encoding, embedded tags, JSON sidecar, all written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pcm16, tags
from .audio import (
    AudioFormat,
    decoded_sha256,
    encode,
    format_for,
    normalize_loudness,
    pcm_sha256,
    write_atomic,
)

if TYPE_CHECKING:
    from .result import Track
    from .signing import C2paSigner

SIDECAR_SUFFIX = ".json"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the JSON sidecar of an audio file lives: `track.wav` -> `track.wav.json`."""
    target = Path(path)
    return target.with_name(target.name + SIDECAR_SUFFIX)


def encode_track(track: Track, fmt: AudioFormat, *, loudness: float | None = None
                 ) -> tuple[bytes, dict[str, str]]:
    """Encode a track with its tags; returns the file bytes and the tag fields written into them.

    The file's `AUDIO_SHA256` tag is the hash of the samples the file decodes to, so `verify` can tell
    whether the audio changed after saving (a lossy format is hashed after its own encoding).
    """
    audio = track.audio
    if loudness is not None:
        audio = normalize_loudness(audio, track.sample_rate, loudness)
    if fmt.name == "wav" and audio.shape[0] in (1, 2) and pcm16.matches_libsndfile():
        # 16-bit WAV: the decoded samples follow from the audio alone, so the file is written directly, without
        # libsndfile's trial encode, decode and second encode (soundforge.pcm16).
        samples = pcm16.quantize(audio)
        fields = tags.describe(track, audio_sha256=pcm_sha256(pcm16.dequantize(samples)), loudness=loudness,
                               fmt=fmt)
        data = pcm16.wav_bytes(samples, track.sample_rate, tags.soundfile_strings(fields))
        return tags.embed(data, fmt, fields), fields
    untagged = encode(audio, track.sample_rate, fmt)
    fields = tags.describe(track, audio_sha256=decoded_sha256(untagged), loudness=loudness, fmt=fmt)
    data = encode(audio, track.sample_rate, fmt, strings=tags.soundfile_strings(fields))
    return tags.embed(data, fmt, fields), fields


def sidecar_document(track: Track, fields: dict[str, str], file_name: str) -> dict[str, Any]:
    """The JSON sidecar: the file's tags, the full licence and the full provenance."""
    return {
        "soundforge_sidecar": 1,
        "file": file_name,
        "tags": fields,
        "license": track.license.model_dump(mode="json"),
        "provenance": track.provenance.model_dump(mode="json"),
    }


def save_track(track: Track, path: str | os.PathLike[str], *, format: str | None = None,
               loudness: float | None = None, overwrite: bool = False, sidecar: bool = True,
               sign: C2paSigner | None = None) -> Path:
    """Write `track` to `path` (and its sidecar) atomically; see `Track.save`."""
    target = Path(path)
    fmt = format_for(target, format)
    side = sidecar_path(target)
    for existing in [target, *([side] if sidecar else [])]:
        if existing.exists() and not overwrite:
            raise FileExistsError(f"{existing} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    data, fields = encode_track(track, fmt, loudness=loudness)
    if sign is not None:  # last: C2PA hashes the finished file, tags included
        from .signing import sign_bytes

        data = sign_bytes(data, fmt, fields, sign)
    if sidecar:
        document = json.dumps(sidecar_document(track, fields, target.name), indent=2, ensure_ascii=False)
        write_atomic(side, document.encode("utf-8"), overwrite=overwrite)
    try:
        write_atomic(target, data, overwrite=overwrite)
    except BaseException:
        if sidecar:
            side.unlink(missing_ok=True)  # never leave a sidecar that describes no file
        raise
    return target
