"""`elevenlabs`: ElevenLabs Music (Eleven Music) compose API.

Contract (docs/providers/elevenlabs.md, from the official `elevenlabs` Python SDK): `POST /v1/music` with
a JSON body (`prompt` or `composition_plan`, `music_length_ms`, `model_id`, `force_instrumental`),
`output_format` as a query parameter, key in `xi-api-key`, audio bytes streamed back. Not idempotent:
never re-sent once its outcome is unknown. The licence depends on the plan set in config.
"""

from __future__ import annotations

from typing import Any

from ..capabilities import Capabilities, ModelInfo
from ..errors import ContentRefusedError, InvalidRequestError, SoundforgeError
from ..request import GenerationRequest
from ._cloud import CloudBackend, decode_reply
from .base import RawGeneration, RawTrack, RunContext, checked_extra

MODELS = ("music_v1", "music_v2")
MIN_MS, MAX_MS = 3000, 600000
EXTRA_KEYS: dict[str, Any] = {
    "output_format": str,
    "composition_plan": dict,
    "respect_sections_durations": bool,
    "finetune_id": str,
    "finetune_strength": float,
    "sign_with_c2pa": bool,
}
DEFAULT_FORMAT = "mp3_44100_192"


def _caps() -> Capabilities:
    return Capabilities(
        min_duration=MIN_MS / 1000,
        max_duration=MAX_MS / 1000,
        sample_rates=(44100, 48000),
        channels=(1, 2),
        fields=frozenset({"instrumental", "extra"}),
        max_outputs=1,
        vocals=True,
        seed_deterministic=False,
        cost_hint="paid ElevenLabs plan; credits per minute of music",
    )


class ElevenLabsBackend(CloudBackend):
    """Eleven Music on api.elevenlabs.io."""

    name = "elevenlabs"
    description = "ElevenLabs Music API (cloud)"
    default_model = "music_v1"
    key_env = "ELEVENLABS_API_KEY"
    default_base_url = "https://api.elevenlabs.io"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m, capabilities=_caps()) for m in MODELS]

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
            text = detail if isinstance(detail, str) else str(body)[:300]
            return InvalidRequestError(f"ElevenLabs refused the request ({status}): {text}", provider=self.name)
        return None

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
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
        if plan is not None:
            if "sections" not in plan:
                raise InvalidRequestError(
                    "extra['composition_plan'] must be a plan object with 'sections'", field="extra", provider=self.name
                )
            body["composition_plan"] = plan  # the plan carries its own section lengths; the prompt is recorded
        else:
            body["prompt"] = request.prompt
            body["music_length_ms"] = round(request.duration * 1000)
            if request.instrumental is not None:
                body["force_instrumental"] = request.instrumental
        for key in ("respect_sections_durations", "finetune_id", "finetune_strength", "sign_with_c2pa"):
            if key in extra:
                body[key] = extra[key]
        reply = await self.http.request(
            "POST", "/v1/music", idempotent=False, context=context, params={"output_format": output_format}, json=body
        )
        audio, rate = decode_reply(reply, self.name)
        if plan is None:
            audio = audio[:, : round(request.duration * rate)]
        parameters = {k: v for k, v in body.items() if k not in ("prompt", "composition_plan")}
        parameters["output_format"] = output_format
        if plan is not None:
            parameters["composition_plan"] = True
        return RawGeneration(
            tracks=[RawTrack(audio=audio, sample_rate=rate, seed=None, parameters=parameters)],
            engine_versions={"api": "v1"},
            device="cloud",
        )
