"""EnCodec tokens: audio to discrete codes and back, with the licence of the codec weights on every result.

EnCodec is the neural codec under MusicGen and AudioGen: language models generate its tokens, and token
workflows (editing, caching, training data) start here. Engines: transformers' `EncodecModel` with the MIT
24 kHz (mono) and 48 kHz (stereo) weights, or MusicGen's 32 kHz codec (CC-BY-NC-4.0).

    from soundforge.codec import Codec
    codec = Codec("facebook/encodec_24khz")
    tokens = codec.encode(audio, 44100, bandwidth=6.0)   # resampled and down-mixed to what the codec takes
    tokens.save("clip.sfcodes.npz")                      # codes + metadata + licence
    audio, rate = codec.decode(tokens)

The licence describes the codec weights' terms (what you may do with their output); rights in the input
audio stay whatever they were.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import AudioArray, as_audio, resample, to_channels, write_atomic
from .backends.runtime import run_on_device_thread
from .errors import InvalidRequestError, ModelNotAvailableError, ProviderUnavailableError
from .licences.licensing import License, LicenseRegistry

if TYPE_CHECKING:
    from .result import Track

DEFAULT_MODEL = "facebook/encodec_24khz"
MODELS = ("facebook/encodec_24khz", "facebook/encodec_48khz", "facebook/encodec_32khz")
FORMAT_VERSION = 1
EXTRA = 'pip install "soundforge[musicgen]" (torch + transformers)'


@dataclass(frozen=True)
class Tokens:
    """EnCodec codes of one clip and what is needed to decode them.

    `codes` is int64 shaped (chunks, codebooks, frames): one chunk for codecs that encode a whole clip at once
    (24 and 32 kHz), several for the 48 kHz codec, which works on overlapping 1 s chunks with a scale each.
    """

    codes: np.ndarray
    scales: tuple[float, ...] | None
    last_frame_pad_length: int
    sample_rate: int
    channels: int
    num_samples: int
    bandwidth: float
    model: str
    license: License = field(repr=False)
    model_revision: str | None = None

    @property
    def codebooks(self) -> int:
        """Number of codebooks (quantisers) per frame; set by the bandwidth."""
        return int(self.codes.shape[1])

    @property
    def duration(self) -> float:
        """Length of the encoded audio in seconds."""
        return self.num_samples / self.sample_rate

    def metadata(self) -> dict[str, Any]:
        """Everything but the codes, JSON-ready (stored next to them by `save`)."""
        return {
            "soundforge_codes": FORMAT_VERSION,
            "model": self.model,
            "model_revision": self.model_revision,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "num_samples": self.num_samples,
            "bandwidth": self.bandwidth,
            "scales": list(self.scales) if self.scales is not None else None,
            "last_frame_pad_length": self.last_frame_pad_length,
            "license": self.license.model_dump(mode="json"),
        }

    def to_bytes(self) -> bytes:
        """An `.npz` file: the codes as int16 when they fit (codebooks have at most 2048 entries) and the metadata."""
        buffer = io.BytesIO()
        small = self.codes.astype(np.int16) if self.codes.max(initial=0) < 2**15 else self.codes
        np.savez_compressed(
            buffer, codes=small, metadata=np.frombuffer(json.dumps(self.metadata()).encode("utf-8"), dtype=np.uint8)
        )
        return buffer.getvalue()

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the tokens (and their licence) to an `.npz` file atomically."""
        return write_atomic(path, self.to_bytes(), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | bytes) -> Tokens:
        """Read tokens written by `save`; InvalidRequestError when the file is not one."""
        try:
            with np.load(io.BytesIO(path) if isinstance(path, bytes) else path, allow_pickle=False) as data:
                codes = data["codes"].astype(np.int64)
                meta = json.loads(bytes(data["metadata"]).decode("utf-8"))
        except (OSError, KeyError, ValueError) as exc:
            raise InvalidRequestError(f"not a soundforge token file: {exc}", field="tokens") from None
        if meta.get("soundforge_codes") != FORMAT_VERSION or codes.ndim != 3:
            raise InvalidRequestError("not a soundforge token file (unknown version or shape)", field="tokens")
        scales = meta.get("scales")
        return cls(
            codes=codes,
            scales=tuple(scales) if scales is not None else None,
            last_frame_pad_length=int(meta["last_frame_pad_length"]),
            sample_rate=int(meta["sample_rate"]),
            channels=int(meta["channels"]),
            num_samples=int(meta["num_samples"]),
            bandwidth=float(meta["bandwidth"]),
            model=str(meta["model"]),
            license=License.model_validate(meta["license"]),
            model_revision=meta.get("model_revision"),
        )


def codec_license(model: str, registry: LicenseRegistry | None = None) -> License:
    """The licence of a codec's weights: MIT for the 24/48 kHz release, CC-BY-NC-4.0 for MusicGen's 32 kHz codec,
    unknown (inherited from wherever the weights came from) for a local folder."""
    return (registry or LicenseRegistry.default()).license_for("encodec", model)


