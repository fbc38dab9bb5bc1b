"""The backend interface every provider implements, and the data it hands back.

A backend declares its models and their capabilities, says whether it can run here (and if not, the
exact fix), and turns a validated request into raw audio. Licence, provenance, policy, fallbacks and
file output are the client's job, so a backend stays a short adapter around one engine or API.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..audio import TRAINED_ALGORITHMIC_MEDIA, AudioArray
from ..capabilities import Capabilities, ModelInfo
from ..errors import (
    ConfigurationError,
    GenerationCancelledError,
    InvalidRequestError,
    ModelNotAvailableError,
    UnsupportedFeatureError,
)
from ..request import Adapter, GenerationRequest
from ._compute import cpu_bound_pool

if TYPE_CHECKING:
    from pathlib import Path

    from ..licences.licensing import License
    from ..licences.model_card import ModelCard
    from ._memory import ModelMemory


def checked_extra(
    request: GenerationRequest, kinds: dict[str, Any], *, provider: str, label: str | None = None
) -> dict[str, Any]:
    """The request's `extra` checked against a backend's known keys and types (a type or a tuple of types).

    Unknown keys and wrong types raise InvalidRequestError naming them; an int is accepted (and converted) where
    a float is expected, a bool never stands for a number. Keys set to None count as absent.
    """
    return checked_values(request.extra, kinds, provider=provider, label=label)


def checked_values(
    extra: Mapping[str, Any], kinds: dict[str, Any], *, provider: str, label: str | None = None
) -> dict[str, Any]:
    """`checked_extra` for a mapping of parameters (a part of `extra`)."""
    unknown = set(extra) - set(kinds)
    if unknown:
        raise InvalidRequestError(
            f"unknown {label or provider} extra parameter(s): {', '.join(sorted(unknown))}",
            field="extra",
            provider=provider,
            hint=f"known: {', '.join(kinds)}",
        )
    checked: dict[str, Any] = {}
    for key, kind in kinds.items():
        value = extra.get(key)
        if value is None:
            continue
        allowed = kind if isinstance(kind, tuple) else (kind,)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join(k.__name__ for k in allowed)
            raise InvalidRequestError(f"extra[{key!r}] must be {names}", field="extra", provider=provider)
        checked[key] = value
    return checked


def default_seed(request: GenerationRequest, upper: int = 2**31) -> int:
    """The request's seed, or a fresh random one below `upper` (recorded in the provenance either way)."""
    return request.seed if request.seed is not None else secrets.randbelow(upper)


def fit_length(audio: Any, samples: int) -> Any:
    """Audio (samples on the last axis) cut or zero-padded to exactly `samples`: the length the request asked for.

    Engines produce whole frames or latent blocks, so their output runs a little over or (by a codec frame) under.
    """
    import numpy as np

    audio = audio[..., :samples]
    short = samples - audio.shape[-1]
    if short > 0:
        audio = np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, short)])
    return audio


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; when not, `reason` says why and `fix` what to do."""

    available: bool
    reason: str = ""
    fix: str | None = None


@dataclass(frozen=True)
class ProgressEvent:
    """Progress of one generation: `done` of `total` steps in the current phase."""

    phase: str
    done: int
    total: int


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """A flag a caller sets to stop a generation; backends check it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the running generation to stop at its next step."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise GenerationCancelledError when cancelled."""
        if self._event.is_set():
            raise GenerationCancelledError("generation cancelled by the caller")


class Steering:
    """Changes a listener sends to a stream while it plays (`AudioStream.steer`), for the providers that take them.

    The backend that streams attaches its check when its session starts (`attach`): `send` runs it at once, so a
    change the model cannot take raises where it was made and is never sent; checked changes wait in order until the
    backend takes them (`take`), between chunks. A stream whose provider cannot be steered refuses every change.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._check: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._provider: str | None = None

    def attach(self, provider: str, check: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """A backend starts taking changes; `check` validates one change (raising) and returns what to apply."""
        with self._lock:
            self._provider, self._check = provider, check

    def detach(self) -> None:
        """The backend's session ended: later changes are refused."""
        with self._lock:
            self._check = None

    def send(self, changes: dict[str, Any]) -> None:
        """Check `changes` against the playing model and queue them; raises what the check raises."""
        with self._lock:
            check, provider = self._check, self._provider
        if check is None:
            raise UnsupportedFeatureError(
                "steering",
                provider or "this stream",
                detail="only a live session (lyria-realtime) takes changes while it plays, and only while it plays",
            )
        checked = check(dict(changes))
        with self._lock:
            self._pending.append(checked)

    def take(self) -> list[dict[str, Any]]:
        """The checked changes not applied yet, oldest first (the backend applies them)."""
        with self._lock:
            taken, self._pending = self._pending, []
        return taken


