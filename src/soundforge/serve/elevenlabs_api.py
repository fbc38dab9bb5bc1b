"""An ElevenLabs-compatible surface on `soundforge serve`: `POST /v1/music`, `POST /v1/music/stream` and
`POST /v1/sound-generation`, in the shapes ElevenLabs documents (elevenlabs 2.78's `music/raw_client.py` and
`text_to_sound_effects/raw_client.py`, docs/serve.md), so code written against the ElevenLabs SDK runs on the models
this server has by changing only its base URL.

This is a door: it translates the ElevenLabs body into a `GenerationRequest`, submits it as a job (the job manager
applies the licence policy, budgets, limits and the token's rate, as for `/v1/generations`), waits for it and answers
the audio. It holds no rule of its own. Which provider makes music and which makes sound effects is the operator's
choice (`[serve.elevenlabs]`). Licence and provenance come in `X-Soundforge-*` response headers and in the file's tags;
the whole record stays at `/v1/generations/{id}` (`X-Soundforge-Job`).

Errors answer in ElevenLabs' shapes: 422 `{"detail": [{"loc", "msg", "type"}]}` (the SDK's
`UnprocessableEntityError`), others `{"detail": {"status", "message"}}` (its `ApiError`), the status the typed error
carries (403 for the licence policy, 402 for a budget, 429 for a full queue).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import iterate_in_threadpool

from ..audio import load_audio, resample
from ..errors import InvalidRequestError, SoundforgeError
from ..request import GenerationRequest, explain_validation_error
from .jobs import JobManager
from .settings import ServeSettings
from .store import ACTIVE

#: What ElevenLabs' API answers when `output_format` is absent or "auto" (for v1 models: mp3 at 44.1 kHz).
DEFAULT_FORMAT = "mp3_44100_128"
#: `output_format` names this server answers: `mp3_RATE[_KBPS]`, `wav_RATE`, `pcm_RATE` (16-bit little-endian).
_FORMAT = re.compile(r"^(mp3|wav|pcm)_(\d{4,6})(?:_(\d{2,3}))?$")
#: A song's length when neither `music_length_ms` nor a composition plan gives one (ElevenLabs lets its model pick).
DEFAULT_SONG_SECONDS = 30.0
#: A sound effect's length when `duration_seconds` is absent or null (ElevenLabs picks one from the prompt).
DEFAULT_EFFECT_SECONDS = 5.0


class ComposeBody(BaseModel):
    """`POST /v1/music` and `/v1/music/stream`: the fields of elevenlabs 2.78's `compose()` and `stream()`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    composition_plan: dict[str, Any] | None = None
    music_length_ms: int | None = Field(None, ge=3000, le=600000)
    model_id: str | None = None
    seed: int | None = Field(None, ge=0)
    force_instrumental: bool | None = None
    finetune_id: str | None = None
    respect_sections_durations: bool | None = None
    store_for_inpainting: bool | None = None
    sign_with_c2pa: bool | None = None


class SoundEffectBody(BaseModel):
    """`POST /v1/sound-generation`: the fields of elevenlabs 2.78's `text_to_sound_effects.convert()`."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    duration_seconds: float | None = Field(None, ge=0.5, le=30)
    loop: bool | None = None
    prompt_influence: float | None = Field(None, ge=0, le=1)
    model_id: str | None = None


class CompatError(Exception):
    """A refusal in ElevenLabs' shape, raised while translating a body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body

    @classmethod
    def invalid(cls, loc: list[str], message: str) -> CompatError:
        return cls(422, {"detail": [{"loc": loc, "msg": message, "type": "value_error"}]})


