"""`gemini`: Google Lyria 3 and 3.5 on the Gemini API (songs with vocals and lyrics; not Vertex AI's Lyria 2).

Contract (docs/providers/gemini.md, from the google-genai 3.6.1 SDK and ai.google.dev's music-generation page):
`lyria-3-clip-preview` and `lyria-3-pro-preview` through `POST /{version}/models/{model}:generateContent` with
`generationConfig.responseModalities = ["AUDIO", "TEXT"]` and `responseMimeType`; `lyria-3.5` through the Interactions
API, `POST /{version}/interactions {"model", "input"}`. The key goes in `x-goog-api-key`. Each answer carries the audio
(base64) and the lyrics/structure text the model wrote, which the provenance keeps. Google marks every output with
SynthID, recorded as a provider-side watermark.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..audio import load_audio
from ..capabilities import Capabilities, ModelInfo
from ..errors import (
    AuthenticationError,
    ContentRefusedError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    SoundforgeError,
)
from ..request import GenerationRequest
from .base import RawGeneration, RunContext, checked_extra
from .cloud import CLOUD_SETTINGS, CloudBackend, cloud_track, poll_job

CLIP = "lyria-3-clip-preview"
PRO = "lyria-3-pro-preview"
LYRIA_35 = "lyria-3.5"
#: The clip model always makes 30 s (ai.google.dev music-generation page); the others make songs whose length the
#: prompt steers ("a couple of minutes"; soundforge's 240 s ceiling is its own, UNCONFIRMED against Google).
CLIP_SECONDS = 30.0
SONG_MAX_SECONDS = 240.0
#: Response formats per model: the clip model answers MP3 only, Pro MP3 or WAV (the docs' model table).
MIME_TYPES = {CLIP: ("audio/mpeg",), PRO: ("audio/wav", "audio/mpeg"), LYRIA_35: ("audio/mpeg",)}
#: What Google says it embeds in every Lyria output.
WATERMARKS = ["SynthID (Google)"]
#: finishReason / blockReason values that mean a safety system stopped the answer (google-genai `FinishReason`,
#: `BlockedReason`).
REFUSALS = frozenset({"SAFETY", "PROHIBITED_CONTENT", "RECITATION", "BLOCKLIST", "SPII"})
EXTRA_KEYS: dict[str, Any] = {"response_mime_type": str}


def _caps(model: str) -> Capabilities:
    clip = model == CLIP
    return Capabilities(
        min_duration=1.0,
        max_duration=CLIP_SECONDS if clip else SONG_MAX_SECONDS,
        sample_rates=(44100, 48000),  # the docs' versions say 44.1 kHz and 48 kHz: whatever the answer is decoded as
        channels=(2,),
        fields=frozenset({"lyrics", "instrumental", "extra"}),
        vocals=True,
        max_outputs=1,
        seed_deterministic=False,
        cost_hint="billed per song by Google (preview pricing: UNCONFIRMED)",
    )


def _retry_delay(error: dict[str, Any]) -> float | None:
    """`google.rpc.RetryInfo.retryDelay` ("30s", "1.5s") from an error's details, in seconds."""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


