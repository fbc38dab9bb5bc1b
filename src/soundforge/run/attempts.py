"""One bookkeeping core for every provider call, with thin sync, async and streaming loops around the I/O.

An attempt is one candidate's call for one take: its cache lookup, its budget hold, its callbacks and spans, then
either its failure record (the next candidate may answer) or the result with its provenance and settled cost. Every
paid take goes through here, the quality gate's retries included, so budgets, callbacks and traces see each one.
The three loops differ only in how they call the backend (`generate`, `agenerate`, `stream`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from .._version import __version__
from ..audio import as_audio, pcm_sha256
from ..backends import Backend, CancelToken, RawGeneration, RunContext
from ..backends.base import AudioChunk, ProgressCallback, ProgressEvent, Steering
from ..config import Config
from ..errors import AllProvidersFailedError, SoundforgeError, UnsupportedFeatureError
from ..licences.provenance import Attempt, Provenance, Timings
from ..ops.budget import Budget
from ..ops.cache import ResultCache, cache_key
from ..ops.observe import (
    Callback,
    EventKind,
    GenerationEvent,
    add_event,
    attempt_span,
    end_attempt,
    generation_span,
    notify,
)
from ..ops.pricing import Cost
from ..ops.pricing import settle as settle_cost
from ..request import GenerationRequest
from ..result import Generation, Track
from ..routing import Candidate, Router, parse_spec
from .plan import Plan
from .steps import judge, with_quality

log = logging.getLogger("soundforge")
#: Above this many samples (about 11 s of stereo at 44.1 kHz, ~4 ms of checks and hashing) the async loop builds the
#: result on a worker thread; below it the thread hop would cost more than it saves.
_FINISH_ON_LOOP_MAX_SAMPLES = 1_000_000


@dataclass
class _Call:
    """One provider attempt of one take, tracked around the backend's call."""

    candidate: Candidate
    number: int
    key: str | None
    record: dict[str, Any]
    started: float
    context: RunContext = field(default_factory=RunContext)
    held: float = 0.0
    span: Any = None


@dataclass
class _Io:
    """One I/O step the attempt loop asks its driver for: a cache read, the provider's call, building the result
    (checks and hashing), a cache write."""

    kind: str
    key: str | None = None
    take: GenerationRequest | None = None
    call: _Call | None = None
    raw: RawGeneration | None = None
    attempts: list[Attempt] | None = None
    requested: str | None = None
    generation: Generation | None = None


class _Step:
    """A driver's state between the attempt loop's steps: the step asked for, and its answer or error."""

    def __init__(self) -> None:
        self.io: _Io | None = None
        self.answer: Any = None
        self.error: BaseException | None = None
        self.result: Any = None

    def advance(self, steps: Generator[_Io, Any, Generation]) -> bool:
        """Give the loop the last answer (or raise the last error in it); False once it has its result."""
        try:
            self.io = steps.throw(self.error) if self.error is not None else steps.send(self.answer)
        except StopIteration as done:
            self.result = done.value
            return False
        return True

    def perform(self, do: Any) -> None:
        """Perform the step, blocking; an error goes back into the loop, which records it and moves on or ends."""
        try:
            self.answer, self.error = do(self.io), None
        except BaseException as exc:
            self.answer, self.error = None, exc

    async def aperform(self, do: Any) -> None:
        """Perform the step without blocking the event loop (cancelling the task raises in the loop)."""
        try:
            self.answer, self.error = await do(self.io), None
        except BaseException as exc:
            self.answer, self.error = None, exc


