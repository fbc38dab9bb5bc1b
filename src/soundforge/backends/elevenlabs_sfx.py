"""`elevenlabs-sfx`: ElevenLabs sound effects (`POST /v1/sound-generation`), a cloud peer of `audiogen`.

Contract (docs/providers/elevenlabs.md, elevenlabs 2.78 `text_to_sound_effects/raw_client.py`): JSON `{text, loop,
duration_seconds (0.5-30; null lets the model choose), prompt_influence (0-1, default 0.3), model_id}`,
`output_format` as a query parameter, the key in `xi-api-key`, audio bytes back. Same host, key and error shapes as
the music API, so it shares the `elevenlabs` backend's; its licence is its own record, never the music terms.
"""

from __future__ import annotations

from typing import Any

from ..capabilities import Capabilities, ModelInfo
from ..errors import InvalidRequestError
from ..request import GenerationRequest
from .base import RawGeneration, RunContext, checked_extra
from .cloud import CLOUD_SETTINGS, cloud_track, decode_reply
from .elevenlabs import DEFAULT_FORMAT, ElevenLabsBackend

#: The SDK's `SfxModelId`.
MODELS = ("eleven_text_to_sound_v2", "eleven_text_to_sound_v3")
MIN_SECONDS, MAX_SECONDS = 0.5, 30.0
EXTRA_KEYS: dict[str, Any] = {"output_format": str, "prompt_influence": float, "loop": bool}
#: The formats of this endpoint (its `TextToSoundEffectsConvertRequestOutputFormat`) that soundforge can decode:
#: `pcm_*` is headerless 16-bit PCM whose channel layout the answer does not give, so it is refused before sending
#: (a paid answer that cannot be decoded would be lost).
FORMAT_PREFIXES = ("mp3_", "opus_", "wav_")


def _caps() -> Capabilities:
    return Capabilities(
        min_duration=MIN_SECONDS,
        max_duration=MAX_SECONDS,
        sample_rates=(22050, 24000, 44100, 48000),
        channels=(1, 2),
        fields=frozenset({"extra", "loop"}),  # `loop` natively: the API's own seamless loop
        max_outputs=1,
        seed_deterministic=False,
        cost_hint="ElevenLabs credits per generation",
    )


class ElevenLabsSfxBackend(ElevenLabsBackend):
    """ElevenLabs text-to-sound-effects on api.elevenlabs.io (`ELEVENLABS_API_KEY`)."""

    settings_keys = CLOUD_SETTINGS

    name = "elevenlabs-sfx"
    description = "ElevenLabs sound effects (cloud, 0.5-30 s, seamless loops)"
    default_model = MODELS[0]

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m, description="text to sound effect", capabilities=_caps()) for m in MODELS]

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        extra = checked_extra(request, EXTRA_KEYS, provider=self.name)
        output_format = str(extra.get("output_format", DEFAULT_FORMAT))
        if not output_format.startswith(FORMAT_PREFIXES):
            raise InvalidRequestError(
                "extra['output_format'] must be an mp3_*, wav_* or opus_* format (wav at 44.1 kHz needs the Pro plan "
                "or above; pcm_* is headerless audio soundforge cannot decode: wav_* carries the same samples)",
                field="extra",
                provider=self.name,
            )
        influence = extra.get("prompt_influence")
        if influence is not None and not 0.0 <= influence <= 1.0:
            raise InvalidRequestError("extra['prompt_influence'] goes from 0 to 1", field="extra", provider=self.name)
        body: dict[str, Any] = {"text": request.prompt, "duration_seconds": request.duration, "model_id": model}
        if influence is not None:
            body["prompt_influence"] = influence
        if request.loop or "loop" in extra:
            body["loop"] = bool(request.loop or extra["loop"])
        reply = await self.http.request(
            "POST",
            "/v1/sound-generation",
            idempotent=False,
            context=context,
            params={"output_format": output_format},
            json=body,
        )
        audio, rate = decode_reply(reply, self.name)
        parameters = {k: v for k, v in body.items() if k != "text"} | {"output_format": output_format}
        return cloud_track(request, audio, rate, parameters, api="v1")