class AdapterWeights(Protocol):
    """A style adapter routing found and checked (`adapters.AdapterFiles`): what an engine loads, and at what
    scale."""

    @property
    def adapter(self) -> Adapter:
        """The request's adapter: source, scale, revision."""
        ...

    @property
    def folder(self) -> str:
        """The folder holding the weight file."""
        ...

    @property
    def weight_name(self) -> str:
        """The weight file's name inside `folder`."""
        ...

    @property
    def sha256(self) -> str:
        """The weight file's sha256."""
        ...


class AnswerSpool(Protocol):
    """Where a cloud call keeps the answers it paid for until it delivers them (`_answers.PaidAnswers`): the HTTP
    core asks it for a kept reply before sending a non-idempotent request, and hands it each reply it receives."""

    def take(self, method: str, path: str) -> KeptAnswer | None:
        """The reply an earlier call received for this route, if one is kept."""
        ...

    def keep(self, method: str, path: str, status: int, headers: dict[str, str], body: Path) -> None:
        """Keep a reply just received, before anything reads it."""
        ...


class KeptAnswer(Protocol):
    """A kept reply: its status, headers and body file."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> dict[str, str]: ...

    @property
    def file(self) -> Path: ...


@dataclass
class RunContext:
    """What the client gives a backend for one call: progress reporting, cancellation, provider settings."""

    settings: dict[str, Any] = field(default_factory=dict)
    on_progress: ProgressCallback | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    #: Where a cloud call keeps the answers it paid for until it delivers them (`CloudBackend`); None elsewhere.
    answers: AnswerSpool | None = None
    #: The request's style adapters as routing found and checked them (files, hashes, licences): what to load.
    adapters: tuple[AdapterWeights, ...] = ()
    #: A stream's channel for changes while it plays (`AudioStream.steer`); None outside `Client.stream`.
    steering: Steering | None = None

    def progress(self, phase: str, done: int, total: int) -> None:
        """Report progress and stop if the caller cancelled."""
        self.cancel.raise_if_cancelled()
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(phase, done, total))


@dataclass(frozen=True)
class RawTrack:
    """Audio as a backend made it, before licence and provenance are attached."""

    audio: AudioArray
    sample_rate: int
    seed: int | None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: What the track is of a song (a stem name such as "vocals"); None for the whole mix.
    role: str | None = None


@dataclass(frozen=True)
class RawGeneration:
    """A backend's answer: tracks plus the facts the provenance needs."""

    tracks: list[RawTrack]
    model_revision: str | None = None
    engine_versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    load_seconds: float = 0.0
    digital_source_type: str = TRAINED_ALGORITHMIC_MEDIA
    unofficial: bool = False
    #: Watermarks the provider says it embeds in the audio itself (e.g. "SynthID (Google)"): not soundforge's.
    watermarks: list[str] = field(default_factory=list)
    #: What the vendor reported the call used, for its cost (e.g. {"gpu_seconds": 12.3} from Replicate's metrics).
    usage: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioChunk:
    """A piece of one track as it is made: float32 audio shaped (channels, samples) that starts `offset` samples
    into track `track_index`. A stream's chunks of one track follow each other without gaps or overlap."""

    audio: AudioArray = field(repr=False)
    offset: int
    sample_rate: int
    track_index: int = 0

    @property
    def end(self) -> int:
        """The sample just after this chunk (the next chunk's offset)."""
        return self.offset + int(self.audio.shape[-1])

    @property
    def seconds(self) -> float:
        """Where the chunk starts in the track, in seconds."""
        return self.offset / self.sample_rate

    def __repr__(self) -> str:
        channels, samples = self.audio.shape
        return (
            f"AudioChunk(track {self.track_index}, {self.seconds:.2f} s + {samples / self.sample_rate:.2f} s, "
            f"{channels} ch, {self.sample_rate} Hz)"
        )


