"""An invisible watermark in the audio itself: AudioSeal (Meta, MIT code and weights), embedded and detected.

Tags, sidecars and C2PA manifests say a file is AI-generated until someone re-encodes or strips it; a watermark
is in the samples, so it survives that. soundforge embeds AudioSeal's 16-bit watermark (`audioseal_wm_16bits`)
with a payload tied to the provenance: the first 16 bits of the track's `pcm_sha256` before marking, recorded
in `provenance.watermark` and the `AUDIOSEAL_PAYLOAD` tag, so a detected payload can be matched to its record.

How: AudioSeal works at 16 kHz. The track is resampled to 16 kHz (each channel on its own), the generator
computes the watermark there, the watermark is resampled back to the track's rate and added; the audio above
8 kHz is left as it was. Detection resamples to 16 kHz and asks the detector, per channel; the channel with the
strongest detection is reported.

The code is `pip install "soundforge[watermark]"` (the `audioseal` package); the weights are not in it. They
are read from AudioSeal's own cache only, never fetched by soundforge: `weights_path(card)` says where
(`$AUDIOSEAL_CACHE_DIR/audioseal/…`, else `$XDG_CACHE_HOME/audioseal/…`, else `~/.cache/audioseal/…`), and
a missing file is a `ModelNotAvailableError` naming it, raised before any generation. AudioSeal runs eagerly
here: its SEANet layers would otherwise `torch.compile` themselves on first use, tens of seconds per process and
input length, far more than marking a track takes.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ..audio import AudioArray, pcm_sha256, resample
from ..errors import InvalidRequestError, ModelNotAvailableError, ProviderUnavailableError
from ..result import Generation, Track

#: AudioSeal's model cards (shipped in the package) for the 16-bit generator and its detector.
GENERATOR_CARD = "audioseal_wm_16bits"
DETECTOR_CARD = "audioseal_detector_16bits"
#: Where each card's checkpoint comes from (the `checkpoint` line of the card); the cache file is named after it.
CHECKPOINT_URLS = {
    GENERATOR_CARD: "https://huggingface.co/facebook/audioseal/resolve/main/generator_base.pth",
    DETECTOR_CARD: "https://huggingface.co/facebook/audioseal/resolve/main/detector_base.pth",
}
#: AudioSeal's models work at this rate; other rates are resampled to it.
MODEL_RATE = 16000
PAYLOAD_BITS = 16
#: A frame counts as marked above this probability, and a track as marked when more than this share of
#: frames are (AudioSeal's `detection_threshold` and its suggested decision).
DETECTION_THRESHOLD = 0.5
METHOD = "AudioSeal"
INSTALL_FIX = 'pip install "soundforge[watermark]"'


@dataclass(frozen=True)
class WatermarkReading:
    """What the detector found in a piece of audio.

    Attributes:
        probability: the share of 16 kHz frames the detector judges marked (0 to 1), on the strongest channel.
        payload: the 16-bit message it decodes there, as 4 hex digits (random when nothing is marked).
        channel: which channel that was.
    """

    probability: float
    payload: str
    channel: int

    @property
    def detected(self) -> bool:
        """Whether the audio carries an AudioSeal watermark (`probability` above `DETECTION_THRESHOLD`)."""
        return self.probability > DETECTION_THRESHOLD


def payload_for(pcm_sha256: str) -> str:
    """The 16-bit payload of a track: the first 4 hex digits of its PCM hash before marking."""
    if len(pcm_sha256) < 4 or any(c not in "0123456789abcdef" for c in pcm_sha256[:4]):
        raise ValueError(f"not a hex SHA-256: {pcm_sha256!r}")
    return pcm_sha256[:4]


def payload_bits(payload: str) -> list[int]:
    """The payload as AudioSeal's message: 16 bits, most significant first."""
    value = int(payload, 16)
    return [(value >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)]


def bits_payload(bits: Any) -> str:
    """A decoded 16-bit message as 4 hex digits (the inverse of `payload_bits`)."""
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:04x}"


def cache_folder() -> Path:
    """AudioSeal's cache folder, found as AudioSeal finds it (`audioseal.loader`): `$AUDIOSEAL_CACHE_DIR`, else
    `$XDG_CACHE_HOME`, else `~/.cache`, each with `audioseal` appended."""
    for name in ("AUDIOSEAL_CACHE_DIR", "XDG_CACHE_HOME"):
        value = os.environ.get(name)
        if value:
            return Path(value) / "audioseal"
    return Path("~/.cache").expanduser().resolve() / "audioseal"


def weights_path(card: str) -> Path:
    """Where AudioSeal reads a card's checkpoint: the cache folder, under the SHA-1 of the URL path (as
    `audioseal.loader.load_model_checkpoint` names it for `torch.hub.load_state_dict_from_url`)."""
    url_path = urlparse(CHECKPOINT_URLS[card]).path
    return cache_folder() / hashlib.sha1(url_path.encode()).hexdigest()[:24]


