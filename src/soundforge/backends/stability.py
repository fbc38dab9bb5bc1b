"""`stability`: Stability AI's hosted Stable Audio 2 / 2.5 (text-to-audio, audio-to-audio and inpaint).

Contract (docs/providers/stability.md): `POST /v2beta/audio/stable-audio-2/{text-to-audio,audio-to-audio,inpaint}`,
`Authorization: Bearer`, multipart/form-data even without a file, `Accept: audio/*` for raw audio bytes.
The call blocks until the audio is ready and has no idempotency key, so it is never re-sent once its
outcome is unknown.
"""

from __future__ import annotations

import math
from typing import Any

from ..capabilities import Capabilities, ModelInfo
from ..errors import ContentRefusedError, InvalidRequestError, SoundforgeError
from ..request import GenerationRequest
from .base import RawGeneration, RawTrack, RunContext, checked_extra, default_seed, fit_length
from .cloud import CLOUD_SETTINGS, UPLOAD_FORMATS, CloudBackend, decode_reply, upload_file

MODELS = {"stable-audio-2.5": (4, 8), "stable-audio-2": (1, 100)}  # model: allowed steps
MAX_SECONDS = 190
#: The input clip of audio-to-audio and inpaint: 6-190 s (Stability's OpenAPI text for CreateAudioStableAudio2Inpaint;
#: ComfyUI's partner nodes enforce the same for both endpoints), mp3 or wav.
INPUT_CLIP_SECONDS = (6.0, 190.0)
# The input clip is sent as MP3 at 320 kbps (`upload_file`) unless `upload_format = "wav"` asks for the lossless file.
# Requests are "at most 50 MB" (the same OpenAPI text): the longest clip allowed, 190 s, is 7.6 MB as MP3 and 33.5 MB
# as WAV, so the length limit is the one that binds.
#: Inpaint is documented for this model only (others: UNCONFIRMED).
INPAINT_MODELS = ("stable-audio-2.5",)
MAX_SEED = 4294967294
EXTRA_KEYS: dict[str, Any] = {"output_format": str}


def _caps(model: str) -> Capabilities:
    return Capabilities(
        min_duration=1.0,
        max_duration=MAX_SECONDS,
        sample_rates=(44100,),
        channels=(2,),
        fields=frozenset(
            {
                "seed",
                "steps",
                "guidance",
                "audio_prompt",
                "audio_prompt_mode",
                "strength",
                *(("region",) if model in INPAINT_MODELS else ()),
                "extra",
                "sample_rate",
                "channels",
            }
        ),
        audio_prompt_modes=frozenset({"variation", "repaint"} if model in INPAINT_MODELS else {"variation"}),
        max_outputs=1,
        seed_deterministic=True,
        cost_hint="about 20 credits per generation (2.5)",
    )


