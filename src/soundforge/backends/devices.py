"""Device and dtype pairs that are known to break an engine, each with its source, refused or worked around
before a model loads (no other audio SDK keeps this table).

The reports are public issues of the engines' own trackers (and ComfyUI's), read as reported there; soundforge's
CI has no MPS or CUDA device to reproduce them, so a pair is listed only with its source, and the action is the
conservative one: `auto` avoids the pair, an explicit setting is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError


@dataclass(frozen=True)
class KnownBadPair:
    """An engine (and model kind) that misbehaves on a device with a dtype."""

    engine: str  # "transformers", "diffusers", "audiocraft", "stable-audio-tools"
    kind: str  # "any", or a model kind the engine tells ("melody", "init_audio")
    device: str  # a device prefix: "mps", "cuda"
    dtype: str  # "float16", "bfloat16", or "any"
    symptom: str
    source: str
    instead: str  # the setting that avoids it


KNOWN_BAD: tuple[KnownBadPair, ...] = (
    KnownBadPair(
        "diffusers",
        "any",
        "mps",
        "bfloat16",
        "the Stable Audio VAE decodes bfloat16 latents to noise",
        "https://github.com/comfyanonymous/ComfyUI/issues/15207",
        'dtype = "float32"',
    ),
    KnownBadPair(
        "transformers",
        "any",
        "mps",
        "any",
        "EnCodec decodes garbled audio on Apple MPS",
        "https://github.com/facebookresearch/audiocraft/pull/612",
        'device = "cpu"',
    ),
    KnownBadPair(
        "audiocraft",
        "any",
        "mps",
        "any",
        "EnCodec decodes garbled audio on Apple MPS",
        "https://github.com/facebookresearch/audiocraft/pull/612",
        'device = "cpu"',
    ),
    KnownBadPair(
        "transformers",
        "melody",
        "cuda",
        "float16",
        "MusicGen-Melody generates noise in float16",
        "https://github.com/huggingface/transformers/issues/36546",
        'dtype = "float32"',
    ),
    KnownBadPair(
        "stable-audio-tools",
        "init_audio",
        "any",
        "float16",
        "half-precision init audio breaks audio-to-audio",
        "https://github.com/Stability-AI/stable-audio-tools/issues/80",
        'dtype = "float32" (the stable-audio-tools engine always loads float32)',
    ),
)


def dtype_name(setting: str, device: str) -> str:
    """The dtype a `dtype` setting means on a device (`auto`: float16 on CUDA, float32 elsewhere, as `pick_dtype`)."""
    if setting == "auto":
        return "float16" if device.startswith("cuda") else "float32"
    return setting


def _matches(pair: KnownBadPair, engine: str, kind: str, device: str, dtype: str) -> bool:
    return (
        pair.engine == engine
        and pair.kind in ("any", kind)
        and (pair.device == "any" or device.startswith(pair.device))
        and pair.dtype in ("any", dtype)
    )


def check_device_dtype(
    engine: str, device: str, dtype_setting: str, resolved_dtype: str, *, kind: str = "any", provider: str
) -> str:
    """The dtype to load with: `resolved_dtype` unless the pair is known bad. Under `dtype = "auto"` a known-bad
    dtype is replaced by float32; an explicit one (or a bad device, whatever the dtype) is a ConfigurationError
    naming the symptom, its source and what to set instead."""
    for pair in KNOWN_BAD:
        if not _matches(pair, engine, kind, device, resolved_dtype):
            continue
        if dtype_setting == "auto" and pair.dtype != "any":
            return "float32"
        raise ConfigurationError(
            f"{provider} ({engine}) on {device} with {resolved_dtype}: {pair.symptom} ({pair.source})",
            hint=f"set [providers.{provider}] {pair.instead}",
        )
    return resolved_dtype