class Codec:
    """One loaded EnCodec model (transformers `EncodecModel`), reused for every encode and decode.

    Args:
        model: hub id (one of `MODELS`, from the local Hugging Face cache) or a folder written by save_pretrained().
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", …
        allow_download: fetch hub weights that are not cached yet (never when HF_HUB_OFFLINE is set).
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", allow_download: bool = False) -> None:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
            raise ProviderUnavailableError("encodec", "torch and transformers are not installed", fix=EXTRA)
        from .backends.runtime import pick_device, resolve_checkpoint, revision

        # The weights first: a missing checkpoint is said at once, not after seconds of importing transformers.
        folder = resolve_checkpoint(
            "encodec",
            model,
            {"allow_download": allow_download},
            marker="config.json",
            point_to="give a folder written by save_pretrained() as the model (CLI: `soundforge codec ... -m FOLDER`)",
        )
        from transformers import EncodecModel

        self.model_id = model
        self.revision = revision(folder)
        self.device = pick_device(device)

        # Loads and forward passes run on the device's compute thread (see soundforge.backends.runtime).
        def load() -> Any:
            net: Any = EncodecModel.from_pretrained(folder)
            return net.to(self.device).eval()

        self.net: Any = run_on_device_thread(self.device, load)
        config = self.net.config
        if config.model_type != "encodec":
            raise ModelNotAvailableError("encodec", model, f"{folder} holds a {config.model_type} model, not EnCodec")
        self.sample_rate = int(config.sampling_rate)
        self.channels = int(config.audio_channels)
        self.bandwidths = tuple(float(b) for b in config.target_bandwidths)
        self.license = codec_license(model)
        self._lock = threading.Lock()  # one forward pass at a time per loaded model

    def __repr__(self) -> str:
        return (
            f"Codec({self.model_id!r}, {self.sample_rate} Hz, {self.channels} ch, bandwidths {self.bandwidths}, "
            f"licence {self.license.id})"
        )

    def encode(self, audio: Any, sample_rate: int, *, bandwidth: float | None = None) -> Tokens:
        """Encode audio shaped (channels, samples) or (samples,), resampled and mixed to the codec's format.

        `bandwidth` (kbps) picks how many codebooks are kept; default: the codec's smallest.
        """
        import torch

        chosen = self.bandwidths[0] if bandwidth is None else float(bandwidth)
        if chosen not in self.bandwidths:
            raise InvalidRequestError(
                f"bandwidth {bandwidth} is not offered by {self.model_id}; choose one of "
                f"{', '.join(f'{b:g}' for b in self.bandwidths)}",
                field="bandwidth",
            )
        samples = as_audio(audio)
        if sample_rate != self.sample_rate:
            samples = resample(samples, sample_rate, self.sample_rate)
        samples = to_channels(samples, self.channels)
        if samples.shape[1] == 0:
            raise InvalidRequestError("cannot encode empty audio", field="audio")

        def run() -> Any:
            with self._lock, torch.inference_mode():
                return self.net.encode(
                    torch.from_numpy(np.ascontiguousarray(samples))[None].to(self.device),
                    bandwidth=chosen,
                    return_dict=True,
                )

        out = run_on_device_thread(self.device, run)
        codes = out.audio_codes[:, 0].cpu().numpy().astype(np.int64)
        scales = None if out.audio_scales[0] is None else tuple(float(s.reshape(-1)[0]) for s in out.audio_scales)
        return Tokens(
            codes=codes,
            scales=scales,
            last_frame_pad_length=int(out.last_frame_pad_length or 0),
            sample_rate=self.sample_rate,
            channels=self.channels,
            num_samples=int(samples.shape[1]),
            bandwidth=chosen,
            model=self.model_id,
            license=self.license,
            model_revision=self.revision,
        )

    def decode(self, tokens: Tokens) -> tuple[AudioArray, int]:
        """Decode tokens to float32 audio shaped (channels, samples), trimmed to the encoded length."""
        import torch

        if tokens.sample_rate != self.sample_rate or tokens.channels != self.channels:
            raise InvalidRequestError(
                f"these tokens come from {tokens.model} ({tokens.sample_rate} Hz, "
                f"{tokens.channels} ch); decode them with that codec",
                field="tokens",
            )
        codes = torch.from_numpy(tokens.codes)[:, None].to(self.device)
        scales = (
            [None] * codes.shape[0]
            if tokens.scales is None
            else [torch.tensor([[s]], device=self.device) for s in tokens.scales]
        )

        def run() -> Any:
            with self._lock, torch.inference_mode():
                out = self.net.decode(
                    codes, scales, return_dict=True, last_frame_pad_length=tokens.last_frame_pad_length
                )
            return out.audio_values[0, :, : tokens.num_samples].float().cpu().numpy()

        audio = run_on_device_thread(self.device, run)
        return np.ascontiguousarray(audio, dtype=np.float32), self.sample_rate

    def decode_track(self, tokens: Tokens) -> Track:
        """Decode tokens to a `Track` carrying the codec's licence and a provenance record, ready to `save`."""
        from ._version import __version__
        from .audio import pcm_sha256
        from .licences.provenance import Provenance
        from .result import Track

        audio, rate = self.decode(tokens)
        provenance = Provenance(
            provider="encodec",
            model=self.model_id,
            model_revision=self.revision,
            device=self.device,
            parameters={"bandwidth": tokens.bandwidth, "codebooks": tokens.codebooks, "decoded_from": "tokens"},
            soundforge_version=__version__,
            engine=_engine_versions(),
            pcm_sha256=pcm_sha256(audio),
            sample_rate=rate,
            channels=int(audio.shape[0]),
        )
        return Track(audio=audio, sample_rate=rate, license=tokens.license, provenance=provenance)


def _engine_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers")}


def encode(
    audio: Any, sample_rate: int, *, model: str = DEFAULT_MODEL, bandwidth: float | None = None, device: str = "auto"
) -> Tokens:
    """Encode audio to EnCodec tokens with a codec loaded for this call (keep a `Codec` to reuse one)."""
    return Codec(model, device=device).encode(audio, sample_rate, bandwidth=bandwidth)


def decode(tokens: Tokens, *, model: str | None = None, device: str = "auto") -> tuple[AudioArray, int]:
    """Decode tokens with the codec that made them (or `model`, a folder holding the same codec)."""
    return Codec(model or tokens.model, device=device).decode(tokens)
