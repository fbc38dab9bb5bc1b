"""`FunctionBackend`: a provider made from a function, for testing code built on soundforge without weights,
keys or network (pydantic-ai's `FunctionModel` is the model for it).

    from soundforge import Client
    from soundforge.testing import FunctionBackend

    def tone(request, context):
        t = np.arange(int(request.duration * 8000)) / 8000
        return np.sin(2 * np.pi * 440 * t)

    client = Client(backends={"fake": FunctionBackend(tone, name="fake", sample_rate=8000)})
    client.generate("anything", provider="fake", duration=1.0)

The function gets the validated request and the run context (`context.progress(...)` reports progress and raises
when the caller cancelled) and returns audio: one array (mono 1-D or channels x samples), a list of them (one per
output), or a complete `RawGeneration`. The result goes through the client like any backend's: routing, licence
policy, provenance, files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backends.base import Backend, RawGeneration, RawTrack, RunContext, default_seed, fit_length
from ..capabilities import Capabilities, ModelInfo
from ..licences.licensing import License, LicenseComponent, LicenseRegistry
from ..music import STEMS
from ..request import AUDIO_PROMPT_MODES, GenerationRequest

if TYPE_CHECKING:
    from ..backends.runtime import ModelMemory

#: Every optional request field: the function sees the whole request, so nothing is refused on its behalf; but for
#: `adapters`, which a function must load itself (`context.adapters`): one that does declares it in `capabilities`.
ALL_FIELDS = frozenset(
    name for name in GenerationRequest.model_fields if name not in {"prompt", "duration", "adapters"}
)

GenerateFunction = Callable[[GenerationRequest, RunContext], Any]


class FunctionBackend(Backend):
    """A backend whose generation is `fn(request, context)`.

    Args:
        fn: makes the audio (see the module docstring for what it may return).
        name: the provider name it is registered under (`Client(backends={name: ...})`).
        sample_rate: the rate of the arrays `fn` returns.
        capabilities: what the model accepts (default: every field, 1 or 2 channels, up to 600 s, 16 outputs).
        license: the licence of its outputs: a `License`, a registry licence id such as "CC0-1.0", or None for
            the registry's record of `name` (unknown when there is none).
        local: whether it counts as a local engine (True) or a cloud API.
    """

    name = "function"
    default_model = "default"
    settings_keys = None

    def __init__(
        self,
        fn: GenerateFunction,
        *,
        name: str = "function",
        sample_rate: int = 44100,
        capabilities: Capabilities | None = None,
        license: License | str | None = None,
        local: bool = True,
        settings: dict[str, Any] | None = None,
        memory: ModelMemory | None = None,
    ) -> None:
        self.name = name  # type: ignore[misc]  # one class, any provider name
        self.local = local  # type: ignore[misc]
        super().__init__(settings, memory=memory)
        self.fn = fn
        self.sample_rate = sample_rate
        self.caps = capabilities or Capabilities(
            max_duration=600.0,
            sample_rates=(sample_rate,),
            channels=(1, 2),
            fields=ALL_FIELDS,
            max_outputs=16,
            audio_prompt_modes=frozenset(AUDIO_PROMPT_MODES),
            stems=frozenset(STEMS),
        )
        self._license = license
        self.calls = 0

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=self.default_model, capabilities=self.caps)]

    def model_info(self, model: str) -> ModelInfo:
        return ModelInfo(id=model, capabilities=self.caps)

    def license_for(self, model: str) -> License | None:
        if isinstance(self._license, License):
            return self._license
        if isinstance(self._license, str):
            terms = LicenseRegistry.default().licenses[self._license]
            return License.effective(
                [LicenseComponent(role="engine", name=f"{self.name} (test double)", license=terms)]
            )
        return None

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        self.calls += 1
        made = self.fn(request, context)
        if isinstance(made, RawGeneration):
            return made
        arrays = made if isinstance(made, list) else [made]
        seed = default_seed(request)
        samples = round(request.duration * self.sample_rate)
        tracks = []
        for index, array in enumerate(arrays):
            audio = np.asarray(array, dtype=np.float32)
            audio = audio[np.newaxis, :] if audio.ndim == 1 else audio
            tracks.append(
                RawTrack(
                    audio=np.ascontiguousarray(fit_length(audio, samples)),
                    sample_rate=self.sample_rate,
                    seed=seed + index,
                    parameters={"function": getattr(self.fn, "__name__", "function")},
                )
            )
        return RawGeneration(
            tracks=tracks,
            engine_versions={"soundforge.testing": "FunctionBackend"},
            device="cpu" if self.local else "cloud",
        )
