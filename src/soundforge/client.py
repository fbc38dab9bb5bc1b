"""`Client`: holds config, licence policy and loaded backends; runs requests with routing and fallbacks."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .backends import Backend, CancelToken, backend_class, known_providers, make_backend
from .backends.base import ProgressCallback, Steering
from .backends.pull import PullPlan, PullResult, plan_pull, pull
from .backends.runtime import LoadedModelInfo, ModelMemory
from .config import Config
from .errors import InvalidRequestError
from .licences.licensing import LicenseRegistry
from .licences.policy import LicensePolicy
from .ops.budget import Budget
from .ops.cache import DiskCache, ResultCache
from .ops.observe import Callback
from .ops.pricing import PriceRegistry
from .request import GenerationRequest, build_request
from .result import Generation
from .routing import ProviderStatus, Router, parse_spec
from .run import Door, JobLimits, Plan, prepare, separation, watermarking
from .run.attempts import Attempts
from .run.steps import QualityGate, as_loop, check_door
from .run.streaming import AsyncAudioStream, AudioStream

__all__ = ["Client", "LoadedModelInfo", "build_request"]


class Client:
    """The entry point for applications: one client per configuration, reused across requests.

    Args:
        config: a `Config`, a path to a TOML file, or None to load the usual sources.
        policy: a licence policy that replaces the configured one.
        registry: the licence registry (default: the one shipped; see `LicenseRegistry.declare`).
        backends: providers of your own by name, an instance or a class (e.g. `soundforge.testing.FunctionBackend`
            in your tests): they join routing, `auto` (when named in `auto_order`) and `providers()` like the
            built-in ones, and replace a built-in of the same name.
        budget: a running spending limit for every call this client makes (`soundforge.Budget`): a call that
            would pass it is refused before it is sent, and `auto` skips providers over it.
        prices: the price registry costs are estimated from (default: the one shipped, docs/prices.md).
        callbacks: functions called with a `soundforge.ops.observe.GenerationEvent` when a provider attempt starts,
            reports progress, succeeds or fails (for your own logging: no audio, no secret in them).
        cache: a result cache (`soundforge.ops.cache.DiskCache`, or True for one in the user cache dir): a request with
            an explicit seed to a seed-deterministic model returns the stored audio at no cost, `provenance.cache_hit`
            set. Off by default.
    """

    def __init__(
        self,
        config: Config | str | os.PathLike[str] | None = None,
        *,
        policy: LicensePolicy | None = None,
        registry: LicenseRegistry | None = None,
        backends: Mapping[str, Backend | type[Backend]] | None = None,
        budget: Budget | None = None,
        prices: PriceRegistry | None = None,
        callbacks: list[Callback] | None = None,
        cache: ResultCache | bool | None = None,
    ) -> None:
        if config is None or isinstance(config, (str, os.PathLike)):
            config = Config.load(config)
        if policy is not None:
            config = config.model_copy(update={"policy": policy})
        self.config: Config = config
        self.registry = registry or LicenseRegistry.default()
        self._backends: dict[str, Backend] = {}
        self._given: dict[str, Backend | type[Backend]] = dict(backends or {})
        self._lock = threading.Lock()
        self.memory = ModelMemory(config.model_memory_gb)
        self.budget = budget
        self.prices = prices or PriceRegistry.default()
        self.callbacks: list[Callback] = list(callbacks or [])
        cache = DiskCache() if cache is True else (cache or None)
        self.router = Router(
            self.config, self.registry, self.backend, names=self.provider_names, prices=self.prices, budget=budget
        )
        #: Runs the takes of planned requests (cache, budget, callbacks, spans, provenance).
        self.attempts = Attempts(self.config, self.router, budget=budget, callbacks=self.callbacks, cache=cache)

    @property
    def cache(self) -> ResultCache | None:
        """The result cache (None: off). Setting it applies to the next call."""
        return self.attempts.cache

    @cache.setter
    def cache(self, value: ResultCache | None) -> None:
        self.attempts.cache = value

    # --- backends ---
    def backend(self, name: str) -> Backend:
        """The (cached) backend instance for a provider name."""
        with self._lock:
            if name not in self._backends:
                given = self._given.get(name)
                if isinstance(given, Backend):
                    backend = given
                else:
                    backend = make_backend(
                        given or backend_class(name), self.config.provider_settings(name), self.memory
                    )
                if backend.memory is None:  # an instance made by the caller, before this client existed
                    backend.memory = self.memory
                self._backends[name] = backend
            return self._backends[name]

    def provider_names(self) -> list[str]:
        """Every provider this client knows: built in, planned, from entry points, and given to it."""
        return sorted({*known_providers(), *self._given})

    @property
    def has_own_backends(self) -> bool:
        """Whether backends were given to this client in code (they exist only in this process)."""
        return bool(self._given)

    def providers(self) -> list[ProviderStatus]:
        """Every known provider with its availability, models, licence and the policy's verdict."""
        return [self.router.status(name) for name in self.provider_names()]

    # --- planning ---
    def plan(
        self,
        prompt_or_request: str | GenerationRequest | None = None,
        *,
        provider: str | None = None,
        door: Door = "generate",
        limits: JobLimits | None = None,
        **params: Any,
    ) -> Plan:
        """Everything decided about a request before any work (`soundforge.run.plan`): where it goes, the loop's
        take, the stems' separator and licence, what it may cost. Raises the reason it cannot run, as the door
        (`generate`, `stream`, `job`, `streamed_job`, `row`) would when asked for it."""
        request = build_request(prompt_or_request, params)
        return prepare(self.router, self.config.policy, request, provider, door, limits=limits, budget=self.budget)

    # --- generation ---
    def generate(
        self,
        prompt_or_request: str | GenerationRequest | None = None,
        *,
        provider: str | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **params: Any,
    ) -> Generation:
        """Generate audio (blocking). See `soundforge.generate` for the arguments."""
        plan = self.plan(prompt_or_request, provider=provider, **params)
        gate = QualityGate(plan.take)
        generation = self.attempts.run(plan, gate.take, on_progress, cancel)
        while (take := gate.next_take(generation)) is not None:
            generation = self.attempts.run(plan, take, on_progress, cancel)
        return self._after(gate.result(generation), plan, on_progress, cancel)

    async def agenerate(self, prompt_or_request: str | GenerationRequest | None = None, **params: Any) -> Generation:
        """`generate` without blocking the event loop, with the same arguments (`provider`, `on_progress`,
        `cancel` and the request's fields); cancelling the task cancels the generation."""
        on_progress: ProgressCallback | None = params.pop("on_progress", None)
        cancel: CancelToken | None = params.pop("cancel", None)
        # Planned on the event loop: concurrent requests reach a local engine's batcher in the order they were made.
        # Planning loads no model and calls no network (it stats weights and reads model cards).
        plan = self.plan(prompt_or_request, **params)
        gate = QualityGate(plan.take)
        generation = await self.attempts.arun(plan, gate.take, on_progress, cancel)
        while (take := await asyncio.to_thread(gate.next_take, generation)) is not None:
            generation = await self.attempts.arun(plan, take, on_progress, cancel)
        return await asyncio.to_thread(self._after, gate.result(generation), plan, on_progress, cancel)

    def _after(
        self, generation: Generation, plan: Plan, on_progress: ProgressCallback | None, cancel: CancelToken | None
    ) -> Generation:
        """The steps over the finished take, in order: the loop is cut, the stems separated, the watermark last."""
        request = plan.request
        if request.loop:
            generation = as_loop(generation, request, plan.loop, lambda p, m: self.backend(p).capabilities(m))
        if plan.separator is not None:
            assert request.stems is not None
            mix = generation.tracks[0]
            stems = self.separate(
                mix, request.stems, provider=plan.separator, seed=request.seed, on_progress=on_progress, cancel=cancel
            )
            generation = Generation([mix, *stems.tracks])
        if request.watermark:
            generation = watermarking.embed_all(generation)
        return generation

    # --- stems ---
    def separate(
        self,
        source: Any,
        stems: Sequence[str] = separation.DEFAULT_STEMS,
        *,
        provider: str = separation.DEFAULT_SEPARATOR,
        seed: int | None = None,
        extra: dict[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Generation:
        """Split a track into stems: one named track per stem asked for, in that order (`soundforge.run.separation`).

        Args:
            source: a `Track`, a `Generation` (its first track), an audio file, or `(array, sample_rate)`.
            stems: soundforge stem names (`soundforge.music.STEMS`); the separator must offer each.
            provider: the separator, e.g. "demucs", "demucs:htdemucs_6s" (guitar and keyboard too) or
                "elevenlabs:six_stems_v1".
            seed: for separators with randomness (Demucs' time shifts); recorded either way.
            extra: the separator's own parameters (Demucs: `shifts`, `overlap`, `split`, `segment`).

        The stems, the separator's capabilities and the licence policy (on the stems' combined licence: the
        source's and the separator's) are checked before the separator runs.
        """
        names = separation.check_stems(stems)
        found = separation.source_of(source, self.registry)
        request = separation.separation_request(found, names[0], seed=seed, extra=extra)
        chosen = self.plan(request, provider=provider).chosen
        license = separation.check_separator(chosen, names, found.license, self.config.policy)

        def take(stem: str) -> Generation:  # one call of the separator chosen, for one stem
            asked, spec = request.model_copy(update={"stem": stem}), f"{chosen.backend.name}:{chosen.model}"
            return self.generate(asked, provider=spec, on_progress=on_progress, cancel=cancel)

        by_role = separation.collect_stems(take, names, chosen)
        return separation.stem_generation(by_role, names, license, found.record)

    # --- streaming ---
    def stream(
        self,
        prompt_or_request: str | GenerationRequest | None = None,
        *,
        provider: str | None = None,
        whole: bool = False,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **params: Any,
    ) -> AudioStream:
        """Generate audio and hand it over in chunks as it is made (`soundforge.run.streaming.AudioStream`).

        Routing, the licence policy and the cost limits are applied here, before the first chunk, as for
        `generate`; only providers whose model streams (`Capabilities.streaming`) are candidates, unless
        `whole=True`, which lets one that does not stream deliver each track as a single chunk when it is done.
        A provider that fails before its first chunk gives way to the next candidate; once audio has been
        handed over, a failure ends the stream with the error. `quality="report"` judges the finished take;
        `quality="retry"`, `loop`, `stems` and `watermark` are refused (they work on the finished take, which
        would already have been heard).
        """
        cancel = cancel or CancelToken()
        request = build_request(prompt_or_request, params)
        if whole:  # any provider may answer, each track as one chunk; the steps' refusals still apply
            check_door(request, "stream")
        plan = self.plan(request, provider=provider, door="generate" if whole else "stream")
        steering = Steering()
        return AudioStream(self.attempts.stream(plan, on_progress, cancel, steering), cancel, steering)

    def astream(self, prompt_or_request: str | GenerationRequest | None = None, **params: Any) -> AsyncAudioStream:
        """`stream` for async code, with the same arguments: `async with client.astream(...) as stream: async for
        chunk in stream: ...`. Routing and the policy are checked when it is called; the engine runs on a worker
        thread between chunks."""
        return self.stream(prompt_or_request, **params).to_async()

    # --- weights ---
    def pull(self, spec: str | None = None, *, on_plan: Callable[[PullPlan], None] | None = None) -> PullResult:
        """Fetch a local model's weights through the licence gate (`soundforge.backends.pull`): the spec's model (or
        the provider's configured or default one), refused under the licence policy before any weight byte is
        downloaded, then downloaded into the Hugging Face cache, checked against the hub's hashes, and ready to run
        offline. `on_plan` sees the licence, files and sizes first."""
        backend, model, plan = self._pull_target(spec)
        return pull(backend, model, self.registry, self.config.policy, plan=plan, on_plan=on_plan)

    def plan_pull(self, spec: str | None = None) -> PullPlan:
        """What `pull` would do, with nothing downloaded but the model's card: its licence, the policy's verdict,
        the files and their sizes."""
        backend, model, plan = self._pull_target(spec)
        return plan_pull(backend, model, self.registry, self.config.policy, plan=plan)

    def _pull_target(self, spec: str | None) -> tuple[Backend, str, str | None]:
        """The backend, model and licence plan (`[providers.X] plan`) that `pull` and `plan_pull` act on."""
        parsed = parse_spec(spec or self.config.default_provider, self.config.aliases)
        if parsed.provider == "auto":
            raise InvalidRequestError("name the provider to pull, e.g. `soundforge pull musicgen`", field="provider")
        backend = self.backend(parsed.provider)
        plan = self.config.provider_settings(backend.name).get("plan")
        return backend, self.router.model_for(backend, parsed.model), plan

    # --- life cycle ---
    def loaded_models(self) -> list[LoadedModelInfo]:
        """The models local backends hold, least recently used first, with their device and measured size."""
        return self.memory.loaded()

    def unload(self, provider: str | None = None, model: str | None = None) -> None:
        """Unload one model, every model of one provider, or (no arguments) every model this client holds."""
        with self._lock:
            backends = (
                [self._backends[provider]]
                if provider in self._backends
                else []
                if provider is not None
                else list(self._backends.values())
            )
        for backend in backends:
            backend.unload(model)

    def close(self) -> None:
        """Release every loaded backend (models, HTTP sessions)."""
        with self._lock:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Like `close`, from async code: connections opened on this event loop are closed on it."""
        with self._lock:
            backends = list(self._backends.values())
            self._backends.clear()
        for backend in backends:
            await backend.aclose()
