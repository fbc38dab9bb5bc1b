"""`lyria-realtime`: Google's Lyria RealTime on the Gemini API, a live music session steered while it plays.

Extra: `soundforge[lyria-realtime]` (google-genai). The session is Google's own client's
(`client.aio.live.music.connect`, google-genai 3.6 `live_music.py`): a WebSocket to
`.../ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateMusic`, the key in the `x-goog-api-key`
header. soundforge sends the weighted prompts and the generation config, then `PLAY`, and hands over the audio as it
arrives (raw 16-bit PCM, 48 kHz stereo) until the request's duration is reached; `AudioStream.steer(...)` changes
the prompts or the config while it plays (a change of `bpm` or `key` resets the context, as the API reference asks).
`generate()` is the same session collected whole. Contract and sources: docs/providers/lyria-realtime.md.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capabilities import Capabilities, ModelInfo
from ..errors import (
    AuthenticationError,
    ContentRefusedError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    SoundforgeError,
)
from ..music import parse_key
from ..request import GenerationRequest
from .base import (
    AudioChunk,
    Availability,
    ChunkStream,
    RawGeneration,
    RawTrack,
    RunContext,
    checked_extra,
)
from .cloud import CloudBackend
from .runtime import missing_modules

MODEL = "lyria-realtime-exp"
SAMPLE_RATE = 48000
CHANNELS = 2
EXTRA = 'pip install "soundforge[lyria-realtime]"'
#: The Scale enum (google-genai `types.Scale`): each value is a major key and its relative minor, by the major
#: key's pitch class.
SCALES = {
    0: "C_MAJOR_A_MINOR",
    1: "D_FLAT_MAJOR_B_FLAT_MINOR",
    2: "D_MAJOR_B_MINOR",
    3: "E_FLAT_MAJOR_C_MINOR",
    4: "E_MAJOR_D_FLAT_MINOR",
    5: "F_MAJOR_D_MINOR",
    6: "G_FLAT_MAJOR_E_FLAT_MINOR",
    7: "G_MAJOR_E_MINOR",
    8: "A_FLAT_MAJOR_F_MINOR",
    9: "A_MAJOR_G_FLAT_MINOR",
    10: "B_FLAT_MAJOR_G_MINOR",
    11: "B_MAJOR_A_FLAT_MINOR",
}
MODES = ("QUALITY", "DIVERSITY", "VOCALIZATION")
#: Config fields: soundforge's name -> (the SDK's `LiveMusicGenerationConfig` field, type, lowest, highest).
#: The ranges of bpm, density and brightness are in the SDK's field descriptions; guidance, temperature and top_k in
#: the API reference (ai.google.dev/gemini-api/docs/music-generation).
CONFIG: dict[str, tuple[str, type, float | None, float | None]] = {
    "bpm": ("bpm", int, 60, 200),
    "density": ("density", float, 0.0, 1.0),
    "brightness": ("brightness", float, 0.0, 1.0),
    "guidance": ("guidance", float, 0.0, 6.0),
    "temperature": ("temperature", float, 0.0, 3.0),
    "top_k": ("top_k", int, 1, 1000),
    "seed": ("seed", int, 0, 2**31 - 1),
    "mute_bass": ("mute_bass", bool, None, None),
    "mute_drums": ("mute_drums", bool, None, None),
    "only_bass_and_drums": ("only_bass_and_drums", bool, None, None),
}
#: What `extra` takes: the config fields the request vocabulary lacks, the weighted prompts and the mode.
EXTRA_KEYS: dict[str, Any] = {
    "density": (int, float),
    "brightness": (int, float),
    "mute_bass": bool,
    "mute_drums": bool,
    "only_bass_and_drums": bool,
    "mode": str,
    "prompts": list,
}
#: Changing these needs `reset_context` to be heard (the API reference's "Steering music").
RESET_ON = frozenset({"bpm", "scale"})
#: Seconds to wait for the session's next audio before giving up (or `read_timeout`, when shorter).
DEFAULT_WAIT = 30.0


def _number(name: str, value: Any, kind: type, low: float | None, high: float | None, provider: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidRequestError(f"{name} is true or false, not {value!r}", field=name, provider=provider)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise InvalidRequestError(
            f"{name} is {'a whole number' if kind is int else 'a number'}, not {value!r}", field=name, provider=provider
        )
    if low is not None and high is not None and not low <= value <= high:
        raise InvalidRequestError(
            f"Lyria RealTime takes {name} from {low:g} to {high:g}, not {value:g}", field=name, provider=provider
        )
    return kind(value)


def weighted_prompts(value: Any, provider: str) -> list[dict[str, Any]]:
    """Prompts as the API takes them, `[{"text", "weight"}]`, from a string, `(text, weight)` pairs or dicts."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise InvalidRequestError(
            "prompts is a text, or a list of (text, weight) pairs", field="prompts", provider=provider
        )
    prompts = []
    for item in items:
        text: Any
        weight: Any
        if isinstance(item, str):
            text, weight = item, 1.0
        elif isinstance(item, dict):
            text, weight = item.get("text"), item.get("weight", 1.0)
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            text, weight = item
        else:
            raise InvalidRequestError(
                f"a prompt is a text or (text, weight), not {item!r}", field="prompts", provider=provider
            )
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError("each prompt needs a text", field="prompts", provider=provider)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight == 0:
            raise InvalidRequestError(
                f"a prompt's weight is a non-zero number, not {weight!r}", field="prompts", provider=provider
            )
        prompts.append({"text": text, "weight": float(weight)})
    return prompts


