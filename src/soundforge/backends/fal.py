"""`fal`: models on fal's queue API (submit, poll status, fetch result, download, cancel).

Contract (docs/providers/fal.md, from the official `fal-client` 1.0.x source): `POST
https://queue.fal.run/{app_id}` with the model input as JSON and `Authorization: Key <FAL_KEY>`; the
answer holds `request_id`, `status_url`, `response_url`, `cancel_url`. `GET status_url` gives `IN_QUEUE`,
`IN_PROGRESS` or `COMPLETED` (which may still carry an `error`); `GET response_url` gives the output;
`PUT cancel_url` cancels. Status URLs on another host are rebuilt on the configured base, so the key only
goes to fal's API host; output files are fetched through the URL guard without the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..capabilities import Capabilities, ModelInfo
from ..errors import ContentRefusedError, InvalidRequestError, ProviderError, SoundforgeError
from ..request import GenerationRequest
from .base import RawGeneration, RawTrack, RunContext, fit_length
from .cloud import CloudBackend, decode_reply, model_inputs

STABLE_AUDIO = "fal-ai/stable-audio"
AUDIO_KEYS = ("audio_file", "audio", "audio_url", "output")


@dataclass(frozen=True)
class FalApp:
    """One fal app's input schema, as its model page documents it: which request fields it takes, under what name.

    An app that lacks a field gets no such key (fal apps ignore unknown keys silently, so sending one would promise
    what does not happen): a request that sets it is refused before anything is sent.
    """

    description: str
    #: request field -> the app's input name; "duration" is the length field, sent in whole seconds. An app that
    #: takes no duration (a fixed clip) is trimmed to the request, up to `max_duration`.
    inputs: dict[str, str]
    max_duration: float
    sample_rate: int
    min_duration: float = 1.0
    seed_deterministic: bool = True
    #: request field -> (lowest, highest) the app accepts, checked before submitting.
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: The duration field's unit: "s" (whole seconds, rounded up) or "ms" (whole milliseconds).
    duration_unit: str = "s"
    #: Whether the app sings (takes lyrics).
    vocals: bool = False

    def capabilities(self) -> Capabilities:
        return Capabilities(
            min_duration=self.min_duration,
            max_duration=self.max_duration,
            sample_rates=(self.sample_rate,),
            channels=(1, 2),
            fields=frozenset({*self.inputs} - {"prompt", "duration"} | {"extra"}),
            max_outputs=1,
            seed_deterministic=self.seed_deterministic,
            vocals=self.vocals,
            cost_hint="billed per request by fal",
        )


def _elevenlabs_music(description: str, sample_rate: int) -> FalApp:
    """fal's ElevenLabs Music apps: the length in milliseconds (3-600 s), instrumental as `force_instrumental`."""
    return FalApp(
        description,
        {"prompt": "prompt", "duration": "music_length_ms", "instrumental": "force_instrumental"},
        min_duration=3.0,
        max_duration=600.0,
        sample_rate=sample_rate,
        seed_deterministic=False,
        duration_unit="ms",
    )


