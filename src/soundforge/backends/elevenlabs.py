"""`elevenlabs`: ElevenLabs Music (Eleven Music): the compose API and stem separation.

Contract (docs/providers/elevenlabs.md, from the official `elevenlabs` Python SDK): `POST /v1/music` with
a JSON body (`prompt` or `composition_plan`, `music_length_ms`, `model_id`, `force_instrumental`),
`output_format` as a query parameter, key in `xi-api-key`, audio bytes streamed back (`POST /v1/music/stream`
takes the same body and streams the audio while it is made: `stream`); `POST
/v1/music/stem-separation` (multipart `file`, `stem_variation_id`) answers a ZIP of stems. Not idempotent:
never re-sent once its outcome is unknown. The licence depends on the plan set in config.
"""

from __future__ import annotations

import contextlib
import io
import queue
import zipfile
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from ..audio import load_audio
from ..capabilities import Capabilities, ModelInfo
from ..errors import (
    ContentRefusedError,
    InvalidRequestError,
    ProviderError,
    SoundforgeError,
    UnsupportedFeatureError,
)
from ..music import Section, lyric_sections
from ..request import GenerationRequest
from .base import (
    AudioChunk,
    ChunkAssembler,
    ChunkStream,
    RawGeneration,
    RawTrack,
    RunContext,
    checked_extra,
    fit_length,
)
from .cloud import CLOUD_SETTINGS, CloudBackend, Mp3Stream, decode_reply, upload_file

MODELS = ("music_v1", "music_v2", "music_v2_5")
#: Stem separation's variations (the SDK's `MusicSeparateStemsRequestStemVariationId`) as models: the stems each
#: can return. The names of the files in the ZIP are UNCONFIRMED, so stems are matched by the words in them.
STEM_MODELS: dict[str, frozenset[str]] = {
    "two_stems_v1": frozenset({"vocals"}),
    "six_stems_v1": frozenset({"vocals", "drums", "bass", "guitar", "keyboard"}),
}
#: Words a stem's file may be named with, per soundforge stem name.
STEM_WORDS = {
    "vocals": ("vocal",),
    "drums": ("drum",),
    "bass": ("bass",),
    "guitar": ("guitar",),
    "keyboard": ("piano", "key"),
}
SEPARATION_EXTRA: dict[str, Any] = {"output_format": str, "sign_with_c2pa": bool}
MIN_MS, MAX_MS = 3000, 600000
EXTRA_KEYS: dict[str, Any] = {
    "output_format": str,
    "composition_plan": dict,
    "respect_sections_durations": bool,
    "finetune_id": str,
    "finetune_strength": float,
    "sign_with_c2pa": bool,
    "store_for_inpainting": bool,
}
#: The API's own default, which every plan may use (mp3_44100_192 needs Creator or above: the SDK's docstrings).
DEFAULT_FORMAT = "mp3_44100_128"
#: Audio gathered before a stream's first chunk (`[providers.elevenlabs] stream_chunk_seconds`); later chunks
#: come as the decode schedule of `_mp3stream` allows.
STREAM_FIRST_SECONDS = 1.0
#: A composition plan's limits (the SDK's `SongSection`): section length, lines per section, characters per line.
SECTION_MS = (3000, 120000)
MAX_LINES, MAX_LINE_CHARS = 30, 200
#: The SDK's `MusicPrompt` is "the composition plan for the music_v1 model. Using this field with any other
#: model will result in an error"; its `CompositionPlan` (a list of chunks) is "for the music_v2 and music_v2_5
#: models" (elevenlabs 2.78 `types/music_prompt.py`, `types/composition_plan.py`). Lyrics travel in either.
PLAN_MODELS = ("music_v1",)
CHUNK_MODELS = ("music_v2", "music_v2_5")


def _caps(model: str) -> Capabilities:
    song = {"lyrics", "bpm", "key", "time_signature"}
    return Capabilities(
        min_duration=MIN_MS / 1000,
        max_duration=MAX_MS / 1000,
        sample_rates=(44100, 48000),
        channels=(1, 2),
        fields=frozenset({"instrumental", "extra", *song}),
        max_outputs=1,
        vocals=True,
        seed_deterministic=False,
        streaming=True,
        cost_hint="paid ElevenLabs plan; credits per minute of music",
    )


