"""The local-engine template: `LocalBackend` (a provider whose models run here) and `LocalEngine` (one way of
running them: transformers, audiocraft, diffusers, stable-audio-tools).

What every local engine needs is written here once: the model cache and its memory ledger, picking the device,
load timing, unloading, the engine chosen for a request (one function for availability, weights and generation)
and the `RawGeneration` built from a batch. An engine writes only "load this model on this device"
(`load_on`) and "run this request on the loaded model" (`run`), plus its cheap availability checks.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np

from ..audio import AudioArray, resample, to_channels
from ..errors import InvalidRequestError, UnsupportedFeatureError
from ..licences.model_card import ModelCard
from ..request import GenerationRequest
from ._hub import ModelCache, find_model_card, pick_device
from .base import Availability, Backend, ChunkStream, RawGeneration, RawTrack, RunContext

if TYPE_CHECKING:
    from ._memory import ModelMemory

L = TypeVar("L")


class LocalEngine(ABC, Generic[L]):
    """One engine of a local provider; `L` is its loaded-model type (which has a `device` attribute)."""

    #: The engine's name, as `[providers.NAME] engine` and `extra["engine"]` spell it.
    name: ClassVar[str]
    #: Whether the engine loads a request's style adapters (`context.adapters`); a provider whose capabilities
    #: accept `adapters` refuses them on an engine that does not.
    loads_adapters: ClassVar[bool] = False

    def __init__(self, owner: Backend, *, cache_label: str | None = None) -> None:
        self.owner = owner
        self.cache: ModelCache[L] = ModelCache(
            lambda: int(owner.settings.get("max_loaded_models", 1)),
            owner=cache_label or f"{owner.name}:{self.name}",
            memory=lambda: owner.memory,
            footprint=lambda loaded: (str(loaded.device), self.nbytes(loaded)),  # type: ignore[attr-defined]
        )

    @property
    def settings(self) -> dict[str, Any]:
        """The provider's settings (`[providers.NAME]`)."""
        return self.owner.settings

    # --- what an engine writes ---
    @abstractmethod
    def availability(self) -> Availability:
        """Whether this engine's packages are installed (cheap: no import of the engine)."""

    @abstractmethod
    def model_availability(self, model: str, *, allow_fetch: bool) -> Availability:
        """Whether `model`'s weights are here or may be fetched (cheap: no load)."""

    @abstractmethod
    def load_on(self, model: str, device: str) -> L:
        """Load `model` on `device` (runs on the device's compute thread)."""

    @abstractmethod
    def weights_size(self, model: str) -> int:
        """Bytes of `model`'s weights on disk, before it is loaded (the memory budget makes room first)."""

    @abstractmethod
    def nbytes(self, loaded: L) -> int:
        """Bytes a loaded model holds on its device."""

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        """Check the request's engine-specific parts (its `extra`) before anything loads; the options for `run`."""
        return {}

    @abstractmethod
    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: L,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:
        """Generate a checked request on the loaded model."""

    # --- what the template does ---
    def load(self, model: str) -> L:
        """The loaded model: from the cache, or loaded now on the configured device (the least recently used is
        dropped past `max_loaded_models` or the client's model memory budget)."""
        device = pick_device(self.settings.get("device", "auto"))
        return self.cache.get(
            model, lambda: self.load_on(model, device), device=device, estimate=lambda: self.weights_size(model)
        )

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        """Check the request, load (or reuse) the model, then run the request on it."""
        options = self.prepare(request)
        started = time.perf_counter()
        loaded = self.load(model)
        return self.run(request, model, loaded, options, context, time.perf_counter() - started)

    def pull_note(self, model: str) -> str:
        """Why `soundforge pull` cannot fetch this engine's weights ("" when it loads a hub snapshot as
        published: transformers' and diffusers' folders)."""
        return f"the {self.name} engine fetches its own weights on first use (see its page in docs/providers/)"

    def check_stream(self, request: GenerationRequest, model: str) -> None:
        """Refuse to stream what this engine cannot (by default: everything; engines that stream override it)."""
        raise UnsupportedFeatureError(
            "streaming", f"{self.owner.name}:{model}", detail=f"the {self.name} engine makes whole tracks only"
        )

    def stream(self, request: GenerationRequest, model: str, context: RunContext) -> ChunkStream:
        """Yield the audio of a request as it is made, then return the whole (`Backend.stream`)."""
        self.check_stream(request, model)
        raise UnsupportedFeatureError("streaming", f"{self.owner.name}:{model}")
        yield  # pragma: no cover - makes this a generator

    def unload(self, model: str | None = None) -> None:
        """Forget one loaded model, or every one."""
        self.cache.unload(model)