def song_request(body: ComposeBody) -> GenerationRequest:
    """The request an ElevenLabs compose body asks for: a prompt (with `music_length_ms`, `seed`,
    `force_instrumental`), or a composition plan (its styles as the prompt, its sections' lines as lyrics under
    `[section]` headers, its sections' durations as the length)."""
    if (body.prompt is None) == (body.composition_plan is None):
        raise CompatError.invalid(["body"], "give prompt or composition_plan, not both")
    for name, why in (
        ("finetune_id", "finetunes live on ElevenLabs; this server takes style adapters at /v1/generations"),
        ("store_for_inpainting", "this server stores no songs for inpainting"),
        ("sign_with_c2pa", "this server signs with C2PA when its operator configures [c2pa], not per request"),
    ):
        if getattr(body, name):
            raise CompatError.invalid(["body", name], f"not offered by this server: {why}")
    fields: dict[str, Any] = {}
    if body.seed is not None:
        fields["seed"] = body.seed
    if body.prompt is not None:
        fields |= {"prompt": body.prompt, "duration": (body.music_length_ms or DEFAULT_SONG_SECONDS * 1000) / 1000}
        if body.force_instrumental:
            fields["instrumental"] = True
    else:
        assert body.composition_plan is not None
        if body.music_length_ms is not None:
            raise CompatError.invalid(["body", "music_length_ms"], "used only with prompt: a plan's sections give it")
        fields |= plan_fields(body.composition_plan)
    return _request(fields)


def plan_fields(plan: dict[str, Any]) -> dict[str, Any]:
    """A composition plan as request fields: `music_v1`'s `MusicPrompt` (global styles, sections with lines) or
    `music_v2`'s `CompositionPlan` (chunks whose text carries its `[Verse 1]` headers)."""
    positive: list[str] = list(plan.get("positive_global_styles") or [])
    negative: list[str] = list(plan.get("negative_global_styles") or [])
    verses: list[str] = []
    milliseconds = 0
    parts = plan.get("sections") if "sections" in plan else plan.get("chunks")
    if not isinstance(parts, list) or not parts:
        raise CompatError.invalid(["body", "composition_plan"], "a plan needs sections (or chunks), at least one")
    for index, part in enumerate(parts):
        where = ["body", "composition_plan", "sections" if "sections" in plan else "chunks", str(index)]
        if not isinstance(part, dict) or not isinstance(part.get("duration_ms"), int):
            raise CompatError.invalid([*where, "duration_ms"], "each part needs duration_ms (3000 to 120000)")
        if not 3000 <= part["duration_ms"] <= 120000:
            raise CompatError.invalid([*where, "duration_ms"], "must be between 3000 and 120000")
        milliseconds += part["duration_ms"]
        positive += part.get("positive_local_styles") or part.get("positive_styles") or []
        negative += part.get("negative_local_styles") or part.get("negative_styles") or []
        if "lines" in part:
            lines = [str(line) for line in part.get("lines") or []]
            if lines:
                verses.append("\n".join([f"[{part.get('section_name') or f'Section {index + 1}'}]", *lines]))
        elif part.get("text"):
            verses.append(str(part["text"]))
    if not positive:
        raise CompatError.invalid(["body", "composition_plan"], "a plan needs at least one positive style")
    fields: dict[str, Any] = {"prompt": ", ".join(dict.fromkeys(positive)), "duration": milliseconds / 1000}
    if negative:
        fields["negative_prompt"] = ", ".join(dict.fromkeys(negative))
    if verses:
        fields["lyrics"] = "\n\n".join(verses)
    return fields


def effect_request(body: SoundEffectBody) -> tuple[GenerationRequest, list[str]]:
    """The request an ElevenLabs sound-effect body asks for, and the fields it names that no provider here takes
    (`prompt_influence`: said in a response header, never dropped silently)."""
    fields: dict[str, Any] = {"prompt": body.text, "duration": body.duration_seconds or DEFAULT_EFFECT_SECONDS}
    if body.loop:
        fields["loop"] = True
    unused = ["prompt_influence"] if body.prompt_influence is not None else []
    return _request(fields), unused


def _request(fields: dict[str, Any]) -> GenerationRequest:
    try:
        return GenerationRequest.model_validate(fields)
    except InvalidRequestError as exc:
        raise CompatError(422, {"detail": [_detail(field, text) for field, text in exc.details]}) from None


def _detail(field: str | None, message: str) -> dict[str, Any]:
    return {"loc": ["body", *(field.split(".") if field else [])], "msg": message, "type": "value_error"}


