"""soundforge: provider-neutral generative audio, every result with its licence and provenance.

    from soundforge import generate
    track = generate("lo-fi hip hop, 85 BPM, in A minor", duration=15, seed=1)
    track.save("track.wav")          # WAV with licence + provenance tags and a JSON sidecar
    print(track.license.summary())

`import soundforge` stays light: engines (torch, transformers, …) load only when their provider runs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AllProvidersFailedError,
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    ContentRefusedError,
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidRequestError,
    LicensePolicyError,
    ModelNotAvailableError,
    ProviderError,
    ProviderNotFoundError,
    ProviderUnavailableError,
    RateLimitError,
    SoundforgeError,
    UnsupportedFeatureError,
)

if TYPE_CHECKING:
    from .backends.base import AudioChunk, Backend, CancelToken, ProgressCallback, ProgressEvent
    from .bulk import BatchReport, abatch, batch
    from .capabilities import Capabilities
    from .client import Client
    from .config import Config
    from .licences.licensing import CommercialUse, License
    from .licences.policy import LicensePolicy
    from .licences.provenance import Provenance
    from .ops.budget import Budget
    from .ops.cache import DiskCache
    from .ops.pricing import Cost
    from .output.inspect import FileRecord, Verification, read_record, verify
    from .request import Adapter, AudioInput, GenerationRequest
    from .result import Generation, Track
    from .routing import ProviderStatus
    from .run.streaming import AsyncAudioStream, AudioStream

_LAZY = {
    "Client": "client",
    "ProviderStatus": "routing",
    "Config": "config",
    "GenerationRequest": "request",
    "AudioInput": "request",
    "Adapter": "request",
    "Generation": "result",
    "Track": "result",
    "License": "licences.licensing",
    "CommercialUse": "licences.licensing",
    "LicensePolicy": "licences.policy",
    "Provenance": "licences.provenance",
    "Capabilities": "capabilities",
    "Backend": "backends.base",
    "CancelToken": "backends.base",
    "ProgressEvent": "backends.base",
    "AudioChunk": "backends.base",
    "AudioStream": "run.streaming",
    "AsyncAudioStream": "run.streaming",
    "batch": "bulk",
    "abatch": "bulk",
    "BatchReport": "bulk",
    "Budget": "ops.budget",
    "DiskCache": "ops.cache",
    "Cost": "ops.pricing",
    "verify": "output.inspect",
    "read_record": "output.inspect",
    "Verification": "output.inspect",
    "FileRecord": "output.inspect",
}


def __getattr__(name: str) -> Any:
    """Import public classes on first use, keeping `import soundforge` fast."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'soundforge' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"soundforge.{module}"), name)
    globals()[name] = value
    return value


_default_client: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process-wide client used by `generate`/`agenerate` (config loaded from the usual sources)."""
    global _default_client
    with _default_lock:
        if _default_client is None:
            from .client import Client

            _default_client = Client()
        return _default_client


def generate(
    prompt_or_request: str | GenerationRequest | None = None,
    *,
    provider: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    **params: Any,
) -> Generation:
    """Generate audio from a prompt (or a `GenerationRequest`) and return it with licence and provenance.

    Args:
        prompt_or_request: text prompt, or a complete request.
        provider: `"synth"`, `"musicgen:facebook/musicgen-small"`, `"auto"`…; default from config.
        on_progress: called with a `ProgressEvent` per step.
        cancel: a `CancelToken` to stop the generation between steps.
        **params: request fields (`duration=`, `seed=`, `num_outputs=`, …).
    """
    return default_client().generate(
        prompt_or_request, provider=provider, on_progress=on_progress, cancel=cancel, **params
    )


async def agenerate(
    prompt_or_request: str | GenerationRequest | None = None,
    *,
    provider: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    **params: Any,
) -> Generation:
    """Async `generate`: runs local engines in a worker thread and never blocks the event loop."""
    return await default_client().agenerate(
        prompt_or_request, provider=provider, on_progress=on_progress, cancel=cancel, **params
    )


def separate(
    source: Any,
    stems: Sequence[str] = ("vocals", "drums", "bass", "other"),
    *,
    provider: str = "demucs",
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Generation:
    """Split a track into stems, one named track per stem (its source's licence and the separator's together,
    provenance linked to the source); see `Client.separate` for the arguments.

        stems = soundforge.separate("song.wav", ("vocals", "drums"))
        stems.save("song.wav")            # song.vocals.wav, song.drums.wav
    """
    return default_client().separate(
        source, stems, provider=provider, seed=seed, extra=extra, on_progress=on_progress, cancel=cancel
    )


def stream(
    prompt_or_request: str | GenerationRequest | None = None,
    *,
    provider: str | None = None,
    whole: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    **params: Any,
) -> AudioStream:
    """Generate audio and receive it in chunks as it is made; the finished `Generation` follows the last chunk.

        with soundforge.stream("slow ambient drone", provider="synth", duration=120) as chunks:
            for chunk in chunks:          # AudioChunk: .audio (channels, samples), .offset, .sample_rate
                play(chunk.audio)
        chunks.generation.save("drone.wav")

    Args are those of `generate`, plus `whole`: accept a provider that cannot stream, delivering each track as
    one chunk when it is done (otherwise such a provider is refused with UnsupportedFeatureError).
    """
    return default_client().stream(
        prompt_or_request, provider=provider, whole=whole, on_progress=on_progress, cancel=cancel, **params
    )


def astream(
    prompt_or_request: str | GenerationRequest | None = None,
    *,
    provider: str | None = None,
    whole: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    **params: Any,
) -> AsyncAudioStream:
    """Async `stream`: `async with soundforge.astream(...) as chunks: async for chunk in chunks: ...`."""
    return default_client().astream(
        prompt_or_request, provider=provider, whole=whole, on_progress=on_progress, cancel=cancel, **params
    )


__all__ = [
    "Adapter",
    "AllProvidersFailedError",
    "AsyncAudioStream",
    "AudioChunk",
    "AudioInput",
    "AudioStream",
    "AuthenticationError",
    "Backend",
    "BatchReport",
    "Budget",
    "BudgetExceededError",
    "CancelToken",
    "Capabilities",
    "Client",
    "CommercialUse",
    "Config",
    "ConfigurationError",
    "ContentRefusedError",
    "Cost",
    "DiskCache",
    "FileRecord",
    "Generation",
    "GenerationCancelledError",
    "GenerationRequest",
    "GenerationTimeoutError",
    "InvalidRequestError",
    "License",
    "LicensePolicy",
    "LicensePolicyError",
    "ModelNotAvailableError",
    "ProgressEvent",
    "Provenance",
    "ProviderError",
    "ProviderNotFoundError",
    "ProviderStatus",
    "ProviderUnavailableError",
    "RateLimitError",
    "SoundforgeError",
    "Track",
    "UnsupportedFeatureError",
    "Verification",
    "__version__",
    "abatch",
    "agenerate",
    "astream",
    "batch",
    "default_client",
    "generate",
    "read_record",
    "separate",
    "stream",
    "verify",
]