def config_change(changes: dict[str, Any], provider: str) -> dict[str, Any]:
    """A checked change in the SDK's field names: config fields, `scale` from a key, `music_generation_mode`."""
    config: dict[str, Any] = {}
    for name, value in changes.items():
        if name in CONFIG:
            sdk, kind, low, high = CONFIG[name]
            config[sdk] = _number(name, value, kind, low, high, provider)
        elif name == "key":
            try:
                key = parse_key(str(value))
            except ValueError as exc:
                raise InvalidRequestError(str(exc), field="key", provider=provider) from None
            config["scale"] = SCALES[(key.pitch_class + (3 if key.minor else 0)) % 12]
        elif name == "mode":
            if str(value).upper() not in MODES:
                raise InvalidRequestError(
                    f"mode is one of {', '.join(MODES)}, not {value!r}", field="mode", provider=provider
                )
            config["music_generation_mode"] = str(value).upper()
        else:
            known = ", ".join([*CONFIG, "key", "mode", "prompts"])
            raise InvalidRequestError(
                f"Lyria RealTime cannot be steered by {name!r}", field=name, provider=provider, hint=f"it takes {known}"
            )
    return config


@dataclass
class SessionPlan:
    """What a session is opened with, checked before connecting."""

    prompts: list[dict[str, Any]]
    config: dict[str, Any]
    samples: int
    parameters: dict[str, Any] = field(default_factory=dict)


