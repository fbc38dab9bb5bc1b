"""`replicate`: models hosted on Replicate, run as predictions (create, poll, download, cancel).

Contract (docs/providers/replicate.md, from the official `replicate` Python client and Replicate's HTTP API docs):
`POST /v1/predictions {"version": id}` for a model with versions (a pinned `owner/name:version`, or the latest
version from `GET /v1/models/{owner}/{name}`, cached), `POST /v1/models/{owner}/{name}/predictions` for an official
model that publishes none; `Authorization: Bearer`, optional `Prefer: wait=N`; `GET /v1/predictions/{id}` until a
final status; `POST /v1/predictions/{id}/cancel`. The output is a file URL, fetched through the output-URL guard
without the API key. The licence is the hosted model's (meta/musicgen: CC-BY-NC-4.0 weights).
"""

from __future__ import annotations

import base64
import math
import re
import time
from typing import TYPE_CHECKING, Any

from ..audio import encode, format_for, resample, to_channels
from ..capabilities import Capabilities, ModelInfo
from ..errors import (
    ContentRefusedError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
    SoundforgeError,
)
from ..request import GenerationRequest
from .base import RawGeneration, RawTrack, RunContext, fit_length
from .cloud import CLOUD_SETTINGS, CloudBackend, JobEntry, decode_reply, model_inputs

if TYPE_CHECKING:
    from .runtime import ModelMemory

#: Final statuses (Replicate's prediction lifecycle docs): "aborted" is a prediction that passed its deadline before
#: it started (replicate-python added it to its terminal statuses in PR #460).
TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
MUSICGEN = "meta/musicgen"
#: How a failed prediction's `error` (a plain string: Replicate has no structured code for it) reads when a safety
#: checker refused the input or output: "E005 ... flagged as sensitive", "NSFW content detected" (the wording users
#: of Replicate report, e.g. pollinations/pollinations#10801, HeyPuter/puter#3719; not in Replicate's own docs).
REFUSAL = re.compile(r"\bE005\b|flagged as sensitive|\bnsfw\b|content polic|safety (filter|check)", re.IGNORECASE)
#: meta/musicgen's inputs soundforge's request does not cover, by type (others go in extra={"input": {...}}).
MUSICGEN_EXTRA: dict[str, Any] = {
    "model_version": str,
    "normalization_strategy": str,
    "continuation_start": (int, float),
    "continuation_end": (int, float),
}
_MUSICGEN_FIELDS = frozenset(
    {"seed", "temperature", "top_k", "top_p", "guidance", "melody", "audio_prompt", "audio_prompt_mode", "extra"}
)


def _caps(model: str) -> Capabilities:
    if model.split(":")[0] == MUSICGEN:
        return Capabilities(
            min_duration=1.0,
            max_duration=30.0,
            sample_rates=(32000,),
            channels=(1, 2),
            fields=_MUSICGEN_FIELDS,
            audio_prompt_modes=frozenset({"continuation"}),
            max_outputs=1,
            seed_deterministic=True,
            cost_hint="billed per second of GPU time",
        )
    return Capabilities(
        max_duration=600.0,
        sample_rates=(16000, 22050, 24000, 32000, 44100, 48000),
        channels=(1, 2),
        fields=frozenset({"seed", "extra"}),
        max_outputs=1,
        seed_deterministic=False,
        cost_hint="billed per second of GPU time",
    )


def _data_uri(audio_input: Any) -> str:
    audio, rate = audio_input.load()
    wav = encode(to_channels(resample(audio, rate, 32000), 1), 32000, format_for(None, "wav"))
    return "data:audio/wav;base64," + base64.b64encode(wav).decode("ascii")