class Attempts:
    """Runs the takes of planned requests: the client holds one."""

    def __init__(
        self,
        config: Config,
        router: Router,
        *,
        budget: Budget | None,
        callbacks: list[Callback],
        cache: ResultCache | None,
    ) -> None:
        self.config = config
        self.router = router
        self.budget = budget
        self.callbacks = callbacks
        #: Ids of the callbacks that have raised: their traceback is logged the first time only.
        self.callbacks_raised: set[int] = set()
        self.cache = cache

    # --- the three loops ---
    def run(
        self, plan: Plan, take: GenerationRequest, on_progress: ProgressCallback | None, cancel: CancelToken | None
    ) -> Generation:
        """One take (blocking): the plan's candidates in order until one answers."""
        steps, step = self._steps(plan, take, on_progress, cancel), _Step()
        while step.advance(steps):
            step.perform(self._io)
        return step.result

    async def arun(
        self, plan: Plan, take: GenerationRequest, on_progress: ProgressCallback | None, cancel: CancelToken | None
    ) -> Generation:
        """One take without blocking the event loop; cancelling the task cancels the call."""
        steps, step = self._steps(plan, take, on_progress, cancel), _Step()
        while step.advance(steps):
            await step.aperform(self._aio)
        return step.result

    def _steps(
        self, plan: Plan, take: GenerationRequest, on_progress: ProgressCallback | None, cancel: CancelToken | None
    ) -> Generator[_Io, Any, Generation]:
        """The attempt loop without its I/O (`run` and `arun` perform each `_Io` it yields, blocking or not, and
        send the answer back): cache, budget hold, callbacks, spans, fallbacks, provenance, written once."""
        record = take.record()
        with generation_span(record, plan.provider) as span:
            self._skipped(span, plan.skipped)
            attempts = list(plan.skipped)
            errors: list[tuple[str, SoundforgeError]] = []
            for number, candidate in enumerate(plan.candidates, 1):
                key = self._cache_key(candidate, take, record)
                if self.cache is not None and key is not None:
                    cached = yield _Io("cache", key=key)
                    if cached is not None:
                        return cached  # type: ignore[no-any-return]
                call = self._begin(candidate, number, key, record, on_progress, cancel)
                with attempt_span(candidate.backend.name, candidate.model, number) as call.span:
                    try:
                        raw = yield _Io("call", take=take, call=call)
                    except SoundforgeError as exc:
                        self._failed(span, call, exc, attempts, errors)
                        continue
                    except BaseException:
                        self._settle(call.held, None)
                        raise
                    generation = yield _Io("finish", call=call, raw=raw, attempts=attempts, requested=plan.provider)
                    self._succeeded(call, generation)
                    if key is not None and self.cache is not None:
                        yield _Io("store", key=key, generation=generation)
                    return generation  # type: ignore[no-any-return]
            raise _exhausted(errors)

    def _io(self, io: _Io) -> Any:
        """Perform one step of the loop, blocking."""
        if io.kind == "cache":
            return self.cache.get(io.key) if self.cache is not None else None
        if io.kind == "call":
            return io.call.candidate.backend.generate(io.take, io.call.candidate.model, io.call.context)
        if io.kind == "finish":
            return self._finish(io.call, io.raw, io.attempts, io.requested)
        return self._store(io.key, io.generation)

    async def _aio(self, io: _Io) -> Any:
        """Perform one step of the loop without blocking the event loop."""
        if io.kind == "call":
            return await io.call.candidate.backend.agenerate(io.take, io.call.candidate.model, io.call.context)
        if io.kind == "finish" and sum(t.audio.size for t in io.raw.tracks) <= _FINISH_ON_LOOP_MAX_SAMPLES:
            return self._finish(io.call, io.raw, io.attempts, io.requested)  # short audio: the hop costs more
        return await asyncio.to_thread(self._io, io)  # the cache, the store, hashing long audio

    def stream(
        self, plan: Plan, on_progress: ProgressCallback | None, cancel: CancelToken, steering: Steering | None = None
    ) -> Generator[AudioChunk, None, Generation]:
        """The chunks of the first candidate that starts delivering, then its finished generation; `steering` carries
        the listener's changes to a backend that takes them while it plays."""
        request = plan.take
        record = request.record()
        attempts = list(plan.skipped)
        errors: list[tuple[str, SoundforgeError]] = []
        for number, candidate in enumerate(plan.candidates, 1):
            key = self._cache_key(candidate, request, record)
            cached = self.cache.get(key) if self.cache is not None and key is not None else None
            if cached is not None:
                yield from _whole_chunks(cached)
                return cached
            call = self._begin(candidate, number, key, record, on_progress, cancel, steering)
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
            generation = self._finish(call, raw, attempts, plan.provider)
            if request.quality == "report":
                generation = with_quality(generation, judge(generation, request), [])
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
        steering: Steering | None = None,
    ) -> _Call:
        """Start an attempt: its run context (progress told to the callbacks too), its budget hold, its start
        event."""
        call = _Call(candidate, number, key, record, started=time.perf_counter())
        call.context = RunContext(
            settings=self.config.provider_settings(candidate.backend.name),
            on_progress=self._watch(on_progress, call),
            cancel=cancel or CancelToken(),
            adapters=candidate.adapters,
            steering=steering,
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
            notify(self.callbacks, event, self.callbacks_raised)

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
        if candidate.adapters:  # the files' hashes, not only their names: an adapter changed in place is another call
            record = {**record, "adapters": [a.record() for a in candidate.adapters]}
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

    def _finish(self, call: _Call, raw: RawGeneration, attempts: list[Attempt], requested: str | None) -> Generation:
        """The result of a successful call: its cost settled, each track with its licence and provenance."""
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
                requested=str(parse_spec(requested or self.config.default_provider, self.config.aliases)),
                unofficial=raw.unofficial,
                watermarks=list(raw.watermarks),
                cost=cost,
                adapters=adapter_records(candidate) or None,
            )
            tracks.append(
                Track(audio=audio, sample_rate=raw_track.sample_rate, license=candidate.license, provenance=provenance)
            )
        return Generation(tracks)


def adapter_records(candidate: Candidate) -> list[dict[str, Any]]:
    """The provenance of a call's adapters: each one's source, revision, scale, file sha256 and licence."""
    licences = [c for c in candidate.license.components if c.role == "adapter"]
    return [
        {**found.record(), "license": component.license.id}
        for found, component in zip(candidate.adapters, licences, strict=True)
    ]


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