class LyriaRealtimeBackend(CloudBackend):
    """Lyria RealTime (`GEMINI_API_KEY`): instrumental music streamed from a live session, steerable while it plays."""

    keeps_answers = False  # a live stream: nothing is replayable; what arrived was handed over

    name = "lyria-realtime"
    description = "Google Lyria RealTime on the Gemini API: live instrumental music, steered while it plays"
    default_model = MODEL
    key_env = "GEMINI_API_KEY"
    default_base_url = "https://generativelanguage.googleapis.com"

    def models(self) -> list[ModelInfo]:
        caps = Capabilities(
            min_duration=1.0,
            max_duration=3600.0,
            sample_rates=(SAMPLE_RATE,),
            channels=(CHANNELS,),
            fields=frozenset({"seed", "bpm", "key", "guidance", "temperature", "top_k", "extra"}),
            max_outputs=1,
            seed_deterministic=False,
            streaming=True,
            cost_hint="Lyria RealTime is an experimental model (price UNCONFIRMED)",
        )
        return [ModelInfo(id=MODEL, description="live instrumental music, 48 kHz stereo", capabilities=caps)]

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def availability(self, request: GenerationRequest | None = None) -> Availability:
        if missing_modules("google.genai"):
            return Availability(False, "google-genai is not installed", fix=EXTRA)
        return super().availability(request)

    def plan(self, request: GenerationRequest) -> SessionPlan:
        """The session's prompts and config, every value checked before anything connects."""
        extra = checked_extra(request, EXTRA_KEYS, provider=self.name)
        changes: dict[str, Any] = {k: v for k, v in extra.items() if k != "prompts"}
        for name in ("bpm", "seed", "guidance", "temperature", "top_k", "key"):
            value = getattr(request, name)
            if value is not None:
                changes[name] = value
        prompts = weighted_prompts(extra.get("prompts", request.prompt), self.name)
        config = config_change(changes, self.name)
        samples = round(request.duration * SAMPLE_RATE)
        return SessionPlan(prompts, config, samples, {"weighted_prompts": prompts, "config": dict(config)})

    def check_steering(self, changes: dict[str, Any]) -> dict[str, Any]:
        """One `AudioStream.steer` change, checked: `{"prompts": [...]}` and/or `{"config": {...}}`."""
        if not changes:
            raise InvalidRequestError("steer() needs at least one change", provider=self.name)
        checked: dict[str, Any] = {}
        if "prompts" in changes:
            checked["prompts"] = weighted_prompts(changes.pop("prompts"), self.name)
        if changes:
            checked["config"] = config_change(changes, self.name)
        return checked

    # --- the session ---
    def stream(self, request: GenerationRequest, model: str, context: RunContext) -> ChunkStream:
        plan = self.plan(request)
        settings = self.http_settings()
        if settings.api_key is None:
            raise AuthenticationError(f"no API key ({self.key_env} is not set)", provider=self.name)
        wait = min(settings.read_timeout, DEFAULT_WAIT)
        pieces: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()
        stop = threading.Event()
        key = settings.api_key.get()
        session = _Session(self, plan, settings.base_url, key, model, pieces, stop, context, wait)
        thread = threading.Thread(target=session.run, name="soundforge-lyria-realtime", daemon=True)
        if context.steering is not None:
            context.steering.attach(self.name, self.check_steering)
        thread.start()
        got, kept = 0, []
        try:
            while got < plan.samples:
                piece = self._next(pieces, context, wait)
                audio = _pcm(piece)[:, : plan.samples - got]
                if audio.shape[1] == 0:
                    continue
                kept.append(audio)
                yield AudioChunk(audio, offset=got, sample_rate=SAMPLE_RATE)
                got += audio.shape[1]
                context.progress("stream", got, plan.samples)
        finally:
            stop.set()
            if context.steering is not None:
                context.steering.detach()
            thread.join(timeout=10)
        whole = np.concatenate(kept, axis=1)
        parameters = {**plan.parameters, "steered": session.steered, "model": f"models/{model}"}
        track = RawTrack(audio=whole, sample_rate=SAMPLE_RATE, seed=plan.config.get("seed"), parameters=parameters)
        return RawGeneration(tracks=[track], engine_versions={"api": "v1alpha"}, device="cloud", watermarks=[])

    def _next(self, pieces: queue.SimpleQueue[bytes | BaseException | None], context: RunContext, wait: float) -> bytes:
        """The session's next piece of PCM, checking for a cancel while it waits."""
        waited = 0.0
        while True:
            context.cancel.raise_if_cancelled()
            try:
                piece = pieces.get(timeout=0.1)
            except queue.Empty:
                waited += 0.1
                if waited > wait + 5:
                    raise GenerationTimeoutError(
                        f"Lyria RealTime sent no audio for {wait:g} s", provider=self.name
                    ) from None
                continue
            if isinstance(piece, BaseException):
                raise piece
            if piece is None:
                raise ProviderError(
                    "Lyria RealTime ended the session before the duration asked for", provider=self.name
                )
            return piece

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        source = self.stream(request, model, context)
        while True:
            try:
                next(source)
            except StopIteration as done:
                raw: RawGeneration = done.value
                return raw

    async def agenerate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        try:
            return await asyncio.to_thread(self.generate, request, model, context)
        except asyncio.CancelledError:
            context.cancel.cancel()
            raise

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        return await self.agenerate(request, model, context)