#: The apps whose schemas soundforge maps (docs/providers/fal.md lists each page and what is UNCONFIRMED).
APPS: dict[str, FalApp] = {
    # fal.ai/models/fal-ai/stable-audio/llms.txt: prompt, seconds_start, seconds_total (0-47), steps (2-1000); no seed.
    STABLE_AUDIO: FalApp(
        "Stable Audio Open on fal",
        {"prompt": "prompt", "duration": "seconds_total", "steps": "steps"},
        max_duration=47.0,
        sample_rate=44100,
        seed_deterministic=False,
        limits={"steps": (2, 1000)},
    ),
    # fal.ai/models/fal-ai/stable-audio-25/text-to-audio/llms.txt: seconds_total 1-190, num_inference_steps 4-8,
    # guidance_scale 1-25, seed, sync_mode.
    "fal-ai/stable-audio-25/text-to-audio": FalApp(
        "Stable Audio 2.5 on fal",
        {
            "prompt": "prompt",
            "duration": "seconds_total",
            "steps": "num_inference_steps",
            "guidance": "guidance_scale",
            "seed": "seed",
        },
        max_duration=190.0,
        sample_rate=44100,
        limits={"steps": (4, 8), "guidance": (1, 25)},
    ),
    # fal.ai/models/fal-ai/elevenlabs/music/llms.txt: prompt, composition_plan, music_length_ms (3000-600000, "used
    # only in conjunction with prompt"), force_instrumental; "$0.8 per output audio minute ... rounded up".
    "fal-ai/elevenlabs/music": _elevenlabs_music("ElevenLabs Music on fal (billed per started minute)", 44100),
    # fal.ai/models/elevenlabs/music/v2/llms.txt: the same inputs (a chunk-based composition plan); "$0.6 per output
    # audio minute ... rounded up". ElevenLabs' own API answers v2 in 48 kHz MP3.
    "elevenlabs/music/v2": _elevenlabs_music("ElevenLabs Music v2 on fal (billed per started minute)", 48000),
    # fal's own client, @fal-ai/client 1.10.1 src/types/endpoints.d.ts `AceStepInput`: ACE-Step (v1) with `tags`
    # (required: the style prompt), `lyrics` (tags such as [verse]; "[inst]" sings none), `duration` (s, default 60;
    # no limit documented), `number_of_steps` (27), `guidance_scale` (15), `seed`; `AceStepOutput.audio`.
    "fal-ai/ace-step": FalApp(
        "ACE-Step (v1) songs on fal: genre tags and lyrics",
        {
            "prompt": "tags",
            "duration": "duration",
            "lyrics": "lyrics",
            "steps": "number_of_steps",
            "guidance": "guidance_scale",
            "seed": "seed",
        },
        max_duration=600.0,
        sample_rate=48000,
        vocals=True,
    ),
    # fal.ai/models/fal-ai/lyria2/api: prompt, negative_prompt, seed; "48kHz WAV audio output, 30 second duration".
    "fal-ai/lyria2": FalApp(
        "Google Lyria 2 on fal (30 s clips)",
        {"prompt": "prompt", "negative_prompt": "negative_prompt", "seed": "seed"},
        max_duration=30.0,
        sample_rate=48000,
    ),
}
#: Any other app: the prompt, and its own inputs through extra={"input": {...}} (its duration field too).
OTHER_APP = FalApp(
    "a fal app soundforge has no schema for",
    {"prompt": "prompt"},
    max_duration=600.0,
    sample_rate=44100,
    seed_deterministic=False,
)


def app_for(model: str) -> FalApp:
    """The schema of a fal app id (`owner/alias[/path]`)."""
    return APPS.get(model, OTHER_APP)