def check_ready(*cards: str) -> None:
    """Raise, before any work, when the watermark cannot run: `audioseal` missing, or a card's weights not cached.

    Raises:
        ProviderUnavailableError: the `audioseal` package is not installed.
        ModelNotAvailableError: a checkpoint is not in AudioSeal's cache; the message names the file and its URL.
    """
    try:
        import audioseal  # noqa: F401
    except ImportError as exc:
        raise ProviderUnavailableError("audioseal", "the audioseal package is not installed", fix=INSTALL_FIX) from exc
    for card in cards or (GENERATOR_CARD,):
        path = weights_path(card)
        if not path.is_file():
            raise ModelNotAvailableError(
                "audioseal",
                card,
                f"its weights are not in AudioSeal's cache ({path})",
                fix=f"download {CHECKPOINT_URLS[card]} to {path} (or set AUDIOSEAL_CACHE_DIR to a folder whose "
                "audioseal/ subfolder holds it); soundforge never fetches weights itself",
            )


_models: dict[tuple[str, Path], Any] = {}
_models_lock = threading.Lock()


def load(card: str) -> Any:
    """The AudioSeal model of a card, loaded once per process from the cache (`check_ready` first)."""
    check_ready(card)
    key = (card, weights_path(card))
    with _models_lock:
        if key not in _models:
            from audioseal.loader import AudioSeal

            with warnings.catch_warnings():  # its loader folds weight norm with the deprecated helper
                warnings.filterwarnings("ignore", category=FutureWarning, message=".*weight_norm")
                model = AudioSeal.load_generator(card) if card == GENERATOR_CARD else AudioSeal.load_detector(card)
            _models[key] = model.eval()
        return _models[key]


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def watermark_signal(audio: AudioArray, sample_rate: int, payload: str, generator: Any | None = None) -> AudioArray:
    """The watermark alone for (channels, samples) audio at its own rate: what `embed_audio` adds."""
    import torch
    from audioseal.libs.moshi.utils.compile import no_compile

    model = generator if generator is not None else load(GENERATOR_CARD)
    at_model_rate = resample(audio, sample_rate, MODEL_RATE)
    message = torch.tensor([payload_bits(payload)] * audio.shape[0], device=_device(model))
    with torch.inference_mode(), no_compile():
        signal = torch.from_numpy(np.ascontiguousarray(at_model_rate)).to(_device(model))[:, None, :]
        mark = model.get_watermark(signal, MODEL_RATE, message=message)[:, 0, :].float().cpu().numpy()
    back = resample(mark, MODEL_RATE, sample_rate)
    out = np.zeros_like(audio)
    length = min(audio.shape[1], back.shape[1])
    out[:, :length] = back[:, :length]
    return out


def embed_audio(audio: AudioArray, sample_rate: int, payload: str, generator: Any | None = None) -> AudioArray:
    """`audio` with AudioSeal's watermark carrying `payload` (4 hex digits) added; float32, same shape."""
    return np.ascontiguousarray(audio + watermark_signal(audio, sample_rate, payload, generator), dtype=np.float32)


def detect_audio(audio: AudioArray, sample_rate: int, detector: Any | None = None) -> WatermarkReading:
    """Ask AudioSeal's detector whether (channels, samples) audio carries a watermark, and which payload."""
    import torch
    from audioseal.libs.moshi.utils.compile import no_compile

    model = detector if detector is not None else load(DETECTOR_CARD)
    at_model_rate = resample(audio, sample_rate, MODEL_RATE)
    with torch.inference_mode(), no_compile():
        signal = torch.from_numpy(np.ascontiguousarray(at_model_rate)).to(_device(model))[:, None, :]
        probability, message = model.detect_watermark(signal, MODEL_RATE, detection_threshold=DETECTION_THRESHOLD)
    best = int(torch.argmax(probability).item())
    return WatermarkReading(float(probability[best].item()), bits_payload(message[best].tolist()), best)


def engine_version() -> str:
    """The installed audioseal version, for provenance."""
    from importlib.metadata import version

    return version("audioseal")


def watermark_record(payload: str, unmarked_pcm_sha256: str) -> dict[str, Any]:
    """`provenance.watermark` of a track soundforge marked."""
    return {
        "method": METHOD,
        "model": GENERATOR_CARD,
        "bits": PAYLOAD_BITS,
        "payload": payload,
        "payload_from": "the first 16 bits of unmarked_pcm_sha256",
        "unmarked_pcm_sha256": unmarked_pcm_sha256,
        "engine": f"audioseal {engine_version()}",
    }


def embed(track: Track) -> Track:
    """The track with AudioSeal's watermark in its samples, its payload and the hash before marking in
    `provenance.watermark`, `watermarks` naming it, and `pcm_sha256` over the marked samples.

    Raises:
        InvalidRequestError: the track already carries a watermark soundforge embedded.
        ProviderUnavailableError, ModelNotAvailableError: see `check_ready`.
    """
    provenance = track.provenance
    if provenance.watermark is not None:
        raise InvalidRequestError(
            "this track already carries soundforge's AudioSeal watermark (provenance.watermark)", field="watermark"
        )
    payload = payload_for(provenance.pcm_sha256)
    marked = embed_audio(track.audio, track.sample_rate, payload)
    update = {
        "watermark": watermark_record(payload, provenance.pcm_sha256),
        "watermarks": [*provenance.watermarks, f"{METHOD} (soundforge, payload {payload})"],
        "pcm_sha256": pcm_sha256(marked),
    }
    return Track(marked, track.sample_rate, track.license, provenance.model_copy(update=update))


def embed_all(generation: Generation) -> Generation:
    """Every track of a generation (the mix and its stems alike) watermarked by `embed`."""
    return Generation([embed(track) for track in generation.tracks])