class ReplicateBackend(CloudBackend):
    """Replicate predictions; `replicate:owner/name` or `replicate:owner/name:version`."""

    keeps_answers = False  # its job id is journaled instead: the job is collected again, never resubmitted

    settings_keys = CLOUD_SETTINGS | {"prefer_wait", "version_cache_seconds"}

    name = "replicate"
    description = "Replicate predictions (cloud), e.g. meta/musicgen"
    default_model = MUSICGEN
    key_env = "REPLICATE_API_TOKEN"
    default_base_url = "https://api.replicate.com"

    def __init__(self, settings: dict[str, Any] | None = None, *, memory: ModelMemory | None = None) -> None:
        super().__init__(settings, memory=memory)
        # owner/name -> (latest version id, or None for an official model without versions; when it was looked up).
        # Concurrent first requests may each look it up: the answer is the same, so no lock.
        self._versions: dict[str, tuple[str | None, float]] = {}

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=MUSICGEN, description="MusicGen on Replicate", capabilities=_caps(MUSICGEN))]

    def model_info(self, model: str) -> ModelInfo:
        if "/" not in model.split(":")[0]:
            raise InvalidRequestError(
                f"replicate models are named owner/name[:version], not {model!r}", field="provider", provider=self.name
            )
        return ModelInfo(id=model, capabilities=_caps(model))

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def map_error(self, status: int, body: Any, request_id: str | None) -> SoundforgeError | None:
        if status in (400, 422) and isinstance(body, dict):  # RFC 7807 problem details
            title, detail = body.get("title"), body.get("detail") or body
            label = f"{status}, {title}" if title and title != detail else str(status)
            return InvalidRequestError(f"Replicate refused the input ({label}): {detail}", provider=self.name)
        if status == 404:
            return ProviderError(
                f"Replicate has no such model or prediction: {body}",
                provider=self.name,
                status=404,
                request_id=request_id,
            )
        return None

    async def _route(self, name: str, version: str, context: RunContext) -> tuple[str, dict[str, Any]]:
        """Where to create the prediction: by version (pinned, or the model's latest), else the official route.

        Replicate accepts `/v1/models/{owner}/{name}/predictions` only for official models; a community model
        (meta/musicgen among them) answers it 422 "Invalid version or not permitted". So an unpinned model is looked
        up once (`GET /v1/models/{owner}/{name}`, cached for `version_cache_seconds`, default 3600) and run by its
        `latest_version.id`; a model that publishes no version is an official one and takes the models route.
        """
        if version:
            return "/v1/predictions", {"version": version}
        ttl = float(self.settings.get("version_cache_seconds", 3600))
        cached = self._versions.get(name)
        if cached is None or time.monotonic() - cached[1] > ttl:
            model = await self.http.request_json("GET", f"/v1/models/{name}", idempotent=True, context=context)
            latest = model.get("latest_version")
            latest_id = latest.get("id") if isinstance(latest, dict) else None
            cached = self._versions[name] = (str(latest_id) if latest_id else None, time.monotonic())
        if cached[0] is None:
            return f"/v1/models/{name}/predictions", {}
        return "/v1/predictions", {"version": cached[0]}

    async def _resume(self, entry: JobEntry, context: RunContext) -> dict[str, Any] | None:
        """The prediction already submitted for this request (from the job journal), or None to submit one.

        A journaled prediction Replicate no longer knows (404) is forgotten, and a new one is submitted.
        """
        if entry.pending is None:
            return None
        try:
            return await self.http.request_json(
                "GET", f"/v1/predictions/{entry.pending.job_id}", idempotent=True, context=context
            )
        except ProviderError as exc:
            if exc.status != 404:
                raise
            entry.forget()
            return None

    def _input(self, request: GenerationRequest, model: str) -> dict[str, Any]:
        musicgen = model.split(":")[0] == MUSICGEN
        passthrough, extra = model_inputs(request, self.name, MUSICGEN_EXTRA if musicgen else None)
        data: dict[str, Any] = {"prompt": request.prompt}
        if musicgen:
            data |= {"duration": math.ceil(request.duration), "output_format": "wav", **extra}
            for field, key in (("temperature", "temperature"), ("top_k", "top_k"), ("top_p", "top_p")):
                if getattr(request, field) is not None:
                    data[key] = getattr(request, field)
            if request.guidance is not None:
                data["classifier_free_guidance"] = round(request.guidance)
            if request.melody is not None:
                data["input_audio"] = _data_uri(request.melody)
            if request.audio_prompt is not None:
                data["input_audio"] = _data_uri(request.audio_prompt)
                data["continuation"] = True
        else:
            data["duration"] = request.duration
        if request.seed is not None:
            data["seed"] = request.seed
        return {**data, **passthrough}

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        name, _, version = model.partition(":")
        inputs = self._input(request, model)  # checked before any request
        entry = self.job_entry(request, model)
        prediction = await self._resume(entry, context)
        payload: dict[str, Any] = {"input": inputs}
        if prediction is None:
            path, route = await self._route(name, version, context)
            payload |= route
            wait = int(self.settings.get("prefer_wait", 5))
            headers = {"Prefer": f"wait={wait}"} if wait > 0 else {}
            prediction = await self.http.request_json(
                "POST", path, idempotent=False, context=context, headers=headers, json=payload
            )
            if not prediction.get("id"):
                raise ProviderError("Replicate answered without a prediction id", provider=self.name)
            entry.record(str(prediction["id"]))
        job_id = str(prediction["id"])

        async def fetch() -> dict[str, Any]:
            return await self.http.request_json("GET", f"/v1/predictions/{job_id}", idempotent=True, context=context)

        async def cancel() -> None:
            # A fresh context: the caller's may already be cancelled, and this call must still go out.
            await self.http.request_json(
                "POST", f"/v1/predictions/{job_id}/cancel", idempotent=True, context=RunContext()
            )

        if prediction.get("status") not in TERMINAL:
            prediction = await self.wait_for_job(entry, fetch, lambda p: p.get("status") in TERMINAL, cancel, context)
        if prediction.get("status") != "succeeded":
            entry.forget()  # it ended without a result: the next call submits anew
        status = prediction.get("status")
        if status == "aborted":
            raise GenerationTimeoutError(
                f"Replicate aborted prediction {job_id}: it passed its deadline before it could start",
                provider=self.name,
                hint="try again later, or give the prediction a longer deadline",
            )
        if status == "failed" and REFUSAL.search(str(prediction.get("error") or "")):
            raise ContentRefusedError(
                f"Replicate's safety check refused prediction {job_id}: {prediction.get('error')}",
                provider=self.name,
                hint="change the prompt or the input audio; sending the same input again fails the same way",
            )
        if status != "succeeded":
            raise ProviderError(
                f"Replicate prediction {job_id} {status}: {prediction.get('error') or 'no details'}",
                provider=self.name,
                request_id=job_id,
            )
        output = prediction.get("output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise ProviderError(
                f"Replicate prediction {job_id} has no output file", provider=self.name, request_id=job_id
            )
        audio, rate = decode_reply(await self.http.download(url, context), self.name)
        entry.forget()  # delivered: a call for the same request from now on is a new generation
        audio = fit_length(audio, round(request.duration * rate))
        parameters = {k: v for k, v in payload["input"].items() if k not in ("prompt", "input_audio")}
        resolved = prediction.get("version") or payload.get("version") or None
        parameters |= {"prediction_id": job_id, "version": resolved}
        # Replicate bills the seconds the model ran and reports them (prediction `metrics.predict_time`).
        metrics: dict[str, Any] = prediction["metrics"] if isinstance(prediction.get("metrics"), dict) else {}
        seconds = metrics.get("predict_time")
        usage = {"gpu_seconds": float(seconds)} if isinstance(seconds, (int, float)) and seconds >= 0 else {}
        return RawGeneration(
            usage=usage,
            tracks=[RawTrack(audio=audio, sample_rate=rate, seed=request.seed, parameters=parameters)],
            model_revision=resolved,
            engine_versions={"api": "v1"},
            device="cloud",
        )
