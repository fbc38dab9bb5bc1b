"""`Client`: holds config, licence policy and loaded backends; runs requests with routing and fallbacks."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import loops, separation, watermarking
from ._version import __version__
from .audio import as_audio, pcm_sha256
from .backends import Backend, CancelToken, RawGeneration, RunContext, backend_class, known_providers
from .backends.base import AudioChunk, ProgressCallback, ProgressEvent
from .backends.runtime import ModelMemory
from .budget import Budget
from .cache import DiskCache, ResultCache, cache_key
from .config import Config
from .errors import (
    AllProvidersFailedError,
    InvalidRequestError,
    ProviderError,
    SoundforgeError,
    UnsupportedFeatureError,
)
from .licensing import License, LicenseRegistry
from .observe import Callback, EventKind, GenerationEvent, add_event, attempt_span, end_attempt, generation_span, notify
from .policy import LicensePolicy
from .pricing import Cost, PriceRegistry
from .pricing import settle as settle_cost
from .provenance import Attempt, Provenance, Timings
from .quality import QualityReport
from .quality import check as quality_check
from .request import GenerationRequest
from .result import Generation, Track
from .routing import Candidate, ProviderStatus, Router, parse_spec
from .streaming import AsyncAudioStream, AudioStream


@dataclass(frozen=True)
class LoadedModelInfo:
    """One row of `Client.loaded_models()`."""

    provider: str
    model: str
    device: str
    nbytes: int


def _make_backend(cls: type[Backend], settings: dict[str, Any], memory: ModelMemory) -> Backend:
    """A backend made with its settings and the client's memory ledger; a plug-in whose constructor predates the
    `memory` argument gets the ledger set on the instance instead."""
    if "memory" in inspect.signature(cls).parameters:
        return cls(settings, memory=memory)
    return cls(settings)


def build_request(prompt_or_request: str | GenerationRequest, params: Mapping[str, Any]) -> GenerationRequest:
    """A validated request from a prompt plus keyword fields, or from a request updated with keyword fields.

    Raises InvalidRequestError (a ValueError) naming each bad field.
    """
    if isinstance(prompt_or_request, GenerationRequest):
        if not params:
            return prompt_or_request
        data = {k: getattr(prompt_or_request, k) for k in prompt_or_request.model_fields_set}
        return GenerationRequest(**{**data, **params})
    if not isinstance(prompt_or_request, str):
        raise InvalidRequestError("the first argument must be a prompt string or a GenerationRequest", field="prompt")
    return GenerationRequest(prompt=prompt_or_request, **params)


@dataclass
class _Call:
    """One provider attempt of one generation, as the client tracks it around the backend's call."""

    candidate: Candidate
    number: int
    key: str | None
    record: dict[str, Any]
    started: float
    context: RunContext = field(default_factory=RunContext)
    held: float = 0.0
    span: Any = None


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
        callbacks: functions called with a `soundforge.observe.GenerationEvent` when a provider attempt starts,
            reports progress, succeeds or fails (for your own logging: no audio, no secret in them).
        cache: a result cache (`soundforge.cache.DiskCache`, or True for one in the user cache dir): a request with
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
        self.cache: ResultCache | None = DiskCache() if cache is True else (cache or None)
        self.router = Router(
            self.config, self.registry, self.backend, names=self.provider_names, prices=self.prices, budget=budget
        )

    # --- backends ---
    def backend(self, name: str) -> Backend:
        """The (cached) backend instance for a provider name."""
        with self._lock:
            if name not in self._backends:
                given = self._given.get(name)
                if isinstance(given, Backend):
                    backend = given
                else:
                    backend = _make_backend(
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

    # --- generation ---
    def generate(
        self,
        prompt_or_request: str | GenerationRequest,
        *,
        provider: str | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **params: Any,
    ) -> Generation:
        """Generate audio (blocking). See `soundforge.generate` for the arguments."""
        request = build_request(prompt_or_request, params)
        separator = self.plan_stems(request, provider)[0] if request.stems else None  # before any work
        if request.watermark:
            watermarking.check_ready()
        plan = self._loop_plan(request, provider)
        take = loops.take_request(request, plan) if plan is not None else request
        generation = self._generate(take, provider, on_progress, cancel)
        rejected: list[dict[str, Any]] = []
        while take.quality is not None:
            report = _judge(generation, take)
            if report is None or report.passed or take.quality == "report" or len(rejected) >= _retries(take):
                generation = _with_quality(generation, report, rejected)
                break
            rejected.append(_rejected(generation, report))
            take = take.model_copy(update={"seed": secrets.randbelow(2**31)})
            generation = self._generate(take, provider, on_progress, cancel)
        if request.loop:
            generation = self._as_loop(generation, request, plan)
        if separator is not None:
            generation = self._with_stems(generation, request, separator, on_progress, cancel)
        if request.watermark:
            generation = watermarking.embed_all(generation)
        return generation

    def _generate(
        self,
        request: GenerationRequest,
        provider: str | None,
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> Generation:
        record = request.record()
        with generation_span(record, provider) as span:
            candidates, attempts = self.router.plan(request, provider)
            self._skipped(span, attempts)
            errors: list[tuple[str, SoundforgeError]] = []
            for number, candidate in enumerate(candidates, 1):
                key = self._cache_key(candidate, request, record)
                cached = self.cache.get(key) if self.cache is not None and key is not None else None
                if cached is not None:
                    return cached
                call = self._begin(candidate, number, key, record, on_progress, cancel)
                with attempt_span(candidate.backend.name, candidate.model, number) as call.span:
                    try:
                        raw = candidate.backend.generate(request, candidate.model, call.context)
                    except SoundforgeError as exc:
                        self._failed(span, call, exc, attempts, errors)
                        continue
                    except BaseException:
                        self._settle(call.held, None)
                        raise
                    generation = self._finish(call, raw, attempts, provider)
                    self._succeeded(call, generation)
                    self._store(key, generation)
                    return generation
            raise _exhausted(errors)

    async def agenerate(
        self,
        prompt_or_request: str | GenerationRequest,
        *,
        provider: str | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **params: Any,
    ) -> Generation:
        """Generate audio without blocking the event loop; cancelling the task cancels the generation."""
        request = build_request(prompt_or_request, params)
        separator = None
        if request.stems:  # checked before any work
            separator = (await asyncio.to_thread(self.plan_stems, request, provider))[0]
        if request.watermark:
            await asyncio.to_thread(watermarking.check_ready)
        plan = self._loop_plan(request, provider)
        take = loops.take_request(request, plan) if plan is not None else request
        generation = await self._agenerate(take, provider, on_progress, cancel)
        rejected: list[dict[str, Any]] = []
        while take.quality is not None:
            report = await asyncio.to_thread(_judge, generation, take)
            if report is None or report.passed or take.quality == "report" or len(rejected) >= _retries(take):
                generation = _with_quality(generation, report, rejected)
                break
            rejected.append(_rejected(generation, report))
            take = take.model_copy(update={"seed": secrets.randbelow(2**31)})
            generation = await self._agenerate(take, provider, on_progress, cancel)
        if request.loop:
            generation = await asyncio.to_thread(self._as_loop, generation, request, plan)
        if separator is not None:
            generation = await asyncio.to_thread(self._with_stems, generation, request, separator, on_progress, cancel)
        if request.watermark:
            generation = await asyncio.to_thread(watermarking.embed_all, generation)
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
        """Split a track into stems: one named track per stem asked for, in that order (`soundforge.separation`).

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
        chosen = self.router.plan(request, provider)[0][0]
        license = separation.check_separator(chosen, names, found.license, self.config.policy)
        # One call gives every stem of Demucs or ElevenLabs; a model that extracts one stem per call (ACE-Step)
        # is called again for each stem still missing.
        by_role: dict[str | None, Track] = {}
        for name in names:
            if name in by_role:
                continue
            answer = self.generate(
                request.model_copy(update={"stem": name}),
                provider=f"{chosen.backend.name}:{chosen.model}",
                on_progress=on_progress,
                cancel=cancel,
            )
            for track in answer.tracks:
                by_role.setdefault(track.role, track)
            if name not in by_role:
                raise ProviderError(
                    f"{chosen.backend.name}:{chosen.model} answered no {name} stem", provider=chosen.backend.name
                )
        return separation.stem_generation(by_role, names, license, found.record)

    def plan_stems(self, request: GenerationRequest, provider: str | None = None) -> tuple[str, License]:
        """Where the stems of a request with `stems` come from, and the stems' licence, checked before anything
        is generated: the model that makes the track when it extracts every stem asked for itself (ACE-Step's
        base model; the stems have its licence), else Demucs (the stems have the track's licence and Demucs'),
        refused here when missing, without those stems or refused by the policy."""
        if not request.stems:
            raise InvalidRequestError("the request asks for no stems", field="stems")
        maker = self.router.plan(request, provider)[0][0]
        caps = maker.backend.capabilities(maker.model)
        if "extract" in caps.audio_prompt_modes and set(request.stems) <= caps.stems:
            return f"{maker.backend.name}:{maker.model}", maker.license
        probe = separation.probe_request(request.stems[0], request.duration)
        chosen = self.router.plan(probe, separation.DEFAULT_SEPARATOR)[0][0]
        license = separation.check_separator(chosen, request.stems, maker.license, self.config.policy)
        return f"{chosen.backend.name}:{chosen.model}", license

    def _with_stems(
        self,
        generation: Generation,
        request: GenerationRequest,
        separator: str,
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> Generation:
        """The generated track (the mix, role None) followed by its stems from `separator`."""
        assert request.stems is not None
        mix = generation.tracks[0]
        stems = self.separate(
            mix, request.stems, provider=separator, seed=request.seed, on_progress=on_progress, cancel=cancel
        )
        return Generation([mix, *stems.tracks])

    # --- loops ---
    def _loop_plan(self, request: GenerationRequest, provider: str | None) -> loops.LoopPlan | None:
        """How a looped request is made: None when it is not a loop, or when the provider it goes to loops
        natively (`loop` among its model's declared fields) and no bar count is asked for."""
        if not request.loop:
            return None
        if request.loop_bars is None:
            candidate = self.router.plan(request, provider)[0][0]
            if "loop" in candidate.backend.capabilities(candidate.model).fields:
                return None
        return loops.plan(request)

    def _as_loop(self, generation: Generation, request: GenerationRequest, plan: loops.LoopPlan | None) -> Generation:
        """Each track as a loop: cut from the take (soundforge's loop), or marked as the provider's own."""
        tracks = []
        for track in generation.tracks:
            provenance = track.provenance
            native = plan is None and "loop" in self.backend(provenance.provider).capabilities(provenance.model).fields
            if native:
                record = {"start": 0, "end": int(track.audio.shape[1]), "made_by": provenance.provider}
                tracks.append(
                    Track(track.audio, track.sample_rate, track.license, provenance.model_copy(update={"loop": record}))
                )
                continue
            # A fallback without a loop mode answered a request planned for one: the loop is cut from what it made.
            cut_plan = plan or loops.plan(request.model_copy(update={"duration": track.duration * 0.75}))
            loop = loops.cut(track.audio, track.sample_rate, cut_plan, _reported_bpm(provenance.parameters))
            update = {"loop": loop.record(track.sample_rate), "pcm_sha256": pcm_sha256(loop.audio)}
            tracks.append(Track(loop.audio, track.sample_rate, track.license, provenance.model_copy(update=update)))
        return Generation(tracks)

    async def _agenerate(
        self,
        request: GenerationRequest,
        provider: str | None,
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> Generation:
        record = request.record()
        with generation_span(record, provider) as span:
            candidates, attempts = self.router.plan(request, provider)
            self._skipped(span, attempts)
            errors: list[tuple[str, SoundforgeError]] = []
            for number, candidate in enumerate(candidates, 1):
                key = self._cache_key(candidate, request, record)
                if self.cache is not None and key is not None:
                    cached = await asyncio.to_thread(self.cache.get, key)
                    if cached is not None:
                        return cached
                call = self._begin(candidate, number, key, record, on_progress, cancel)
                with attempt_span(candidate.backend.name, candidate.model, number) as call.span:
                    try:
                        raw = await candidate.backend.agenerate(request, candidate.model, call.context)
                    except SoundforgeError as exc:
                        self._failed(span, call, exc, attempts, errors)
                        continue
                    except BaseException:
                        self._settle(call.held, None)
                        raise
                    if sum(track.audio.size for track in raw.tracks) > _FINISH_ON_LOOP_MAX_SAMPLES:
                        # Checking and hashing long audio takes milliseconds (about 22 ms for 60 s of stereo): not on
                        # the event loop, where it would hold up every other request.
                        generation = await asyncio.to_thread(self._finish, call, raw, attempts, provider)
                    else:
                        generation = self._finish(call, raw, attempts, provider)
                    self._succeeded(call, generation)
                    if key is not None and self.cache is not None:
                        await asyncio.to_thread(self._store, key, generation)
                    return generation
            raise _exhausted(errors)

    # --- streaming ---
    def stream(
        self,
        prompt_or_request: str | GenerationRequest,
        *,
        provider: str | None = None,
        whole: bool = False,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **params: Any,
    ) -> AudioStream:
        """Generate audio and hand it over in chunks as it is made (`soundforge.streaming.AudioStream`).

        Routing, the licence policy and the cost limits are applied here, before the first chunk, as for
        `generate`; only providers whose model streams (`Capabilities.streaming`) are candidates, unless
        `whole=True`, which lets one that does not stream deliver each track as a single chunk when it is done.
        A provider that fails before its first chunk gives way to the next candidate; once audio has been
        handed over, a failure ends the stream with the error. `quality="report"` judges the finished take;
        `quality="retry"` is refused (the rejected take would already have been heard).
        """
        request = build_request(prompt_or_request, params)
        if request.quality == "retry":
            raise InvalidRequestError(
                "quality='retry' cannot be combined with streaming: a rejected take would already have been heard",
                field="quality",
                hint="use quality='report' to have the streamed take judged, or generate() to retry",
            )
        if request.stems:
            raise InvalidRequestError(
                "stems cannot be streamed: they are separated from the finished track",
                field="stems",
                hint="stream the track, then soundforge.separate(stream.generation)",
            )
        if request.loop:
            raise InvalidRequestError(
                "loop=True cannot be streamed: the loop is cut from the finished take",
                field="loop",
                hint="generate() the loop, then play it repeatedly",
            )
        if request.watermark:
            raise InvalidRequestError(
                "watermark=True cannot be streamed: the watermark is computed over the finished track, and the "
                "chunks handed over would carry none",
                field="watermark",
                hint="generate() the track, or soundforge.watermarking.embed(stream.generation.tracks[0])",
            )
        cancel = cancel or CancelToken()
        candidates, attempts = self.router.plan(request, provider, streaming=not whole)
        source = self._stream(request, provider, candidates, attempts, on_progress, cancel)
        return AudioStream(source, cancel)

    def astream(
        self,
        prompt_or_request: str | GenerationRequest,
        *,
        provider: str | None = None,
        whole: bool = False,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        **params: Any,
    ) -> AsyncAudioStream:
        """`stream` for async code: `async with client.astream(...) as stream: async for chunk in stream: ...`.

        Routing and the policy are checked when it is called; the engine runs on a worker thread between chunks.
        """
        cancel = cancel or CancelToken()
        sync = self.stream(
            prompt_or_request, provider=provider, whole=whole, on_progress=on_progress, cancel=cancel, **params
        )
        return AsyncAudioStream(sync._source, cancel)

    def _stream(
        self,
        request: GenerationRequest,
        provider: str | None,
        candidates: list[Candidate],
        attempts: list[Attempt],
        on_progress: ProgressCallback | None,
        cancel: CancelToken,
    ) -> Generator[AudioChunk, None, Generation]:
        """The chunks of the first candidate that starts delivering, then its finished generation."""
        record = request.record()
        errors: list[tuple[str, SoundforgeError]] = []
        for number, candidate in enumerate(candidates, 1):
            key = self._cache_key(candidate, request, record)
            cached = self.cache.get(key) if self.cache is not None and key is not None else None
            if cached is not None:
                yield from _whole_chunks(cached)
                return cached
            call = self._begin(candidate, number, key, record, on_progress, cancel)
            backend, model = candidate.backend, candidate.model
            source = (
                backend.stream(request, model, call.context)
                if _streams(backend, request, model)
                else _whole_track(backend, request, model, call.context)
            )
            delivered = False
            try:
                while True:
                    try:
                        chunk = next(source)
                    except StopIteration as done:
                        raw: RawGeneration = done.value
                        break
                    delivered = True
                    yield chunk
            except SoundforgeError as exc:
                source.close()
                if delivered:  # the listener has heard part of it: no other provider may continue it
                    self._settle(call.held, candidate.estimate)
                    self._tell("failure", call, error_code=exc.code, error=str(exc))
                    raise
                self._failed(None, call, exc, attempts, errors)
                continue
            except BaseException:  # closed by the listener (GeneratorExit), or interrupted
                cancel.cancel()
                source.close()  # the backend stops its engine and waits for it
                self._settle(call.held, candidate.estimate if delivered else None)
                raise
            generation = self._finish(call, raw, attempts, provider)
            if request.quality == "report":
                generation = _with_quality(generation, _judge(generation, request), [])
            self._succeeded(call, generation)
            self._store(key, generation)
            return generation
        raise _exhausted(errors)

    # --- one attempt: budget, callbacks, spans ---
    def _begin(
        self,
        candidate: Candidate,
        number: int,
        key: str | None,
        record: dict[str, Any],
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> _Call:
        """Start an attempt: its run context (progress told to the callbacks too), its budget hold, its start
        event."""
        call = _Call(candidate, number, key, record, started=time.perf_counter())
        call.context = RunContext(
            settings=self.config.provider_settings(candidate.backend.name),
            on_progress=self._watch(on_progress, call),
            cancel=cancel or CancelToken(),
        )
        if self.budget is not None:
            call.held = self.budget.reserve(candidate.backend.name, candidate.estimate)
        self._tell("start", call)
        return call

    def _tell(self, kind: EventKind, call: _Call, **more: Any) -> None:
        if self.callbacks:
            candidate = call.candidate
            event = GenerationEvent(
                kind,
                candidate.backend.name,
                candidate.model,
                call.record,
                call.number,
                seconds=time.perf_counter() - call.started,
                **more,
            )
            notify(self.callbacks, event)

    def _watch(self, on_progress: ProgressCallback | None, call: _Call) -> ProgressCallback | None:
        """The caller's progress callback, also telling the client's callbacks (itself when there are none)."""
        if not self.callbacks:
            return on_progress

        def progress(event: ProgressEvent) -> None:
            self._tell("progress", call, phase=event.phase, done=event.done, total=event.total)
            if on_progress is not None:
                on_progress(event)

        return progress

    @staticmethod
    def _skipped(span: Any, attempts: list[Attempt]) -> None:
        for skip in attempts:
            add_event(span, "soundforge.skipped", {"provider": skip.provider, "reason": skip.error_code})

    def _failed(
        self,
        span: Any,
        call: _Call,
        exc: SoundforgeError,
        attempts: list[Attempt],
        errors: list[tuple[str, SoundforgeError]],
    ) -> None:
        """An attempt failed: its hold released, the failure counted, told and recorded; raise when no fallback
        may answer it."""
        candidate = call.candidate
        self._settle(call.held, None)
        if exc.fallback_allowed:  # the provider failed (not the request): it counts towards a cool-down
            self.router.health.failed(candidate.backend.name, str(exc))
        end_attempt(call.span, outcome="failed", error_code=exc.code)
        add_event(span, "soundforge.attempt_failed", {"provider": candidate.backend.name, "error.type": exc.code})
        self._tell("failure", call, error_code=exc.code, error=str(exc))
        attempts.append(
            Attempt(
                provider=candidate.backend.name,
                model=candidate.model,
                outcome="failed",
                error=str(exc),
                error_code=exc.code,
                seconds=time.perf_counter() - call.started,
            )
        )
        errors.append((f"{candidate.backend.name}:{candidate.model}", exc))
        if not exc.fallback_allowed:
            raise exc

    def _succeeded(self, call: _Call, generation: Generation) -> None:
        candidate = call.candidate
        elapsed = time.perf_counter() - call.started
        self.router.health.succeeded(candidate.backend.name, candidate.model, elapsed, generation.duration)
        license_id = generation.license.id
        end_attempt(call.span, outcome="ok", cost=generation.cost, license_id=license_id, delivered=generation.duration)
        self._tell("success", call, cost=generation.cost, license_id=license_id)

    def _cache_key(self, candidate: Candidate, request: GenerationRequest, record: dict[str, Any]) -> str | None:
        """The result cache's key for this call, or None when it must not be cached (no cache, no explicit seed,
        or a model that does not declare seed determinism)."""
        if self.cache is None or request.seed is None:
            return None
        if not candidate.backend.capabilities(candidate.model).seed_deterministic:
            return None
        identity = candidate.backend.cache_identity(candidate.model)
        return cache_key(candidate.backend.name, candidate.model, record, identity)

    def _store(self, key: str | None, generation: Generation) -> None:
        if key is not None and self.cache is not None:
            try:
                self.cache.put(key, generation)
            except OSError:  # a full disk must not lose a result that was made (and maybe paid for)
                log.warning("the result cache could not store a generation; it is returned uncached", exc_info=True)

    def _settle(self, held: float, cost: Cost | None) -> None:
        if self.budget is not None:
            self.budget.settle(held, cost)

    def _finish(
        self,
        call: _Call,
        raw: RawGeneration,
        attempts: list[Attempt],
        requested: str | None,
    ) -> Generation:
        candidate = call.candidate
        elapsed = time.perf_counter() - call.started
        backend, model = candidate.backend, candidate.model
        cost = settle_cost(
            candidate.estimate, raw.usage, compute_seconds=max(0.0, elapsed - raw.load_seconds), device=raw.device
        )
        self._settle(call.held, cost)
        attempts = [*attempts, Attempt(provider=backend.name, model=model, outcome="ok", seconds=elapsed)]
        tracks = []
        for index, raw_track in enumerate(raw.tracks):
            audio = as_audio(raw_track.audio, name=f"{backend.name} output")
            provenance = Provenance(
                digital_source_type=raw.digital_source_type,
                provider=backend.name,
                model=model,
                model_revision=raw.model_revision,
                track_index=index,
                role=raw_track.role,
                seed=raw_track.seed,
                parameters=raw_track.parameters,
                request=call.record,
                soundforge_version=__version__,
                engine=raw.engine_versions,
                device=raw.device,
                timings=Timings(load=raw.load_seconds, generate=max(0.0, elapsed - raw.load_seconds), total=elapsed),
                pcm_sha256=pcm_sha256(audio),
                sample_rate=raw_track.sample_rate,
                channels=audio.shape[0],
                attempts=attempts,
                requested=self._resolved(requested),
                unofficial=raw.unofficial,
                watermarks=list(raw.watermarks),
                cost=cost,
            )
            tracks.append(
                Track(audio=audio, sample_rate=raw_track.sample_rate, license=candidate.license, provenance=provenance)
            )
        return Generation(tracks)

    def _resolved(self, spec: str | None) -> str:
        """The spec as asked for, aliases resolved (`hq` -> `musicgen:facebook/musicgen-large`)."""
        return str(parse_spec(spec or self.config.default_provider, self.config.aliases))

    # --- life cycle ---
    def loaded_models(self) -> list[LoadedModelInfo]:
        """The models local backends hold, least recently used first, with their device and measured size."""
        return [LoadedModelInfo(e.owner, e.key, e.device, e.nbytes) for e in self.memory.entries()]

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


#: Above this many samples (about 11 s of stereo at 44.1 kHz, ~4 ms of checks and hashing) `agenerate` builds the
#: result on a worker thread; below it the thread hop would cost more than it saves.
_FINISH_ON_LOOP_MAX_SAMPLES = 1_000_000
#: Fresh takes `quality="retry"` makes when the request does not say how many.
DEFAULT_QUALITY_RETRIES = 2
log = logging.getLogger("soundforge")


def _retries(request: GenerationRequest) -> int:
    """How many fresh takes `quality="retry"` may make after the first (0 for "report")."""
    if request.quality != "retry":
        return 0
    return request.quality_retries if request.quality_retries is not None else DEFAULT_QUALITY_RETRIES


def _judge(generation: Generation, request: GenerationRequest) -> QualityReport | None:
    """The quality gate over every track of a take (the worst verdicts, check by check); None for a cache hit."""
    if generation.provenance.cache_hit:
        return None  # already judged when it was made
    reports = [quality_check(t.audio, t.sample_rate, request.duration) for t in generation.tracks]
    return reports[0] if len(reports) == 1 else QualityReport(checks=[c for r in reports for c in r.checks])


def _rejected(generation: Generation, report: QualityReport) -> dict[str, Any]:
    cost = generation.cost
    return {
        "seed": generation.provenance.seed,
        "failures": report.failures,
        "cost": cost.model_dump(mode="json") if cost is not None else None,
    }


def _with_quality(generation: Generation, report: QualityReport | None, rejected: list[dict[str, Any]]) -> Generation:
    """The take with the gate's verdicts (and the takes it rejected) in every track's provenance."""
    if report is None:
        return generation
    verdict = {"passed": report.passed, "checks": [c.model_dump() for c in report.checks], "rejected": rejected}
    tracks = [
        Track(
            audio=t.audio,
            sample_rate=t.sample_rate,
            license=t.license,
            provenance=t.provenance.model_copy(update={"quality": verdict}),
        )
        for t in generation.tracks
    ]
    return Generation(tracks)


def _reported_bpm(parameters: dict[str, Any]) -> float | None:
    """The tempo a provider says it played (the synthesizer's `tempo_bpm`), whose bar grid starts at zero."""
    value = parameters.get("tempo_bpm")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _streams(backend: Backend, request: GenerationRequest, model: str) -> bool:
    """Whether the backend streams this request (planning already refused those that cannot, unless `whole`)."""
    try:
        backend.check_stream(request, model)
    except UnsupportedFeatureError:
        return False
    return True


def _whole_chunks(generation: Generation) -> Iterator[AudioChunk]:
    """Each track of a finished generation as one chunk."""
    for index, track in enumerate(generation.tracks):
        yield AudioChunk(track.audio, 0, track.sample_rate, index)


def _whole_track(
    backend: Backend, request: GenerationRequest, model: str, context: RunContext
) -> Generator[AudioChunk, None, RawGeneration]:
    """A backend that does not stream, as a stream of one chunk per track (`stream(whole=True)`)."""
    raw = backend.generate(request, model, context)
    for index, track in enumerate(raw.tracks):
        audio = as_audio(track.audio, name=f"{backend.name} output")
        yield AudioChunk(audio, 0, track.sample_rate, index)
    return raw


def _exhausted(errors: list[tuple[str, SoundforgeError]]) -> SoundforgeError:
    if len(errors) == 1:
        return errors[0][1]
    return AllProvidersFailedError(errors)
