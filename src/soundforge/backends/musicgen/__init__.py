"""`musicgen`: Meta's MusicGen and MusicGen-Melody run locally (extra `soundforge[musicgen]`): the provider, with
two engines, transformers (`transformers.py`: load, run, batch, stream, continue, long form) and audiocraft's own
code (`soundforge.backends.audiocraft`). torch and transformers are imported inside methods, never at
`import soundforge`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ...capabilities import ModelInfo
from ..base import LOCAL_SETTINGS, Backend
from ..local import LocalBackend, LocalEngine
from .transformers import EXTRA, HUB_MODELS, TransformersEngine, _caps, _local_config

__all__ = ["EXTRA", "HUB_MODELS", "MusicgenBackend", "TransformersEngine"]


def _audiocraft_engine(owner: Backend) -> LocalEngine[Any]:
    from ..audiocraft import AudiocraftEngine  # only when asked for: audiocraft is an optional install

    return AudiocraftEngine(owner)


class MusicgenBackend(LocalBackend):
    """MusicGen through transformers' `MusicgenForConditionalGeneration` / `MusicgenMelodyForConditionalGeneration`."""

    # The transformers engine's settings, and the audiocraft engine's (engine = "audiocraft").
    settings_keys = LOCAL_SETTINGS | {
        "batching",
        "batch_window",
        "max_batch_size",
        "extend_stride",
        "window",
        "decoder",
        "mbd_model",
        "stream_chunk_seconds",
        "stream_context_seconds",
        "decode",
    }

    name = "musicgen"
    description = "Meta MusicGen / MusicGen-Melody through transformers (local)"
    default_model = "facebook/musicgen-small"
    engine_types: ClassVar[dict[str, Callable[[Any], LocalEngine[Any]]]] = {
        "transformers": TransformersEngine,
        "audiocraft": _audiocraft_engine,
    }

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=mid,
                description=("stereo " if st else "mono ") + ("melody-conditioned" if me else ""),
                capabilities=_caps(stereo=st, melody=me),
            )
            for mid, (st, me) in HUB_MODELS.items()
        ]

    def model_info(self, model: str) -> ModelInfo:
        if model in HUB_MODELS:
            return super().model_info(model)
        config = _local_config(model)
        if config is None:  # an unknown hub id: assume the common case, confirmed at load time
            return ModelInfo(id=model, capabilities=_caps(stereo="stereo" in model, melody="melody" in model))
        audio = config.get("audio_encoder", {})
        decoder = config.get("decoder", {})
        sample_rate = int(audio.get("sampling_rate", 32000))
        hop = int(np.prod(audio.get("upsampling_ratios", [8, 5, 4, 4])))
        return ModelInfo(
            id=model,
            capabilities=_caps(
                stereo=decoder.get("audio_channels", 1) == 2,
                melody=config.get("model_type") == "musicgen_melody",
                sample_rate=sample_rate,
                frame_rate=math.ceil(sample_rate / hop),
            ),
        )