class StabilityBackend(CloudBackend):
    """Stable Audio 2.x on api.stability.ai."""

    settings_keys = CLOUD_SETTINGS | {"upload_format"}

    name = "stability"
    description = "Stability AI Stable Audio 2 / 2.5 API (cloud)"
    default_model = "stable-audio-2.5"
    key_env = "STABILITY_API_KEY"
    default_base_url = "https://api.stability.ai"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m, capabilities=_caps(m)) for m in MODELS]

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def map_error(self, status: int, body: Any, request_id: str | None) -> SoundforgeError | None:
        errors = body.get("errors") if isinstance(body, dict) else None
        detail = "; ".join(map(str, errors)) if isinstance(errors, list) else str(body)[:300]
        name = body.get("name", "") if isinstance(body, dict) else ""
        if status == 403 and "auth" not in str(name).lower():
            return ContentRefusedError(
                f"Stability's moderation refused the request: {detail}",
                provider=self.name,
                hint="rephrase the prompt or change the input audio",
            )
        if status in (400, 413, 422):
            label = f"{status} {name}".strip()  # an answer without a name (a proxy's 413) said "(413 )"
            return InvalidRequestError(f"Stability refused the request ({label}): {detail}", provider=self.name)
        return None

    def _upload(self, audio: Any, rate: int, endpoint: str) -> tuple[str, bytes, str]:
        """The audio prompt as the file to send: its documented length checked, encoded compactly, its size checked.

        Everything here happens before the request: a clip the API would refuse is never uploaded (nor paid for).
        """
        seconds = audio.shape[-1] / rate
        low, high = INPUT_CLIP_SECONDS
        if not low <= seconds <= high:
            raise InvalidRequestError(
                f"Stability's {endpoint} takes a clip of {low:g}-{high:g} s, not {seconds:.2f} s",
                field="audio_prompt",
                provider=self.name,
                hint="trim or pad the clip" if seconds > high else "give a clip of at least 6 s",
            )
        kind = str(self.settings.get("upload_format", "mp3"))
        if kind not in UPLOAD_FORMATS:
            raise InvalidRequestError(
                f"[providers.stability] upload_format must be one of {', '.join(UPLOAD_FORMATS)}, not {kind!r}",
                field="upload_format",
                provider=self.name,
            )
        return upload_file(audio, rate, kind)

    def _check_region(self, clip_seconds: float, region: tuple[float, float], duration: float) -> None:
        """The inpaint region's documented limits, checked before the clip is uploaded."""
        if region[1] > MAX_SECONDS or region[1] > max(duration, clip_seconds):
            raise InvalidRequestError(
                f"region ends at {region[1]:g} s, past the clip and the {duration:g} s asked for",
                field="region",
                provider=self.name,
            )

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        lo, hi = MODELS[model]
        if request.steps is not None and not lo <= request.steps <= hi:
            raise InvalidRequestError(f"{model} takes {lo}-{hi} steps", field="steps", provider=self.name)
        if request.guidance is not None and request.guidance > 25:
            raise InvalidRequestError("Stability's cfg_scale goes up to 25", field="guidance", provider=self.name)
        extra = checked_extra(request, EXTRA_KEYS, provider=self.name)
        output_format = extra.get("output_format", "wav")
        if output_format not in ("wav", "mp3"):
            raise InvalidRequestError(
                "extra['output_format'] must be 'wav' or 'mp3'", field="extra", provider=self.name
            )
        seed = default_seed(request, MAX_SEED + 1)
        if seed > MAX_SEED:
            raise InvalidRequestError(f"Stability seeds go up to {MAX_SEED}", field="seed", provider=self.name)
        fields: dict[str, Any] = {
            "prompt": request.prompt,
            "model": model,
            "duration": str(math.ceil(request.duration)),
            "seed": str(seed),
            "output_format": output_format,
        }
        if request.steps is not None:
            fields["steps"] = str(request.steps)
        if request.guidance is not None:
            fields["cfg_scale"] = f"{request.guidance:g}"
        files: dict[str, Any] = {key: (None, value) for key, value in fields.items()}
        endpoint = "text-to-audio"
        if request.audio_prompt is not None:
            audio, rate = request.audio_prompt.load()
            if request.audio_prompt_mode == "repaint":
                assert request.region is not None  # the request pairs them
                endpoint = "inpaint"
                self._check_region(audio.shape[-1] / rate, request.region, request.duration)
                files["mask_start"] = (None, f"{request.region[0]:g}")
                files["mask_end"] = (None, f"{request.region[1]:g}")
            else:
                endpoint = "audio-to-audio"
                files["strength"] = (None, f"{request.strength if request.strength is not None else 1.0:g}")
            files["audio"] = self._upload(audio, rate, endpoint)
        elif request.strength is not None:
            raise InvalidRequestError("strength needs an audio_prompt", field="strength", provider=self.name)
        reply = await self.http.request(
            "POST",
            f"/v2beta/audio/stable-audio-2/{endpoint}",
            idempotent=False,
            context=context,
            headers={"Accept": "audio/*"},
            files=files,
        )
        finish = reply.headers.get("finish-reason", "SUCCESS")
        if finish.upper() == "CONTENT_FILTERED":
            reply.discard()
            raise ContentRefusedError(
                "Stability filtered the output (finish-reason CONTENT_FILTERED)", provider=self.name
            )
        audio, rate = decode_reply(reply, self.name)
        audio = fit_length(audio, round(request.duration * rate))
        parameters = {k: v for k, v in fields.items() if k != "prompt"} | {"endpoint": endpoint}
        if "strength" in files:
            parameters["strength"] = files["strength"][1]
        return RawGeneration(
            tracks=[
                RawTrack(
                    audio=audio, sample_rate=rate, seed=int(reply.headers.get("seed", seed)), parameters=parameters
                )
            ],
            engine_versions={"api": "v2beta"},
            device="cloud",
        )