class GeminiBackend(CloudBackend):
    """Lyria 3 / 3.5 on the Gemini API (`GEMINI_API_KEY`)."""

    settings_keys = CLOUD_SETTINGS | {"api_version"}

    name = "gemini"
    description = "Google Lyria 3 / 3.5 on the Gemini API (cloud: songs with vocals, SynthID-watermarked)"
    default_model = CLIP
    key_env = "GEMINI_API_KEY"
    default_base_url = "https://generativelanguage.googleapis.com"

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(id=CLIP, description="30 s clips with vocals and lyrics, MP3", capabilities=_caps(CLIP)),
            ModelInfo(id=PRO, description="full songs, MP3 or WAV", capabilities=_caps(PRO)),
            ModelInfo(id=LYRIA_35, description="full songs (Interactions API), MP3", capabilities=_caps(LYRIA_35)),
        ]

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def map_error(self, status: int, body: Any, request_id: str | None) -> SoundforgeError | None:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return None
        message = str(error.get("message", ""))
        reasons = {d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)}
        if "API_KEY_INVALID" in reasons or status in (401, 403):
            return AuthenticationError(f"the Gemini API rejected the key ({status}): {message}", provider=self.name)
        if status == 429:
            return RateLimitError(
                f"Gemini API quota or rate limit: {message}",
                provider=self.name,
                retry_after=_retry_delay(error),
                request_id=request_id,
            )
        if status in (400, 404):
            return InvalidRequestError(
                f"the Gemini API refused the request ({error.get('status') or error.get('code')}): {message}",
                provider=self.name,
            )
        return None

    def _text(self, request: GenerationRequest, model: str) -> str:
        """The prompt as Lyria takes it: one text, with lyrics, vocals and (for songs) the length written in.

        Lyria has no lyrics or duration field: its docs put lyrics, section tags and timing in the prompt text.
        """
        parts = [request.prompt]
        if request.instrumental:
            parts.append("Instrumental only, no vocals.")
        if request.lyrics:
            parts.append(f"Lyrics:\n{request.lyrics}")
        if model != CLIP:
            minutes, seconds = divmod(round(request.duration), 60)
            parts.append(f"Length: {minutes}:{seconds:02d}.")
        return "\n\n".join(parts)

    def _mime(self, request: GenerationRequest, model: str) -> str:
        extra = checked_extra(request, EXTRA_KEYS, provider=self.name)
        allowed = MIME_TYPES[model]
        mime = str(extra.get("response_mime_type", allowed[0]))
        if mime not in allowed:
            raise InvalidRequestError(
                f"{model} answers {' or '.join(allowed)}, not {mime}", field="extra", provider=self.name
            )
        return mime

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        text, mime = self._text(request, model), self._mime(request, model)  # checked before any request
        version = str(self.settings.get("api_version", "v1beta"))
        if model == LYRIA_35:
            audio_b64, returned_text, answer_id = await self._interaction(version, model, text, context)
        else:
            audio_b64, returned_text, answer_id = await self._generate_content(version, model, text, mime, context)
        try:
            data = base64.b64decode(audio_b64, validate=True)
            audio, rate = load_audio(data)
        except (binascii.Error, ValueError, SoundforgeError) as exc:
            raise ProviderError("the Gemini API returned audio that cannot be decoded", provider=self.name) from exc
        returned_seconds = audio.shape[1] / rate
        parameters: dict[str, Any] = {
            "prompt_text": text,
            "response_mime_type": mime,
            "returned_seconds": round(returned_seconds, 3),
            "response_id": answer_id,
        }
        if returned_text:
            parameters["returned_text"] = returned_text
        return cloud_track(request, audio, rate, parameters, api=f"gemini-{version}", watermarks=list(WATERMARKS))

    async def _generate_content(
        self, version: str, model: str, text: str, mime: str, context: RunContext
    ) -> tuple[str, str, str | None]:
        body = {
            "contents": [{"role": "user", "parts": [{"text": text}]}],
            "generationConfig": {"responseModalities": ["AUDIO", "TEXT"], "responseMimeType": mime},
        }
        answer = await self.http.request_json(
            "POST", f"/{version}/models/{model}:generateContent", idempotent=False, context=context, json=body
        )
        blocked = (answer.get("promptFeedback") or {}).get("blockReason")
        if blocked:
            raise ContentRefusedError(
                f"the Gemini API blocked the prompt ({blocked})",
                provider=self.name,
                hint="rephrase the prompt; Lyria refuses prompts naming real artists or unsafe content",
            )
        candidates = answer.get("candidates")
        if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
            raise ProviderError("the Gemini API answered without a candidate", provider=self.name)
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        audio = next(
            (
                p["inlineData"].get("data")
                for p in parts
                if isinstance(p, dict) and isinstance(p.get("inlineData"), dict)
            ),
            None,
        )
        reason = str(candidate.get("finishReason", ""))
        if audio is None and reason in REFUSALS:
            raise ContentRefusedError(f"the Gemini API stopped the song ({reason})", provider=self.name)
        if not isinstance(audio, str):
            raise ProviderError(f"the Gemini API answered without audio ({reason or 'no reason'})", provider=self.name)
        returned = "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
        return audio, returned, answer.get("responseId")

    async def _interaction(
        self, version: str, model: str, text: str, context: RunContext
    ) -> tuple[str, str, str | None]:
        interaction = await self.http.request_json(
            "POST", f"/{version}/interactions", idempotent=False, context=context, json={"model": model, "input": text}
        )
        interaction_id = str(interaction.get("id", ""))
        if interaction.get("status") not in ("completed", "failed", "cancelled"):
            if not interaction_id:
                raise ProviderError("the Gemini API answered without an interaction id", provider=self.name)

            async def fetch() -> dict[str, Any]:
                return await self.http.request_json(
                    "GET", f"/{version}/interactions/{interaction_id}", idempotent=True, context=context
                )

            async def cancel() -> None:
                await self.http.request_json(
                    "POST", f"/{version}/interactions/{interaction_id}/cancel", idempotent=True, context=RunContext()
                )

            interaction = await poll_job(
                fetch,
                lambda i: i.get("status") in ("completed", "failed", "cancelled"),
                context=context,
                settings=self.settings,
                cancel=cancel,
                provider=self.name,
            )
        if interaction.get("status") != "completed":
            raise _interaction_error(interaction, interaction_id, self.name)
        # The SDK reads `steps[].content[]`; legacy Lyria answers use `outputs[]` (google-genai _maybe_coerce_outputs).
        blocks: list[Any] = []
        for step in interaction.get("steps") or []:
            if isinstance(step, dict) and step.get("type") == "model_output":
                blocks.extend(step.get("content") or [])
        blocks.extend(interaction.get("outputs") or [])
        audio = next(
            (b.get("data") for b in blocks if isinstance(b, dict) and b.get("type") == "audio" and b.get("data")), None
        )
        if not isinstance(audio, str):
            raise ProviderError(f"Gemini interaction {interaction_id} has no audio", provider=self.name)
        returned = "\n".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
        return audio, returned, interaction_id or None


def _interaction_error(interaction: dict[str, Any], interaction_id: str, provider: str) -> SoundforgeError:
    """Why an interaction did not complete: its `errors` (the SDK's `Interaction.errors`: a list of `{code, message}`,
    the code a URI naming the error type; an older `error` object too). A safety reason among them is a
    `ContentRefusedError` (the prompt must change), anything else a `ProviderError`."""
    found = [e for e in interaction.get("errors") or [] if isinstance(e, dict)]
    if isinstance(interaction.get("error"), dict):
        found.append(interaction["error"])
    reasons = "; ".join(f"{e.get('code') or 'error'}: {e.get('message') or ''}".strip() for e in found)
    text = f"Gemini interaction {interaction_id} {interaction.get('status')}" + (f": {reasons}" if reasons else "")
    words = {w for e in found for w in re.split(r"[^A-Z_]+", f"{e.get('code', '')} {e.get('message', '')}".upper())}
    if words & REFUSALS:
        return ContentRefusedError(text, provider=provider)
    return ProviderError(text, provider=provider, request_id=interaction_id or None)
