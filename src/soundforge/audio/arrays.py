"""Audio arrays, formats, loudness and hashing shared by every backend and by file output.

Audio inside soundforge is always a float32 numpy array shaped (channels, samples) with its sample rate
kept beside it. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidRequestError

AudioArray = npt.NDArray[np.float32]

#: IPTC digital source type for media made by a model trained on sampled content.
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: IPTC digital source type for media made by an algorithm with no training data (the `synth` backend).
ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"


@dataclass(frozen=True)
class AudioFormat:
    """One output container soundfile/libsndfile can write without ffmpeg."""

    name: str
    extension: str
    sf_format: str
    sf_subtype: str
    lossless: bool
    mime: str


FORMATS: dict[str, AudioFormat] = {
    "wav": AudioFormat("wav", ".wav", "WAV", "PCM_16", True, "audio/wav"),
    "flac": AudioFormat("flac", ".flac", "FLAC", "PCM_16", True, "audio/flac"),
    "ogg": AudioFormat("ogg", ".ogg", "OGG", "VORBIS", False, "audio/ogg"),
    "mp3": AudioFormat("mp3", ".mp3", "MP3", "MPEG_LAYER_III", False, "audio/mpeg"),
}


def format_for(path: str | os.PathLike[str] | None, explicit: str | None = None) -> AudioFormat:
    """Pick the output format from an explicit name or else from the file extension."""
    if explicit:
        key = explicit.lower().lstrip(".")
        if key not in FORMATS:
            raise InvalidRequestError(
                f"unknown audio format {explicit!r}", field="format", hint=f"use one of: {', '.join(FORMATS)}"
            )
        return FORMATS[key]
    if path is None:
        return FORMATS["wav"]
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise InvalidRequestError(
            f"cannot tell the audio format from {str(path)!r}",
            field="format",
            hint=f"end the file name with one of {', '.join('.' + f for f in FORMATS)} or pass format=...",
        )
    return FORMATS[suffix]


def as_audio(array: Any, *, name: str = "audio") -> AudioArray:
    """Return `array` as contiguous float32 shaped (channels, samples); 1-D input becomes mono.

    Raises InvalidRequestError for empty, non-finite or more-than-2-D input.
    """
    data = np.asarray(array, dtype=np.float32)
    if data.ndim == 1:
        data = data[np.newaxis, :]
    if data.ndim != 2:
        raise InvalidRequestError(f"{name} must be 1-D or (channels, samples); got shape {data.shape}", field=name)
    if data.shape[0] > data.shape[1] and data.shape[1] <= 8:
        # (samples, channels) as soundfile returns it: turn it round rather than make 40,000 channels.
        data = data.T
    if data.shape[1] == 0:
        raise InvalidRequestError(f"{name} holds no samples", field=name)
    if not np.all(np.isfinite(data)):
        raise InvalidRequestError(f"{name} contains NaN or infinite samples", field=name)
    return np.ascontiguousarray(data)


def pcm_sha256(audio: AudioArray) -> str:
    """sha256 of the audio as little-endian float32, channels-first: the fingerprint recorded in provenance."""
    data = np.ascontiguousarray(audio, dtype="<f4")
    return hashlib.sha256(data.data).hexdigest()  # the same bytes as tobytes(), without copying them


def load_audio(source: str | os.PathLike[str] | bytes) -> tuple[AudioArray, int]:
    """Read an audio file (path or encoded bytes) into (channels, samples) float32 and its sample rate."""
    import soundfile as sf

    try:
        if isinstance(source, bytes):
            data, rate = sf.read(io.BytesIO(source), dtype="float32", always_2d=True)
        else:
            data, rate = sf.read(os.fspath(source), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, MemoryError) as exc:
        # MemoryError: a damaged or crafted header claiming more frames than could ever be read.
        where = "the given bytes" if isinstance(source, bytes) else repr(os.fspath(source))
        raise InvalidRequestError(
            f"cannot read audio from {where}: {type(exc).__name__}: {exc}",
            field="audio",
            hint="use a WAV, FLAC, OGG or MP3 file",
        ) from exc
    return np.ascontiguousarray(data.T, dtype=np.float32), int(rate)


def resample(audio: AudioArray, rate_in: int, rate_out: int) -> AudioArray:
    """Band-limited resampling of (channels, samples) audio by the FFT method (no scipy needed).

    Good for conditioning inputs (melody, audio prompts) of a few tens of seconds; the result has
    round(samples * rate_out / rate_in) samples.
    """
    if rate_in == rate_out:
        return audio
    n_in = audio.shape[1]
    n_out = max(1, round(n_in * rate_out / rate_in))
    # Pad against wrap-around at the edges, resample, then cut the padding back off.
    pad = min(n_in, max(64, rate_in // 50))
    padded = np.pad(audio.astype(np.float64), ((0, 0), (pad, pad)), mode="reflect")
    spectrum = np.fft.rfft(padded, axis=1)
    n_padded_out = round(padded.shape[1] * rate_out / rate_in)
    keep = min(spectrum.shape[1], n_padded_out // 2 + 1)
    out_spectrum = np.zeros((audio.shape[0], n_padded_out // 2 + 1), dtype=complex)
    out_spectrum[:, :keep] = spectrum[:, :keep]
    out = np.fft.irfft(out_spectrum, n=n_padded_out, axis=1) * (n_padded_out / padded.shape[1])
    start = round(pad * rate_out / rate_in)
    return np.ascontiguousarray(out[:, start : start + n_out], dtype=np.float32)


def to_channels(audio: AudioArray, channels: int) -> AudioArray:
    """Mix down to mono or duplicate mono to stereo."""
    if audio.shape[0] == channels:
        return audio
    if channels == 1:
        return np.ascontiguousarray(audio.mean(axis=0, keepdims=True), dtype=np.float32)
    return np.ascontiguousarray(np.repeat(audio[:1], channels, axis=0), dtype=np.float32)


#: Frames handed to libsndfile per write call when encoding.
_ENCODE_BLOCK_FRAMES = 1 << 15


def encode(audio: AudioArray, sample_rate: int, fmt: AudioFormat, strings: dict[str, str] | None = None) -> bytes:
    """Encode audio to `fmt` in memory, with libsndfile's string tags (RIFF INFO / Vorbis comments / ID3 basics).

    MP3 without `strings` goes through ffmpeg's LAME where it is installed (`soundforge.audio.lame`): the frames
    alone, with LAME's info tag, for `soundforge.output` to put its own ID3 tags around.
    """
    import soundfile as sf

    if fmt.name == "mp3" and not strings:
        from . import lame  # ffmpeg's LAME where installed (three times faster); libsndfile's otherwise

        if lame.available() and (frames := lame.encode_mp3(audio, sample_rate)) is not None:
            return frames
    buffer = io.BytesIO()
    clipped = np.clip(audio, -1.0, 1.0).T
    extra: dict[str, Any] = {}
    if fmt.name == "mp3":
        extra = {"compression_level": 0.0, "bitrate_mode": "CONSTANT"}
    with sf.SoundFile(
        buffer,
        mode="w",
        samplerate=sample_rate,
        channels=audio.shape[0],
        format=fmt.sf_format,
        subtype=fmt.sf_subtype,
        **extra,
    ) as handle:
        for key, value in (strings or {}).items():
            setattr(handle, key, value)
        # In blocks: libsndfile's Ogg Vorbis encoder crashes the process (SIGSEGV) on one long write (tens of
        # seconds of stereo in one call); blocks give the same bytes for every format and bound its buffers.
        for start in range(0, clipped.shape[0], _ENCODE_BLOCK_FRAMES):
            handle.write(clipped[start : start + _ENCODE_BLOCK_FRAMES])
    return buffer.getvalue()


def decoded_sha256(data: bytes) -> str:
    """sha256 of the PCM a file decodes to (float32, channels-first): what `soundforge verify` recomputes."""
    audio, _ = load_audio(data)
    return pcm_sha256(audio)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write bytes to `path` through a temp file in the same folder and a rename: never a partial file.

    Raises FileExistsError when the file exists and `overwrite` is false.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A temp name of its own per writer (not per process): two threads saving one record at once must not
    # write, rename or delete each other's half-written file.
    # (open mode "x" and a random name; mkstemp would make the file private, 0600, unlike any other save).
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            # link() fails if the target appeared meanwhile, so a concurrent writer is never clobbered.
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it") from None
            except OSError:
                os.replace(tmp, target)  # file systems without hard links
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