def _pcm(data: bytes) -> np.ndarray:
    """Interleaved 16-bit little-endian PCM, two channels, as float32 (channels, samples)."""
    usable = len(data) - len(data) % (2 * CHANNELS)
    samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
    return np.ascontiguousarray(samples.reshape(-1, CHANNELS).T)


class _Session:
    """One live session on its own thread and event loop: connect, prompt, configure, play, then pass each audio
    chunk to the stream and apply the listener's changes between messages, until told to stop."""

    def __init__(
        self,
        backend: LyriaRealtimeBackend,
        plan: SessionPlan,
        base_url: str,
        api_key: str,
        model: str,
        pieces: queue.SimpleQueue[bytes | BaseException | None],
        stop: threading.Event,
        context: RunContext,
        wait: float,
    ) -> None:
        self.backend, self.plan, self.base_url, self.api_key, self.model = backend, plan, base_url, api_key, model
        self.pieces, self.stop, self.context, self.wait = pieces, stop, context, wait
        self.config = dict(plan.config)
        self.steered: list[dict[str, Any]] = []

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # handed to the stream, which raises it where the listener reads
            self.pieces.put(_mapped(exc, self.backend.name))

    async def _run(self) -> None:
        from google import genai
        from google.genai import types

        client = genai.Client(
            api_key=self.api_key, http_options=types.HttpOptions(base_url=self.base_url, api_version="v1alpha")
        )
        async with client.aio.live.music.connect(model=f"models/{self.model}") as session:
            await session.set_weighted_prompts([types.WeightedPrompt(**p) for p in self.plan.prompts])
            await session.set_music_generation_config(types.LiveMusicGenerationConfig(**self.config))
            await session.play()
            messages = session.receive().__aiter__()
            while not self.stop.is_set():
                await self._apply(session)
                try:
                    message = await asyncio.wait_for(messages.__anext__(), timeout=0.2)
                except TimeoutError:
                    continue
                except StopAsyncIteration:
                    break
                if message.filtered_prompt is not None:
                    reason = message.filtered_prompt.filtered_reason or "filtered"
                    raise ContentRefusedError(
                        f"Lyria RealTime filtered the prompt {message.filtered_prompt.text!r}: {reason}",
                        provider=self.backend.name,
                        hint="change the flagged prompt; sending it again fails the same way",
                    )
                content = message.server_content
                for chunk in (content.audio_chunks or []) if content is not None else []:
                    if chunk.data:
                        self.pieces.put(chunk.data)
            await session.stop()
        self.pieces.put(None)

    async def _apply(self, session: Any) -> None:
        """Send the listener's checked changes: prompts, then the whole config (the API replaces it), then a context
        reset when the tempo or the scale changed."""
        from google.genai import types

        steering = self.context.steering
        for change in steering.take() if steering is not None else []:
            if "prompts" in change:
                await session.set_weighted_prompts([types.WeightedPrompt(**p) for p in change["prompts"]])
            if "config" in change:
                self.config.update(change["config"])
                await session.set_music_generation_config(types.LiveMusicGenerationConfig(**self.config))
                if RESET_ON & set(change["config"]):
                    await session.reset_context()
            self.steered.append(change)


def _mapped(exc: BaseException, provider: str) -> BaseException:
    """The session's failure as soundforge's error tree: a refused handshake by its HTTP status, a close frame by
    the SDK's `APIError` code, anything else a `ProviderError` naming it."""
    if isinstance(exc, SoundforgeError):
        return exc
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return AuthenticationError(f"Lyria RealTime refused the API key ({status})", provider=provider)
    if status == 429:
        return RateLimitError("Lyria RealTime is rate-limited (429)", provider=provider)
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    if code == 1007:  # "invalid frame payload data": the server refused an argument
        return InvalidRequestError(f"Lyria RealTime refused the session's arguments: {message}", provider=provider)
    return ProviderError(f"Lyria RealTime failed: {type(exc).__name__}: {message}", provider=provider)