#: What `Backend.stream` returns: it yields the chunks as they are made, then returns the whole generation.
ChunkStream = Generator[AudioChunk, None, RawGeneration]


class ChunkAssembler:
    """The tracks a stream made, put together from its chunks (checking they follow each other), for the
    `RawGeneration` a backend's `stream` returns.

    Each chunk is copied into its track's buffer as it comes, and handed on as a read-only view of that buffer: the
    chunk the backend made is freed at once, so a long stream holds one copy of its audio, not its chunks and then
    the joined track (twice a 600 s track's 212 MB, and freed chunks stayed in the producing thread's malloc arena).
    `expect` sizes a buffer up front where the backend knows the length; otherwise it grows by doubling."""

    def __init__(self) -> None:
        self._buffers: dict[int, AudioArray] = {}
        self._ends: dict[int, int] = {}
        self._sizes: dict[int, int] = {}

    def expect(self, index: int, samples: int) -> None:
        """Track `index` will have about `samples` samples: its buffer is made that size (no regrowth)."""
        self._sizes[index] = max(1, samples)

    def add(self, chunk: AudioChunk) -> AudioChunk:
        """Keep `chunk`; give back the same chunk over the kept samples (for `yield assembler.add(chunk)`)."""
        import numpy as np

        index, expected = chunk.track_index, self._ends.get(chunk.track_index, 0)
        if chunk.offset != expected:
            raise RuntimeError(f"track {index}: chunk at {chunk.offset}, expected {expected}")
        end = chunk.end
        buffer = self._buffers.get(index)
        if buffer is None or buffer.shape[1] < end or buffer.shape[0] != chunk.audio.shape[0]:
            held = buffer.shape[1] if buffer is not None else 0
            wanted = max(end, self._sizes.get(index, 0), 2 * held)
            grown = np.empty((chunk.audio.shape[0], wanted), dtype=np.float32)
            if buffer is not None:
                grown[:, :expected] = buffer[:, :expected]
            self._buffers[index] = buffer = grown
        buffer[:, chunk.offset : end] = chunk.audio
        self._ends[index] = end
        view = buffer[:, chunk.offset : end]
        view.flags.writeable = False
        return AudioChunk(view, chunk.offset, chunk.sample_rate, index)

    def track(self, index: int) -> AudioArray:
        """Track `index`'s audio, as one contiguous float32 (channels, samples) array (call it once the stream has
        ended: later chunks of this track are not in it)."""
        import numpy as np

        buffer, end = self._buffers.pop(index, None), self._ends.get(index, 0)
        if buffer is None or end == 0:
            raise RuntimeError(f"the stream made no audio for track {index}")
        if buffer.shape[1] == end:
            return buffer
        return np.ascontiguousarray(buffer[:, :end])


#: Distributions whose version changes what an engine makes (the result cache's key includes them).
ENGINE_PACKAGES = ("torch", "transformers", "diffusers", "audiocraft", "stable-audio-tools", "numpy")
#: Settings every provider accepts: the default model, the licence plan, the engine.
COMMON_SETTINGS = frozenset({"model", "plan", "engine"})
#: Settings of every local engine that loads weights from the Hugging Face hub or a folder.
LOCAL_SETTINGS = frozenset({"device", "dtype", "max_loaded_models", "allow_download"})
#: Set by `soundforge serve` in each engine process it gives a device (`[serve] engines`): what a local backend's
#: `device = "auto"` means in that process.
ENGINE_DEVICE_ENV = "SOUNDFORGE_ENGINE_DEVICE"


