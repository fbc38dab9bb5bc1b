"""The provider registry: built-in backends, planned ones, and third-party ones from entry points.

Backends are imported only when used, so `import soundforge` stays light. A third-party package
registers a `Backend` subclass under the entry-point group `soundforge.backends`:

    [project.entry-points."soundforge.backends"]
    myprovider = "my_package.backend:MyBackend"
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import ProviderNotFoundError, ProviderUnavailableError
from ._compute import run_on_device_thread
from ._memory import ModelMemory
from .base import (
    COMMON_SETTINGS,
    ENGINE_DEVICE_ENV,
    LOCAL_SETTINGS,
    Availability,
    Backend,
    CancelToken,
    ProgressEvent,
    RawGeneration,
    RawTrack,
    RunContext,
    checked_extra,
    default_seed,
    fit_length,
)

ENTRY_POINT_GROUP = "soundforge.backends"

#: Built-in backends: provider name -> "module:Class", imported on first use.
BUILTIN: dict[str, str] = {
    "synth": "soundforge.backends.synth:SynthBackend",
    "musicgen": "soundforge.backends.musicgen:MusicgenBackend",
    "audiogen": "soundforge.backends.audiocraft:AudiogenBackend",
    "magnet": "soundforge.backends.magnet:MagnetBackend",
    "demucs": "soundforge.backends.demucs:DemucsBackend",
    "stable-audio": "soundforge.backends.stable_audio:StableAudioBackend",
    "stable-audio-3": "soundforge.backends.stable_audio_3:StableAudio3Backend",
    "ace-step": "soundforge.backends.ace_step:AceStepBackend",
    "minimax-music-3": "soundforge.backends.minimax_music_3:MiniMaxMusic3Backend",
    "stability": "soundforge.backends.stability:StabilityBackend",
    "elevenlabs": "soundforge.backends.elevenlabs:ElevenLabsBackend",
    "elevenlabs-sfx": "soundforge.backends.elevenlabs_sfx:ElevenLabsSfxBackend",
    "replicate": "soundforge.backends.replicate:ReplicateBackend",
    "fal": "soundforge.backends.fal:FalBackend",
    "lyria": "soundforge.backends.lyria:LyriaBackend",
    "gemini": "soundforge.backends.gemini:GeminiBackend",
    "lyria-realtime": "soundforge.backends.lyria_realtime:LyriaRealtimeBackend",
    "minimax": "soundforge.backends.minimax:MiniMaxBackend",
}


@dataclass(frozen=True)
class PlannedProvider:
    """A provider soundforge names but does not implement in this version, with the honest reason."""

    name: str
    description: str
    reason: str
    license_key: str
    default_model: str
    local: bool = False


PLANNED: dict[str, PlannedProvider] = {
    p.name: p
    for p in [
        PlannedProvider(
            "suno",
            "Suno (hosted app)",
            "Suno publishes no official public API; only unofficial third-party wrappers exist",
            "suno",
            "suno",
        ),
        PlannedProvider(
            "udio",
            "Udio (hosted app)",
            "Udio publishes no official public API and its current terms forbid downloading outputs",
            "udio",
            "udio",
        ),
    ]
}


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_providers() -> list[str]:
    """Every provider name: built in, planned and installed through entry points."""
    return sorted({*BUILTIN, *PLANNED, *_entry_points()})


def make_backend(cls: type[Backend], settings: dict[str, Any], memory: ModelMemory) -> Backend:
    """A backend made with its settings and the client's memory ledger; a plug-in whose constructor predates the
    `memory` argument gets the ledger set on the instance instead."""
    if "memory" in inspect.signature(cls).parameters:
        return cls(settings, memory=memory)
    return cls(settings)


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class for a provider name.

    Raises ProviderNotFoundError for an unknown name and ProviderUnavailableError for a planned or
    broken one, with the reason and the fix.
    """
    target = BUILTIN.get(name) or _entry_points().get(name)
    if target is None:
        if name in PLANNED:
            raise ProviderUnavailableError(name, PLANNED[name].reason)
        raise ProviderNotFoundError(name, known_providers())
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProviderUnavailableError(
            name,
            f"its module {module_name!r} cannot be imported ({exc})",
            fix=f"reinstall the package that provides {name!r}",
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ProviderUnavailableError(name, f"{target} is not a soundforge Backend subclass")
    return cls


__all__ = [
    "BUILTIN",
    "COMMON_SETTINGS",
    "ENGINE_DEVICE_ENV",
    "LOCAL_SETTINGS",
    "PLANNED",
    "Availability",
    "Backend",
    "CancelToken",
    "PlannedProvider",
    "ProgressEvent",
    "RawGeneration",
    "RawTrack",
    "RunContext",
    "backend_class",
    "checked_extra",
    "default_seed",
    "fit_length",
    "known_providers",
    "make_backend",
    "run_on_device_thread",
]