def output_format(value: str | None) -> tuple[str, int]:
    """The container and sample rate an `output_format` asks for (`"auto"` and absent: ElevenLabs' default)."""
    name = DEFAULT_FORMAT if value in (None, "", "auto") else value
    match = _FORMAT.match(name)
    if match is None or not 8000 <= int(match.group(2)) <= 48000:
        raise CompatError.invalid(
            ["query", "output_format"],
            "this server answers mp3_RATE_KBPS, wav_RATE or pcm_RATE (RATE 8000 to 48000); opus, ulaw and alaw "
            "are not offered",
        )
    return match.group(1), int(match.group(2))


def error_body(error: SoundforgeError) -> tuple[int, dict[str, Any]]:
    """A typed error in ElevenLabs' shape, with the status it carries."""
    if isinstance(error, InvalidRequestError) and error.http_status == 422:
        return 422, {"detail": [_detail(field or error.field, text) for field, text in error.details]}
    detail: dict[str, Any] = {"status": error.code, "message": str(error)}
    return error.http_status, {"detail": detail}


def job_error(record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A failed or cancelled job's error in ElevenLabs' shape, with the status of its typed error's class."""
    error = record.get("error") or {}
    code = str(error.get("code") or f"job_{record.get('status', 'failed')}")
    status = _STATUS_BY_CODE.get(code, 502)
    return status, {"detail": {"status": code, "message": str(error.get("message") or "the job did not finish")}}


def _status_by_code() -> dict[str, int]:
    found: dict[str, int] = {}
    classes: list[type[SoundforgeError]] = [SoundforgeError]
    while classes:
        cls = classes.pop()
        found.setdefault(cls.code, cls.http_status)
        classes.extend(cls.__subclasses__())
    return found


_STATUS_BY_CODE = _status_by_code()


def register(app: FastAPI, jobs: JobManager, settings: ServeSettings, admit: Any) -> None:
    """Add the ElevenLabs-compatible routes to `app`. `admit(request)` is the server's per-token admission (its
    rate limit and budget): it returns a refusal response, or None and the token's budget and name."""
    music_provider = settings.config.elevenlabs.music
    effects_provider = settings.config.elevenlabs.sound_effects

    async def run(request: Request, made: GenerationRequest, provider: str | None) -> tuple[str, dict[str, Any]]:
        refused, budget, name = admit(request)
        if refused is not None:
            raise CompatError(
                refused.status_code, {"detail": {"status": "rate_limited", "message": "too many requests"}}
            )
        job_id = await jobs.submit(made, provider, budget=budget, token=name or None)
        if job_id is None:
            raise CompatError(
                429, {"detail": {"status": "queue_full", "message": "too many jobs waiting; retry later"}}
            )
        record = jobs.record(job_id) or {"status": "queued"}
        while record.get("status") in ACTIVE:
            record = await jobs.wait(job_id, record, 60)
        if record.get("status") != "succeeded":
            raise CompatError(*job_error(record))
        return job_id, record

    async def answer(
        job_id: str,
        record: dict[str, Any],
        wanted: tuple[str, int],
        *,
        stream: bool,
        unused: Sequence[str] = (),
    ) -> Response:
        container, rate = wanted
        headers = record_headers(job_id, record, unused)
        if container == "pcm":
            wav = await jobs.audio(job_id, record, "wav")
            data = await pcm_bytes(wav, rate)
            headers["X-Soundforge-Output-Format"] = f"pcm_{rate}"
            return Response(data, media_type="audio/pcm", headers=headers)
        file = await jobs.download(job_id, record, container)
        made_rate = int((record.get("provenance") or {}).get("sample_rate") or 0)
        headers["X-Soundforge-Output-Format"] = f"{container}_{made_rate}"
        media = "audio/mpeg" if container == "mp3" else "audio/wav"
        chunks = iterate_in_threadpool(jobs.store.chunks(job_id, file))
        if not stream:
            headers["Content-Length"] = str(await jobs.on_side(jobs.store.size, job_id, file))
        return StreamingResponse(chunks, media_type=media, headers=headers)

    async def compose(request: Request, stream: bool) -> Response:
        body = ComposeBody.model_validate(await _json(request))
        # A format this server cannot answer is refused before the work.
        wanted = output_format(request.query_params.get("output_format"))
        job_id, record = await run(request, song_request(body), music_provider)
        return await answer(job_id, record, wanted, stream=stream)

    @app.post("/v1/music", response_class=Response, tags=["ElevenLabs-compatible"])
    async def music(request: Request) -> Response:
        """ElevenLabs' compose: a song from a prompt or a composition plan, answered as audio."""
        return await in_elevenlabs_shape(compose(request, stream=False))

    @app.post("/v1/music/stream", response_class=Response, tags=["ElevenLabs-compatible"])
    async def music_stream(request: Request) -> Response:
        """ElevenLabs' compose, answered as a chunked audio stream."""
        return await in_elevenlabs_shape(compose(request, stream=True))

    @app.post("/v1/sound-generation", response_class=Response, tags=["ElevenLabs-compatible"])
    async def sound_generation(request: Request) -> Response:
        """ElevenLabs' sound effects: a sound from text, answered as audio."""
        return await in_elevenlabs_shape(sound_effect(request))

    async def sound_effect(request: Request) -> Response:
        body = SoundEffectBody.model_validate(await _json(request))
        wanted = output_format(request.query_params.get("output_format"))
        made, unused = effect_request(body)
        job_id, record = await run(request, made, effects_provider)
        return await answer(job_id, record, wanted, stream=False, unused=unused)


async def in_elevenlabs_shape(work: Awaitable[Response]) -> Response:
    """A route's answer, or its refusal in ElevenLabs' error shape (whatever raised it: the translation, pydantic,
    or the typed error of the job's admission)."""
    try:
        return await work
    except CompatError as exc:
        return JSONResponse(exc.body, status_code=exc.status)
    except ValidationError as exc:
        return JSONResponse({"detail": _validation(exc)}, status_code=422)
    except SoundforgeError as exc:
        status, payload = error_body(exc)
        return JSONResponse(payload, status_code=status)


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise CompatError.invalid(["body"], "the body is not valid JSON") from None


def _validation(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as ElevenLabs' 422 details (FastAPI's shape), the caller's input never echoed."""
    return [
        {
            "loc": ["body", *(str(p) for p in error["loc"])],
            "msg": explain_validation_error(error),
            "type": error["type"],
        }
        for error in exc.errors(include_input=False)
    ]


async def pcm_bytes(wav: bytes, rate: int) -> bytes:
    """A stored WAV as ElevenLabs' `pcm_RATE`: 16-bit little-endian samples at `rate`, channels interleaved."""

    def convert() -> bytes:
        samples, made = load_audio(wav)
        audio = resample(samples, made, rate) if made != rate else samples
        return (np.clip(audio.T, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()

    return await asyncio.to_thread(convert)


def record_headers(job_id: str, record: dict[str, Any], unused: Sequence[str] = ()) -> dict[str, str]:
    """The result's licence and provenance in response headers (the file's tags say the same)."""
    license = record.get("license") or {}
    provenance = record.get("provenance") or {}
    headers = {
        "X-Soundforge-Job": job_id,
        "X-Soundforge-License": str(license.get("id", "")),
        "X-Soundforge-Commercial-Use": str(license.get("commercial_use", "")),
        "X-Soundforge-Provider": str(provenance.get("provider", "")),
        "X-Soundforge-Model": str(provenance.get("model", "")),
    }
    if license.get("attribution_required") and license.get("attribution"):
        headers["X-Soundforge-Attribution"] = _header_text(str(license["attribution"]))
    if provenance.get("seed") is not None:
        headers["X-Soundforge-Seed"] = str(provenance["seed"])
    if unused:
        headers["X-Soundforge-Not-Applied"] = ", ".join(unused)
    return headers


def _header_text(text: str) -> str:
    """A header value: Latin-1 only, one line (HTTP headers carry no other text)."""
    return " ".join(text.encode("latin-1", "replace").decode("latin-1").split())