class Backend(ABC):
    """Base class of all providers. Subclasses set `name`, `default_model` and implement the abstract methods."""

    #: Provider name used in specs (`"synth"`, `"musicgen"`).
    name: ClassVar[str]
    #: One-line description for `soundforge providers`.
    description: ClassVar[str] = ""
    #: Model used when the spec names none.
    default_model: ClassVar[str]
    #: Whether the backend runs on this machine (True) or calls a remote API (False).
    local: ClassVar[bool] = True
    #: Generation is CPU work in Python and numpy that holds the GIL much of the time (the synthesizer): async
    #: callers run it on a pool of one thread per core rather than asyncio's default executor, because more
    #: threads than cores only queue for the GIL and delay the event loop (docs/performance.md).
    cpu_bound: ClassVar[bool] = False

    #: The `[providers.NAME]` keys this backend reads, besides `model`, `plan` and `engine` (which every provider
    #: has); any other key is a ConfigurationError naming the known ones, so a typo is not silently ignored. None
    #: (third-party backends that declare nothing) skips the check.
    settings_keys: ClassVar[frozenset[str] | None] = None

    def __init__(self, settings: dict[str, Any] | None = None, *, memory: ModelMemory | None = None) -> None:
        self.settings: dict[str, Any] = dict(settings or {})
        if self.settings_keys is not None:
            known = COMMON_SETTINGS | self.settings_keys
            unknown = sorted(set(self.settings) - known)
            if unknown:
                raise ConfigurationError(
                    f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} under "
                    f"[providers.{self.name}]",
                    hint=f"{self.name} reads: {', '.join(sorted(known))}",
                )
        #: The client's model memory ledger, passed in by the client that makes the backend; local backends
        #: register what they load in it (None: no budget, as for a backend made on its own).
        self.memory: ModelMemory | None = memory

    #: Engines that can run this provider, the default first (e.g. transformers, audiocraft).
    engines: ClassVar[tuple[str, ...]] = ()

    def engine(self, request: GenerationRequest | None = None) -> str:
        """The engine for a request: `extra["engine"]`, else the `engine` setting, else the default.

        The one place the choice is made: availability, weights and generation all ask it, so routing checks the
        install and the weights of the engine that will run.
        """
        chosen = (request.extra.get("engine") if request is not None else None) or self.settings.get(
            "engine", self.engines[0] if self.engines else ""
        )
        if chosen not in self.engines:
            raise InvalidRequestError(
                f"unknown {self.name} engine {chosen!r}; choose {' or '.join(self.engines)}",
                field="extra",
                provider=self.name,
            )
        return str(chosen)

    # --- declared facts ---
    @abstractmethod
    def models(self) -> list[ModelInfo]:
        """The models this backend offers (known ones; others may still load by id or path)."""

    def availability(self, request: GenerationRequest | None = None) -> Availability:
        """Whether this backend can run here (for `request`'s engine, when given). Cheap: never loads a model or
        calls the network."""
        return Availability(True)

    def model_availability(
        self, model: str, *, allow_fetch: bool, request: GenerationRequest | None = None
    ) -> Availability:
        """Whether `model` can run now (weights present, or fetchable when `allow_fetch`), on the engine `request`
        would run on. Cheap, no loading.

        `auto` routing passes allow_fetch=False so it never starts a large download on its own.
        """
        return Availability(True)

    def model_info(self, model: str) -> ModelInfo:
        """The declared model, or ModelNotAvailableError naming the known ones."""
        for info in self.models():
            if info.id == model:
                return info
        known = ", ".join(m.id for m in self.models())
        raise ModelNotAvailableError(self.name, model, f"not one of this provider's models ({known})")

    def capabilities(self, model: str) -> Capabilities:
        """Capabilities of one model."""
        return self.model_info(model).capabilities

    def check(self, request: GenerationRequest, model: str) -> None:
        """Refuse a request this model cannot honour, before any work.

        An `UnsupportedFeatureError` raised here names no alternatives: the router, which knows every provider,
        adds them (`UnsupportedFeatureError.offer`).
        """
        caps = self.capabilities(model)
        for name in sorted(request.set_fields()):
            if not caps.honours(name, getattr(request, name)):
                value = getattr(request, name)
                detail = f"{value!r} is not among {caps.offers(name)}" if caps.offers(name) else None
                raise UnsupportedFeatureError(name, f"{self.name}:{model}", detail=detail)
        if request.duration > caps.max_duration:
            raise InvalidRequestError(
                f"duration {request.duration:g} s is over the {caps.max_duration:g} s maximum of {self.name}:{model}",
                field="duration",
                provider=self.name,
                hint="ask for a shorter duration or pick another model",
            )
        if request.duration < caps.min_duration:
            raise InvalidRequestError(
                f"duration {request.duration:g} s is under the {caps.min_duration:g} s minimum of {self.name}:{model}",
                field="duration",
                provider=self.name,
            )
        if request.num_outputs > caps.max_outputs:
            raise InvalidRequestError(
                f"num_outputs {request.num_outputs} is over the {caps.max_outputs} maximum of {self.name}:{model}",
                field="num_outputs",
                provider=self.name,
            )
        if request.sample_rate is not None and request.sample_rate not in caps.sample_rates:
            raise UnsupportedFeatureError(
                "sample_rate",
                f"{self.name}:{model}",
                detail=f"it produces {', '.join(map(str, caps.sample_rates))} Hz",
            )
        if request.channels is not None and request.channels not in caps.channels:
            raise UnsupportedFeatureError(
                "channels",
                f"{self.name}:{model}",
                detail=f"it produces {', '.join(map(str, caps.channels))} channel(s)",
            )

    def cache_identity(self, model: str) -> dict[str, str]:
        """What besides the request decides this backend's output, for the result cache's key: the backend class,
        its settings (secrets left out) and the installed engine packages' versions (read without importing them)."""
        from importlib.metadata import PackageNotFoundError, version

        secretish = ("key", "token", "secret", "password")
        settings = {k: v for k, v in self.settings.items() if not any(word in k.lower() for word in secretish)}
        identity = {"backend": f"{type(self).__module__}.{type(self).__qualname__}", "model": model}
        identity["settings"] = json.dumps(settings, sort_keys=True, default=str)
        for package in ENGINE_PACKAGES:
            try:
                identity[package] = version(package)
            except PackageNotFoundError:
                continue
        return identity

    def check_stream(self, request: GenerationRequest, model: str) -> None:
        """Refuse, before any work, to stream a request this model cannot stream (`Capabilities.streaming`, and
        whatever else the backend knows: an engine or a mode that only makes whole tracks)."""
        if not self.capabilities(model).streaming:
            raise UnsupportedFeatureError(
                "streaming",
                f"{self.name}:{model}",
                detail="it makes whole tracks only (stream(whole=True) accepts that)",
            )

    # --- work ---
    def stream(self, request: GenerationRequest, model: str, context: RunContext) -> ChunkStream:
        """Make the audio of a checked request (`check_stream` passed) and yield it in chunks as it is made, then
        return the `RawGeneration` of the whole (blocking between chunks).

        Closing the generator (the caller stopped listening) must stop the engine at its next step and release
        what the call holds. Backends that stream override this; the default refuses.
        """
        self.check_stream(request, model)
        raise UnsupportedFeatureError("streaming", f"{self.name}:{model}")
        yield  # pragma: no cover - makes this a generator

    @abstractmethod
    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        """Make the audio for a checked request (blocking)."""

    async def agenerate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        """Async generation; by default runs `generate` in a worker thread, cancelling it if the task is cancelled."""
        try:
            if self.cpu_bound:
                call = functools.partial(contextvars.copy_context().run, self.generate, request, model, context)
                return await asyncio.get_running_loop().run_in_executor(cpu_bound_pool(), call)
            return await asyncio.to_thread(self.generate, request, model, context)
        except asyncio.CancelledError:
            context.cancel.cancel()
            raise

    def license_for(self, model: str) -> License | None:
        """The licence of `model`'s outputs when this backend knows it itself (a plug-in with its own terms);
        None (the default) lets the client look the model up in the licence registry."""
        return None

    def pull_note(self, model: str) -> str:
        """Why `soundforge pull` cannot fetch `model`'s weights, with what does ("" when it can): cloud services
        have none; a local engine says whether it loads a hub snapshot as published."""
        return "it runs in the cloud: there are no weights to pull"

    def model_card(self, model: str) -> ModelCard | None:
        """The card of the weights `model` names, as they are on this machine (local engines read it from the
        folder or the cache snapshot, without loading or downloading); None when there is none (cloud services)."""
        return None

    def unload(self, model: str | None = None) -> None:  # noqa: B027 - optional hook
        """Drop one loaded model, or every one (local engines); nothing by default."""

    async def aclose(self) -> None:
        """Release resources from an async caller, including those tied to its event loop; default: `close`."""
        self.close()

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release models, sessions and other resources."""
