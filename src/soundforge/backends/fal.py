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
from typing import Any

from ..capabilities import Capabilities, ModelInfo
from ..errors import InvalidRequestError, ProviderError, SoundforgeError
from ..request import GenerationRequest
from ._cloud import CloudBackend, decode_reply, model_inputs, poll_job
from .base import RawGeneration, RawTrack, RunContext

STABLE_AUDIO = "fal-ai/stable-audio"
AUDIO_KEYS = ("audio_file", "audio", "audio_url", "output")


def _caps(model: str) -> Capabilities:
    fields = {"seed", "steps", "extra"} if model == STABLE_AUDIO else {"seed", "extra", "negative_prompt"}
    return Capabilities(
        min_duration=1.0,
        max_duration=47.0 if model == STABLE_AUDIO else 600.0,
        sample_rates=(44100, 48000),
        channels=(1, 2),
        fields=frozenset(fields),
        max_outputs=1,
        seed_deterministic=model == STABLE_AUDIO,
        cost_hint="billed per request by fal",
    )


class FalBackend(CloudBackend):
    """fal queue API; `fal:owner/alias[/path]`."""

    name = "fal"
    description = "fal queue API (cloud), e.g. fal-ai/stable-audio"
    default_model = STABLE_AUDIO
    key_env = "FAL_KEY"
    default_base_url = "https://queue.fal.run"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=STABLE_AUDIO, description="Stable Audio Open on fal", capabilities=_caps(STABLE_AUDIO))]

    def model_info(self, model: str) -> ModelInfo:
        if model.count("/") < 1:
            raise InvalidRequestError(
                f"fal apps are named owner/alias[/path], not {model!r}", field="provider", provider=self.name
            )
        return ModelInfo(id=model, capabilities=_caps(model))

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Key {key}"}

    def map_error(self, status: int, body: Any, request_id: str | None) -> SoundforgeError | None:
        if status == 422 and isinstance(body, dict):
            detail = body.get("detail")
            text = (
                "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
                if isinstance(detail, list)
                else str(detail)
            )
            return InvalidRequestError(f"fal refused the input: {text}", provider=self.name)
        return None

    def _input(self, request: GenerationRequest, model: str) -> dict[str, Any]:
        passthrough, _ = model_inputs(request, self.name)
        data: dict[str, Any] = {"prompt": request.prompt}
        if model == STABLE_AUDIO:
            data["seconds_total"] = math.ceil(request.duration)
            if request.steps is not None:
                data["steps"] = request.steps
        else:
            data["duration"] = request.duration
            if request.negative_prompt is not None:
                data["negative_prompt"] = request.negative_prompt
        if request.seed is not None:
            data["seed"] = request.seed
        return {**data, **passthrough}

    def _own(self, url: str | None, fallback: str) -> str:
        """A fal-given API URL if it is on our API host, else the documented path on our base."""
        return url if url and self.http.same_origin(url) else fallback

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        payload = self._input(request, model)
        ticket = await self.http.request_json("POST", f"/{model}", idempotent=False, context=context, json=payload)
        job_id = str(ticket.get("request_id", ""))
        if not job_id:
            raise ProviderError("fal answered without a request_id", provider=self.name)
        app = "/".join(model.split("/")[:2])
        base = f"/{app}/requests/{job_id}"
        status_url = self._own(ticket.get("status_url"), f"{base}/status")
        response_url = self._own(ticket.get("response_url"), base)
        cancel_url = self._own(ticket.get("cancel_url"), f"{base}/cancel")

        async def json_of(method: str, url: str, ctx: RunContext = context, **kwargs: Any) -> dict[str, Any]:
            return await self.http.request_json(method, url, idempotent=True, context=ctx, **kwargs)

        async def cancel() -> None:
            await json_of("PUT", cancel_url, RunContext())  # fresh context: the caller's may be cancelled

        status = await poll_job(
            lambda: json_of("GET", status_url, params={"logs": "0"}),
            lambda s: s.get("status") == "COMPLETED",
            context=context,
            settings=self.settings,
            cancel=cancel,
            provider=self.name,
        )
        if status.get("error"):
            raise ProviderError(
                f"fal request {job_id} failed: {status.get('error')} ({status.get('error_type', 'no type')})",
                provider=self.name,
                request_id=job_id,
            )
        result = await json_of("GET", response_url)
        audio_file = next((result[k] for k in AUDIO_KEYS if k in result), None)
        url = audio_file.get("url") if isinstance(audio_file, dict) else audio_file
        if not isinstance(url, str):
            raise ProviderError(
                f"fal request {job_id} returned no audio file ({sorted(result)})", provider=self.name, request_id=job_id
            )
        audio, rate = decode_reply(await self.http.download(url, context), self.name)
        audio = audio[:, : round(request.duration * rate)]
        parameters = {k: v for k, v in payload.items() if k != "prompt"} | {"request_id": job_id}
        return RawGeneration(
            tracks=[RawTrack(audio=audio, sample_rate=rate, seed=request.seed, parameters=parameters)],
            engine_versions={"api": "queue"},
            device="cloud",
        )
