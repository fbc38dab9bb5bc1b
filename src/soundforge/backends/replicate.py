"""`replicate`: models hosted on Replicate, run as predictions (create, poll, download, cancel).

Contract (docs/providers/replicate.md, from the official `replicate` Python client 1.0.7): `POST
/v1/models/{owner}/{name}/predictions` (or `POST /v1/predictions` with a pinned `version`), `Authorization:
Bearer`, optional `Prefer: wait=N`; `GET /v1/predictions/{id}` until `succeeded | failed | canceled`;
`POST /v1/predictions/{id}/cancel`. The output is a file URL, fetched through the output-URL guard
without the API key. The licence is the hosted model's (meta/musicgen: CC-BY-NC-4.0 weights).
"""

from __future__ import annotations

import base64
import math
from typing import Any

from ..audio import encode, format_for, resample, to_channels
from ..capabilities import Capabilities, ModelInfo
from ..errors import GenerationTimeoutError, InvalidRequestError, ProviderError, SoundforgeError
from ..request import GenerationRequest
from ._cloud import CLOUD_SETTINGS, CloudBackend, decode_reply, model_inputs, poll_job
from .base import RawGeneration, RawTrack, RunContext

#: Final statuses (Replicate's prediction lifecycle docs): "aborted" is a prediction that passed its deadline before
#: it started (replicate-python added it to its terminal statuses in PR #460).
TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
MUSICGEN = "meta/musicgen"
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

    settings_keys = CLOUD_SETTINGS | {"prefer_wait"}

    name = "replicate"
    description = "Replicate predictions (cloud), e.g. meta/musicgen"
    default_model = MUSICGEN
    key_env = "REPLICATE_API_TOKEN"
    default_base_url = "https://api.replicate.com"

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
            return InvalidRequestError(
                f"Replicate refused the input ({status}): {body.get('detail') or body}", provider=self.name
            )
        if status == 404:
            return ProviderError(
                f"Replicate has no such model or prediction: {body}",
                provider=self.name,
                status=404,
                request_id=request_id,
            )
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
        payload: dict[str, Any] = {"input": self._input(request, model)}
        if version:
            path, payload["version"] = "/v1/predictions", version
        else:
            path = f"/v1/models/{name}/predictions"
        wait = int(self.settings.get("prefer_wait", 5))
        headers = {"Prefer": f"wait={wait}"} if wait > 0 else {}
        prediction = await self.http.request_json(
            "POST", path, idempotent=False, context=context, headers=headers, json=payload
        )
        job_id = str(prediction.get("id", ""))
        if not job_id:
            raise ProviderError("Replicate answered without a prediction id", provider=self.name)

        async def fetch() -> dict[str, Any]:
            return await self.http.request_json("GET", f"/v1/predictions/{job_id}", idempotent=True, context=context)

        async def cancel() -> None:
            # A fresh context: the caller's may already be cancelled, and this call must still go out.
            await self.http.request_json(
                "POST", f"/v1/predictions/{job_id}/cancel", idempotent=True, context=RunContext()
            )

        if prediction.get("status") not in TERMINAL:
            prediction = await poll_job(
                fetch,
                lambda p: p.get("status") in TERMINAL,
                context=context,
                settings=self.settings,
                cancel=cancel,
                provider=self.name,
            )
        status = prediction.get("status")
        if status == "aborted":
            raise GenerationTimeoutError(
                f"Replicate aborted prediction {job_id}: it passed its deadline before it could start",
                provider=self.name,
                hint="try again later, or give the prediction a longer deadline",
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
        audio = audio[:, : round(request.duration * rate)]
        parameters = {k: v for k, v in payload["input"].items() if k not in ("prompt", "input_audio")}
        parameters |= {"prediction_id": job_id, "version": prediction.get("version") or version or None}
        return RawGeneration(
            tracks=[RawTrack(audio=audio, sample_rate=rate, seed=request.seed, parameters=parameters)],
            model_revision=prediction.get("version") or version or None,
            engine_versions={"api": "v1"},
            device="cloud",
        )