def _stem_caps(model: str) -> Capabilities:
    return Capabilities(
        min_duration=1.0,
        max_duration=MAX_MS / 1000,
        sample_rates=(44100, 48000),
        channels=(1, 2),
        fields=frozenset({"audio_prompt", "audio_prompt_mode", "stem", "extra"}),
        audio_prompt_modes=frozenset({"extract"}),
        stems=STEM_MODELS[model],
        max_outputs=1,
        seed_deterministic=False,
        cost_hint="paid ElevenLabs plan; credits per minute separated",
    )


class ElevenLabsBackend(CloudBackend):
    """Eleven Music on api.elevenlabs.io."""

    name = "elevenlabs"
    description = "ElevenLabs Music API (cloud)"
    default_model = "music_v1"
    key_env = "ELEVENLABS_API_KEY"
    default_base_url = "https://api.elevenlabs.io"
    settings_keys = CLOUD_SETTINGS | {"stream_chunk_seconds"}

    def models(self) -> list[ModelInfo]:
        songs = [ModelInfo(id=m, capabilities=_caps(m)) for m in MODELS]
        stems = [
            ModelInfo(id=m, description="stem separation of an audio prompt", capabilities=_stem_caps(m))
            for m in STEM_MODELS
        ]
        return songs + stems

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"xi-api-key": key}

    def map_error(self, status: int, body: Any, request_id: str | None) -> SoundforgeError | None:
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, dict):
            code = str(detail.get("status", ""))
            message = str(detail.get("message", code))
            if code in ("bad_prompt", "bad_composition_plan"):
                raw = detail.get("data")
                data: dict[str, Any] = raw if isinstance(raw, dict) else {}
                suggestion = data.get("prompt_suggestion") or data.get("composition_plan_suggestion")
                return ContentRefusedError(
                    f"ElevenLabs refused the {code.removeprefix('bad_')}: {message}",
                    provider=self.name,
                    hint=f"suggestion: {suggestion}" if suggestion else None,
                )
        if status in (400, 422):
            return InvalidRequestError(
                f"ElevenLabs refused the request ({status}): {_detail_text(detail, body)}", provider=self.name
            )
        return None

    def _compose(self, request: GenerationRequest, model: str) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
        """The compose body, the output format and the composition plan (None: a prompt), for `/v1/music` and
        `/v1/music/stream` alike."""
        extra = checked_extra(request, EXTRA_KEYS, provider=self.name)
        output_format = str(extra.get("output_format", DEFAULT_FORMAT))
        if not output_format.startswith(("mp3_", "opus_")):
            raise InvalidRequestError(
                "extra['output_format'] must be an mp3_* or opus_* format (e.g. mp3_44100_192)",
                field="extra",
                provider=self.name,
            )
        body: dict[str, Any] = {"model_id": model}
        plan = extra.get("composition_plan")
        if request.lyrics is not None:
            if plan is not None:
                raise InvalidRequestError(
                    "give lyrics or extra['composition_plan'], not both: the plan carries its own lines",
                    field="lyrics",
                    provider=self.name,
                )
            if model in PLAN_MODELS:
                plan = composition_plan(request, provider=self.name)
                body["respect_sections_durations"] = True
            else:
                plan = chunk_plan(request, provider=self.name)
        if plan is not None:
            check_plan(plan, model, provider=self.name)
            body["composition_plan"] = plan  # the plan carries its own section lengths; the prompt is recorded
        else:
            body["prompt"] = ", ".join([request.prompt, *_musical_directions(request)])
            body["music_length_ms"] = round(request.duration * 1000)
            if request.instrumental is not None:
                body["force_instrumental"] = request.instrumental
        for key in (
            "respect_sections_durations",
            "finetune_id",
            "finetune_strength",
            "sign_with_c2pa",
            "store_for_inpainting",
        ):
            if key in extra:
                body[key] = extra[key]
        return body, output_format, plan

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        if model in STEM_MODELS:
            return await self._separate(request, model, context)
        body, output_format, plan = self._compose(request, model)
        reply = await self.http.request(
            "POST", "/v1/music", idempotent=False, context=context, params={"output_format": output_format}, json=body
        )
        song_id = reply.headers.get("song-id")  # with store_for_inpainting: the id later edits refer to
        audio, rate = decode_reply(reply, self.name)
        if plan is None or request.lyrics is not None:  # the length asked for is the plan's (or the prompt's)
            audio = fit_length(audio, round(request.duration * rate))
        return _song(audio, rate, body, output_format, plan, song_id)

    def check_stream(self, request: GenerationRequest, model: str) -> None:
        """`POST /v1/music/stream` takes the compose body; its MP3 is decoded as it arrives (opus is not)."""
        super().check_stream(request, model)
        output_format = str(request.extra.get("output_format", DEFAULT_FORMAT))
        if not output_format.startswith("mp3_"):
            raise UnsupportedFeatureError(
                "streaming", f"{self.name}:{model}", detail="streams are decoded from mp3_* output formats only"
            )

    def stream(self, request: GenerationRequest, model: str, context: RunContext) -> ChunkStream:
        """`POST /v1/music/stream`: the MP3 decoded while it downloads (`_mp3stream`), handed on in chunks.

        The call is sent once and never retried (audio already handed on cannot be taken back). Closing the
        generator cancels the download. The answer, once it has arrived whole, is kept on disk until the stream has
        made its generation (`_answers`): a fault after that replays it on the next call for the same request.
        """
        body, output_format, plan = self._compose(request, model)
        answers = self.paid_answers(request, model)
        context = replace(context, answers=answers)
        # The length asked for is the prompt's or the lyrics' plan's; a plan given whole carries its own.
        limit = None if plan is not None and request.lyrics is None else request.duration
        ready: queue.SimpleQueue[AudioChunk | None] = queue.SimpleQueue()
        first = float(self.settings.get("stream_chunk_seconds", STREAM_FIRST_SECONDS))

        async def download() -> str | None:
            try:
                params = {"output_format": output_format}
                async with self.http.stream(
                    "POST", "/v1/music/stream", context=context, params=params, json=body
                ) as reply:
                    decoder = Mp3Stream(first_seconds=first)
                    offset = 0

                    def hand_on(pieces: list[Any]) -> None:
                        nonlocal offset
                        for audio in pieces:
                            if limit is not None:
                                audio = audio[:, : max(0, round(limit * (decoder.sample_rate or 1)) - offset)]
                            if audio.shape[1]:
                                ready.put(AudioChunk(audio, offset, decoder.sample_rate or 0))
                                offset += audio.shape[1]

                    try:
                        async for data in reply.chunks:
                            hand_on(decoder.feed(data))
                        hand_on(decoder.finish())
                    except InvalidRequestError as exc:  # the vendor's bytes, not the caller's request, are wrong
                        raise ProviderError(
                            f"ElevenLabs streamed audio that cannot be decoded: {exc.message}", provider=self.name
                        ) from exc
                    if offset == 0:
                        raise ProviderError("ElevenLabs streamed no audio", provider=self.name)
                    return reply.headers.get("song-id")
            finally:
                ready.put(None)

        running = self.http.submit(download)
        assembler = ChunkAssembler()
        # The paid answer is settled once the download has ended; a listener that left (GeneratorExit) releases a
        # whole answer for the next call.
        with answers if answers is not None else contextlib.nullcontext():
            try:
                rate = 0
                while (chunk := ready.get()) is not None:
                    rate = chunk.sample_rate
                    yield assembler.add(chunk)
                song_id = running.result()
            finally:
                if not running.done():  # the listener left: stop the download, and wait until it has cleaned up
                    running.cancel()
                    _drain_until_ended(ready)
            return _song(assembler.track(0), rate, body, output_format, plan, song_id)

    async def _separate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        """Stem separation: the audio prompt uploaded as MP3, the ZIP answered unpacked into one track per stem.

        The stem asked for comes first; every other stem in the ZIP follows with its own role (all were paid for),
        each cut or padded to the request's duration like every result.
        """
        extra = checked_extra(request, SEPARATION_EXTRA, provider=self.name)
        output_format = str(extra.get("output_format", DEFAULT_FORMAT))
        # pcm_* is headerless 16-bit PCM: its channel layout is nowhere in the answer, so it could not be decoded
        # once paid for; it is refused before sending.
        if not output_format.startswith(("mp3_", "opus_")):
            raise InvalidRequestError(
                "extra['output_format'] for stems must be an mp3_* or opus_* format (pcm_* is headerless audio "
                "soundforge cannot decode)",
                field="extra",
                provider=self.name,
            )
        assert request.audio_prompt is not None and request.stem is not None  # the request pairs them
        audio, rate = request.audio_prompt.load()
        files: dict[str, Any] = {"file": upload_file(audio, rate), "stem_variation_id": (None, model)}
        if "sign_with_c2pa" in extra:
            files["sign_with_c2pa"] = (None, str(extra["sign_with_c2pa"]).lower())
        reply = await self.http.request(
            "POST",
            "/v1/music/stem-separation",
            idempotent=False,
            context=context,
            params={"output_format": output_format},
            files=files,
        )
        try:
            archive = zipfile.ZipFile(io.BytesIO(reply.path.read_bytes()))
            stems = [(PurePosixPath(i.filename).stem, archive.read(i)) for i in archive.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise ProviderError("ElevenLabs' stem separation answered no readable ZIP", provider=self.name) from exc
        finally:
            reply.discard()
        if not stems:
            raise ProviderError("ElevenLabs' stem separation answered an empty ZIP", provider=self.name)
        words = STEM_WORDS[request.stem]
        wanted = next((i for i, (name, _) in enumerate(stems) if any(w in name.lower() for w in words)), None)
        order = ([wanted] if wanted is not None else []) + [i for i in range(len(stems)) if i != wanted]
        tracks = []
        for rank, index in enumerate(order):
            name, data = stems[index]
            try:
                stem_audio, stem_rate = load_audio(data)
            except SoundforgeError as exc:
                raise ProviderError(
                    f"ElevenLabs returned a stem ({name}) that cannot be decoded", provider=self.name
                ) from exc
            role = request.stem if index == wanted else name.lower()
            parameters: dict[str, Any] = {"stem_variation_id": model, "output_format": output_format, "file": name}
            if rank == 0 and wanted is None:
                parameters["requested_stem_found"] = False
            tracks.append(
                RawTrack(
                    audio=fit_length(stem_audio, round(request.duration * stem_rate)),
                    sample_rate=stem_rate,
                    seed=None,
                    parameters=parameters,
                    role=role,
                )
            )
        return RawGeneration(tracks=tracks, engine_versions={"api": "v1"}, device="cloud")


def _song(
    audio: Any, rate: int, body: dict[str, Any], output_format: str, plan: dict[str, Any] | None, song_id: str | None
) -> RawGeneration:
    """A composed song as the client receives it, whichever endpoint made it."""
    parameters = {k: v for k, v in body.items() if k not in ("prompt", "composition_plan")}
    parameters["output_format"] = output_format
    if song_id:
        parameters["song_id"] = song_id
    if plan is not None:
        parameters["composition_plan"] = True
    return RawGeneration(
        tracks=[RawTrack(audio=audio, sample_rate=rate, seed=None, parameters=parameters)],
        engine_versions={"api": "v1"},
        device="cloud",
    )


def check_plan(plan: dict[str, Any], model: str, *, provider: str = "elevenlabs") -> None:
    """A composition plan given in `extra`, checked before it is sent in the shape its model takes: the SDK's
    `MusicPrompt` (global styles and sections) for music_v1, its `CompositionPlan` (chunks) for music_v2/v2_5."""
    if model in CHUNK_MODELS:
        return _check_chunks(plan, model, provider)
    if "chunks" in plan:
        raise InvalidRequestError(
            f"a plan of chunks is for {', '.join(CHUNK_MODELS)} (the SDK's CompositionPlan), not {model}",
            field="extra",
            provider=provider,
            hint="use elevenlabs:music_v2, or give music_v1 a plan of sections",
        )
    missing = [
        key for key in ("positive_global_styles", "negative_global_styles") if not isinstance(plan.get(key), list)
    ]
    sections = plan.get("sections")
    if missing or not isinstance(sections, list) or not sections:
        raise InvalidRequestError(
            "extra['composition_plan'] needs lists 'positive_global_styles', 'negative_global_styles' and 'sections'",
            field="extra",
            provider=provider,
        )
    low, high = SECTION_MS
    for i, section in enumerate(sections):
        keys = ("section_name", "positive_local_styles", "negative_local_styles", "duration_ms", "lines")
        absent = [key for key in keys if not isinstance(section, dict) or key not in section]
        if absent:
            raise InvalidRequestError(
                f"composition plan section {i} lacks {', '.join(absent)}", field="extra", provider=provider
            )
        if not low <= int(section["duration_ms"]) <= high:
            raise InvalidRequestError(
                f"composition plan section {i} lasts {section['duration_ms']} ms; ElevenLabs takes {low}-{high}",
                field="extra",
                provider=provider,
            )


def _check_chunks(plan: dict[str, Any], model: str, provider: str) -> None:
    """The SDK's `CompositionPlan`: `chunks`, each a `GenerationChunkInput` (text of at most 30 lines of at most 200
    characters, 3000-120000 ms, positive styles) or an `AudioRefChunk` (a stored song's id and a time range)."""
    chunks = plan.get("chunks")
    if "sections" in plan or not isinstance(chunks, list) or not chunks:
        raise InvalidRequestError(
            f"a {model} composition plan is {{'chunks': [...]}} (the SDK's CompositionPlan); plans of sections are "
            "for music_v1",
            field="extra",
            provider=provider,
        )
    low, high = SECTION_MS
    for i, chunk in enumerate(chunks):
        if isinstance(chunk, dict) and "song_id" in chunk:
            window = chunk.get("range")
            if not (
                isinstance(window, dict)
                and isinstance(window.get("start_ms"), int)
                and isinstance(window.get("end_ms"), int)
                and window["end_ms"] > window["start_ms"] >= 0
            ):
                raise InvalidRequestError(
                    f"plan chunk {i} refers to a song: it needs range {{start_ms, end_ms}} with end after start",
                    field="extra",
                    provider=provider,
                )
            continue
        absent = [
            k for k in ("text", "duration_ms", "positive_styles") if not isinstance(chunk, dict) or k not in chunk
        ]
        if absent:
            raise InvalidRequestError(f"plan chunk {i} lacks {', '.join(absent)}", field="extra", provider=provider)
        if not isinstance(chunk["duration_ms"], int) or not low <= chunk["duration_ms"] <= high:
            raise InvalidRequestError(
                f"plan chunk {i} lasts {chunk['duration_ms']} ms; ElevenLabs takes {low}-{high}",
                field="extra",
                provider=provider,
            )
        lines = str(chunk["text"]).splitlines()
        if len(lines) > MAX_LINES or any(len(line) > MAX_LINE_CHARS for line in lines):
            raise InvalidRequestError(
                f"plan chunk {i} has {len(lines)} lines; ElevenLabs takes {MAX_LINES} of {MAX_LINE_CHARS} characters",
                field="extra",
                provider=provider,
            )


def _musical_directions(request: GenerationRequest) -> list[str]:
    """Tempo, key and metre as the words a style list takes (the API has no field for them)."""
    words = []
    if request.bpm is not None:
        words.append(f"{request.bpm:g} BPM")
    if request.key is not None:
        words.append(f"in {request.key}")
    if request.time_signature is not None:
        words.append(f"{request.time_signature} time")
    return words


def composition_plan(request: GenerationRequest, *, provider: str = "elevenlabs") -> dict[str, Any]:
    """A `music_v1` composition plan from a lyric sheet: one section per structure tag (`[verse]`, `[chorus]`),
    its lines, and a share of `duration` by its number of lines; the prompt, tempo, key and metre as global styles.

    The plan is checked against the API's limits (3-120 s a section, 30 lines of 200 characters) before it is sent.
    """
    sections, durations = _sheet(request, provider)
    return {
        "positive_global_styles": [request.prompt, *_musical_directions(request)],
        "negative_global_styles": [],
        "sections": [
            {
                "section_name": section.name.title()[:100],
                "positive_local_styles": [],
                "negative_local_styles": [],
                "duration_ms": duration,
                "lines": list(section.lines),
            }
            for section, duration in zip(sections, durations, strict=True)
        ],
    }


def chunk_plan(request: GenerationRequest, *, provider: str = "elevenlabs") -> dict[str, Any]:
    """A `music_v2` composition plan from a lyric sheet: one chunk per structure tag, its text the tag as a header
    ("[Verse]") and the lines, its length a share of `duration` by lines; every chunk carries the prompt, tempo, key
    and metre as positive styles (the SDK: the first chunk's styles set the tone, later ones may add nuance)."""
    sections, durations = _sheet(request, provider)
    styles = [request.prompt, *_musical_directions(request)]
    return {
        "chunks": [
            {
                "text": "\n".join([f"[{section.name.title()[:100]}]", *section.lines]),
                "duration_ms": duration,
                "positive_styles": list(styles),
            }
            for section, duration in zip(sections, durations, strict=True)
        ]
    }


def _sheet(request: GenerationRequest, provider: str) -> tuple[list[Section], list[int]]:
    """The lyric sheet's sections and each one's share of the duration, checked against the plan limits both plan
    shapes share (3-120 s a section or chunk, 30 lines of 200 characters)."""
    assert request.lyrics is not None
    sections = lyric_sections(request.lyrics)
    if not sections:
        raise InvalidRequestError("the lyrics have no lines", field="lyrics", provider=provider)
    total = round(request.duration * 1000)
    low, high = SECTION_MS
    if len(sections) * low > total or len(sections) * high < total:
        raise InvalidRequestError(
            f"{len(sections)} section(s) cannot share {request.duration:g} s: ElevenLabs takes 3-120 s a section",
            field="duration",
            provider=provider,
            hint=f"ask for {len(sections) * low / 1000:g}-{len(sections) * high / 1000:g} s, or merge sections",
        )
    for section in sections:
        long = [line for line in section.lines if len(line) > MAX_LINE_CHARS]
        if len(section.lines) > MAX_LINES or long:
            raise InvalidRequestError(
                f"section [{section.name}] has {len(section.lines)} lines"
                + (f" and one of {len(long[0])} characters" if long else "")
                + f"; ElevenLabs takes {MAX_LINES} lines of {MAX_LINE_CHARS} characters a section",
                field="lyrics",
                provider=provider,
            )
    return sections, _shares(total, [max(1, len(section.lines)) for section in sections], low, high)


def _shares(total: int, weights: list[int], low: int, high: int) -> list[int]:
    """Split `total` milliseconds by `weights`, each share within [low, high], summing to `total` exactly."""
    shares = [low] * len(weights)
    left = total - low * len(weights)
    while left > 0:
        open_ = [i for i, share in enumerate(shares) if share < high]
        weight = sum(weights[i] for i in open_)
        given = 0
        for i in open_:
            extra = min(high - shares[i], left * weights[i] // weight)
            shares[i] += extra
            given += extra
        if given == 0:  # what rounding left over: a millisecond at a time, to the first that has room
            shares[open_[0]] += 1
            given = 1
        left -= given
    return shares


def _detail_text(detail: Any, body: Any) -> str:
    """An error body's `detail` in words: a string as it is, a validation list as `field: message; ...` (the
    FastAPI shape ElevenLabs answers 422 with), an object by its message; never the raw dict."""
    if isinstance(detail, str):
        return detail[:300]
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc") or [] if p not in ("body", "query"))
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
        return "; ".join(parts)[:300] or "no reason given"
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("status") or "no reason given")[:300]
    return "no reason given" if body in (None, "", {}) else str(body)[:120]


def _drain_until_ended(ready: queue.SimpleQueue[AudioChunk | None], timeout: float = 10.0) -> None:
    """Wait for a cancelled download's last act (it puts None once its clean-up, the stream's temp copy included, has
    run), dropping the chunks still queued; a download cancelled before it started puts nothing: `timeout` ends it."""
    while True:
        try:
            if ready.get(timeout=timeout) is None:
                return
        except queue.Empty:
            return