class FalBackend(CloudBackend):
    """fal queue API; `fal:owner/alias[/path]`."""

    keeps_answers = False  # its job id is journaled instead: the job is collected again, never resubmitted

    name = "fal"
    description = "fal queue API (cloud), e.g. fal-ai/stable-audio"
    default_model = STABLE_AUDIO
    key_env = "FAL_KEY"
    default_base_url = "https://queue.fal.run"

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(id=name, description=app.description, capabilities=app.capabilities())
            for name, app in APPS.items()
        ]

    def model_info(self, model: str) -> ModelInfo:
        if model.count("/") < 1:
            raise InvalidRequestError(
                f"fal apps are named owner/alias[/path], not {model!r}", field="provider", provider=self.name
            )
        app = app_for(model)
        return ModelInfo(id=model, description=app.description, capabilities=app.capabilities())

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Key {key}"}

    def map_error(self, status: int, body: Any, request_id: str | None) -> SoundforgeError | None:
        if status == 422 and isinstance(body, dict):
            detail = body.get("detail")
            # fal's model errors (fal.ai/docs/documentation/model-apis/errors): typed objects in `detail`; a content
            # checker's refusal is `content_policy_violation`, not retryable, the same input fails the same way.
            flagged = (
                [d for d in detail if isinstance(d, dict) and d.get("type") == "content_policy_violation"]
                if (isinstance(detail, list))
                else []
            )
            if flagged:
                where = ", ".join(".".join(map(str, d.get("loc", [])[1:])) or "input" for d in flagged)
                categories = sorted({c for d in flagged for c in d.get("categories", []) if isinstance(c, str)})
                return ContentRefusedError(
                    f"fal's content checker refused the {where}"
                    + (f" ({', '.join(categories)})" if categories else "")
                    + f": {flagged[0].get('msg', 'flagged')}",
                    provider=self.name,
                    hint="change the flagged input; sending it again fails the same way",
                )
            text = (
                "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
                if isinstance(detail, list)
                else str(detail)
            )
            return InvalidRequestError(f"fal refused the input: {text}", provider=self.name)
        return None

    def final_answer(self, headers: Any) -> bool:
        # fal's error answers carry `X-Fal-Retryable` (fal.ai/docs/documentation/model-apis/errors).
        return str(headers.get("x-fal-retryable", "")).lower() == "false"

    def _input(self, request: GenerationRequest, model: str) -> dict[str, Any]:
        """The app's input: each request field under the app's own name, then `extra["input"]` as it is."""
        app = app_for(model)
        passthrough, _ = model_inputs(request, self.name)
        data: dict[str, Any] = {}
        for name, key in app.inputs.items():
            value = getattr(request, name)
            if name == "duration":
                value = round(value * 1000) if app.duration_unit == "ms" else math.ceil(value)
            if value is None:
                continue
            low, high = app.limits.get(name, (-math.inf, math.inf))
            if name in app.limits and not low <= value <= high:
                raise InvalidRequestError(
                    f"{model} takes {name} from {low:g} to {high:g}, not {value:g}", field=name, provider=self.name
                )
            data[key] = value
        return {**data, **passthrough}

    def _own(self, url: str | None, fallback: str) -> str:
        """A fal-given API URL if it is on our API host, else the documented path on our base."""
        return url if url and self.http.same_origin(url) else fallback

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        payload = self._input(request, model)
        entry = self.job_entry(request, model)

        async def json_of(method: str, url: str, ctx: RunContext = context, **kwargs: Any) -> dict[str, Any]:
            return await self.http.request_json(method, url, idempotent=True, context=ctx, **kwargs)

        urls = entry.pending.data if entry.pending is not None else None
        if urls is not None:  # submitted by an earlier call for the same request: collect it, never submit again
            try:
                await json_of("GET", urls["status_url"], params={"logs": "0"})
            except ProviderError as exc:
                if exc.status != 404:
                    raise
                entry.forget()  # fal no longer knows it: submit anew
                urls = None
        if urls is None:
            ticket = await self.http.request_json("POST", f"/{model}", idempotent=False, context=context, json=payload)
            job_id = str(ticket.get("request_id", ""))
            if not job_id:
                raise ProviderError("fal answered without a request_id", provider=self.name)
            app = "/".join(model.split("/")[:2])
            base = f"/{app}/requests/{job_id}"
            urls = {
                "request_id": job_id,
                "status_url": self._own(ticket.get("status_url"), f"{base}/status"),
                "response_url": self._own(ticket.get("response_url"), base),
                "cancel_url": self._own(ticket.get("cancel_url"), f"{base}/cancel"),
            }
            entry.record(job_id, urls)
        job_id, status_url, response_url, cancel_url = (
            urls["request_id"],
            urls["status_url"],
            urls["response_url"],
            urls["cancel_url"],
        )

        async def cancel() -> None:
            await json_of("PUT", cancel_url, RunContext())  # fresh context: the caller's may be cancelled

        status = await self.wait_for_job(
            entry,
            lambda: json_of("GET", status_url, params={"logs": "0"}),
            lambda s: s.get("status") == "COMPLETED",
            cancel,
            context,
        )
        # As fal-client does, the result is fetched even when the status carries an error: a model error (a refused
        # or invalid input) comes back from the response URL as a typed 422, which map_error turns into its class.
        try:
            result = await json_of("GET", response_url)
        except (ContentRefusedError, InvalidRequestError):
            entry.forget()  # a final answer about the input: nothing will come of this request
            raise
        except SoundforgeError:
            if not status.get("error"):
                raise
            result = {}
        audio_file = next((result[k] for k in AUDIO_KEYS if k in result), None)
        url = audio_file.get("url") if isinstance(audio_file, dict) else audio_file
        if not isinstance(url, str):
            entry.forget()  # the request ended without a file: the next call submits anew
        if status.get("error") and not isinstance(url, str):
            raise ProviderError(
                f"fal request {job_id} failed: {status.get('error')} ({status.get('error_type', 'no type')})",
                provider=self.name,
                request_id=job_id,
            )
        if not isinstance(url, str):
            raise ProviderError(
                f"fal request {job_id} returned no audio file ({sorted(result)})", provider=self.name, request_id=job_id
            )
        audio, rate = decode_reply(await self.http.download(url, context), self.name)
        entry.forget()  # delivered
        audio = fit_length(audio, round(request.duration * rate))
        parameters = {k: v for k, v in payload.items() if k != "prompt"} | {"request_id": job_id}
        return RawGeneration(
            tracks=[RawTrack(audio=audio, sample_rate=rate, seed=request.seed, parameters=parameters)],
            engine_versions={"api": "queue"},
            device="cloud",
        )