class LocalBackend(Backend):
    """A provider whose models run on this machine through one of its `engine_types` (the first is the default)."""

    #: Engine name -> how to make it for this backend. The order is `engines`' order: the first is the default.
    engine_types: ClassVar[dict[str, Callable[[Any], LocalEngine[Any]]]] = {}

    def __init__(self, settings: dict[str, Any] | None = None, *, memory: ModelMemory | None = None) -> None:
        super().__init__(settings, memory=memory)
        self._engines: dict[str, LocalEngine[Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.engine_types:
            cls.engines = tuple(cls.engine_types)

    def strategy(self, request: GenerationRequest | None = None) -> LocalEngine[Any]:
        """The engine that runs `request` (`Backend.engine` decides which): made once, kept."""
        return self.engine_named(self.engine(request))

    def engine_named(self, name: str) -> LocalEngine[Any]:
        """One of this provider's engines by name (made on first use; making one imports nothing heavy)."""
        if name not in self._engines:
            self._engines[name] = self.engine_types[name](self)
        return self._engines[name]

    def availability(self, request: GenerationRequest | None = None) -> Availability:
        return self.strategy(request).availability()

    def model_availability(
        self, model: str, *, allow_fetch: bool, request: GenerationRequest | None = None
    ) -> Availability:
        engine = self.strategy(request)
        if model in engine.cache:
            return Availability(True)
        return engine.model_availability(model, allow_fetch=allow_fetch)

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        return self.strategy(request).generate(request, model, context)

    def pull_note(self, model: str) -> str:
        return self.strategy().pull_note(model)

    def model_card(self, model: str) -> ModelCard | None:
        """The card of the weights in `model`'s folder or cache snapshot (read before anything is loaded)."""
        return find_model_card(model)

    #: Why this provider loads no style adapters, when there is more to say than "it does not support them".
    adapters_refused: ClassVar[str | None] = None

    def check(self, request: GenerationRequest, model: str) -> None:
        if request.adapters and self.adapters_refused and not self.capabilities(model).supports("adapters"):
            raise UnsupportedFeatureError("adapters", f"{self.name}:{model}", detail=self.adapters_refused)
        super().check(request, model)
        engine = self.strategy(request)
        if request.adapters and not engine.loads_adapters:
            loaders = [name for name, make in self.engine_types.items() if getattr(make, "loads_adapters", False)]
            raise UnsupportedFeatureError(
                "adapters",
                f"{self.name}:{model}",
                detail=f"its {engine.name} engine loads none" + (f" (engine = {loaders[0]!r} does)" if loaders else ""),
            )

    def check_stream(self, request: GenerationRequest, model: str) -> None:
        super().check_stream(request, model)
        self.strategy(request).check_stream(request, model)

    def stream(self, request: GenerationRequest, model: str, context: RunContext) -> ChunkStream:
        return self.strategy(request).stream(request, model, context)

    def unload(self, model: str | None = None) -> None:
        """Forget one loaded model, or all of them (every engine)."""
        for engine in self._engines.values():
            engine.unload(model)

    def close(self) -> None:
        self.unload()


def check_output_format(request: GenerationRequest, model: str, channels: int, sample_rate: int, provider: str) -> None:
    """Refuse a request for a channel count or rate other than the loaded model makes (known only once loaded)."""
    if request.channels not in (None, channels) or request.sample_rate not in (None, sample_rate):
        raise InvalidRequestError(
            f"{model} makes {channels}-channel audio at {sample_rate} Hz",
            field="channels" if request.channels else "sample_rate",
            provider=provider,
        )


def input_clip(request: GenerationRequest, sample_rate: int, channels: int) -> AudioArray:
    """The request's audio prompt at the model's rate and channel count."""
    assert request.audio_prompt is not None
    audio, rate = request.audio_prompt.load()
    return to_channels(resample(audio, rate, sample_rate), channels)


def variation_clip(request: GenerationRequest, sample_rate: int, channels: int, provider: str) -> AudioArray:
    """The audio prompt of a model that transforms a clip (Stable Audio Open); that the mode is one the model
    offers was checked before any work (`Capabilities.audio_prompt_modes`)."""
    return input_clip(request, sample_rate, channels)


def batch_generation(
    audio: Any,
    *,
    sample_rate: int,
    seed: int,
    parameters: dict[str, Any],
    device: str,
    load_seconds: float,
    engine_versions: dict[str, str],
    revision: str | None = None,
) -> RawGeneration:
    """A `RawGeneration` with one track per row of a (batch, channels, samples) array: each with the batch's seed,
    the shared parameters and its `batch_index`."""
    tracks = [
        RawTrack(
            audio=np.ascontiguousarray(audio[index], dtype=np.float32),
            sample_rate=sample_rate,
            seed=seed,
            parameters={**parameters, "batch_index": index},
        )
        for index in range(audio.shape[0])
    ]
    return RawGeneration(
        tracks=tracks,
        model_revision=revision,
        device=device,
        engine_versions=engine_versions,
        load_seconds=load_seconds,
    )
