"""`lyria`: Google Lyria 2 on Vertex AI (`lyria-002` predict endpoint).

Contract (docs/providers/lyria.md, Vertex AI model reference): `POST https://{location}-aiplatform.googleapis.com
/v1/projects/{project}/locations/{location}/publishers/google/models/lyria-002:predict`, `Authorization:
Bearer <OAuth access token>`, body `{"instances": [{"prompt", "negative_prompt", "seed"}], "parameters":
{"sample_count"}}`; each prediction holds base64 WAV (48 kHz, about 30 s). The token comes from config or
`GOOGLE_ACCESS_TOKEN`; with `use_google_auth = true` and google-auth installed, its default credentials
supply it (opt-in, because finding them may query the cloud metadata server); it is never required.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from ..audio import load_audio
from ..capabilities import Capabilities, ModelInfo
from ..errors import ContentRefusedError, InvalidRequestError, ProviderError, SoundforgeError
from ..request import GenerationRequest
from .base import Availability, RawGeneration, RawTrack, RunContext, fit_length
from .cloud import CLOUD_SETTINGS, CloudBackend, HttpSettings

CLIP_SECONDS = 32.8
AUDIO_KEYS = ("bytesBase64Encoded", "audioContent")  # the docs' sample and working clients disagree: read both


def _caps() -> Capabilities:
    return Capabilities(
        min_duration=1.0,
        max_duration=CLIP_SECONDS,
        sample_rates=(48000,),
        channels=(2,),
        fields=frozenset({"negative_prompt", "seed", "num_outputs", "sample_rate", "channels"}),
        max_outputs=4,
        seed_deterministic=True,
        cost_hint="billed per 30 s clip by Google Cloud",
    )


class LyriaBackend(CloudBackend):
    """Lyria 2 through the Vertex AI predict endpoint."""

    settings_keys = CLOUD_SETTINGS | {"project", "location", "use_google_auth"}

    name = "lyria"
    description = "Google Lyria 2 on Vertex AI (cloud, instrumental clips, SynthID-watermarked; Lyria 3: gemini)"
    default_model = "lyria-002"
    key_env = "GOOGLE_ACCESS_TOKEN"
    default_base_url = "https://us-central1-aiplatform.googleapis.com"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id="lyria-002", description="instrumental, 48 kHz, ~30 s clips", capabilities=_caps())]

    def http_settings(self) -> HttpSettings:
        settings = dict(self.settings)
        location = settings.get("location", "us-central1")
        settings.setdefault("base_url", f"https://{location}-aiplatform.googleapis.com")
        if not (settings.get("api_key") or os.environ.get(str(settings.get("api_key_env", self.key_env)))):
            token = _google_auth_token() if settings.get("use_google_auth") else None
            if token:
                settings["api_key"] = token
        return HttpSettings.from_settings(settings, default_base_url=self.default_base_url, key_env=self.key_env)

    def availability(self, request: GenerationRequest | None = None) -> Availability:
        if not self.settings.get("project"):
            return Availability(
                False,
                "no Google Cloud project configured",
                fix='set [providers.lyria] project = "my-project" (and location)',
            )
        status = super().availability(request)
        if not status.available and not self.settings.get("use_google_auth"):
            return Availability(
                False,
                f"no access token ({self.key_env} is not set)",
                fix=f"export {self.key_env}=$(gcloud auth print-access-token), or set "
                "use_google_auth = true with google-auth installed",
            )
        return Availability(True)

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def map_error(self, status: int, body: Any, request_id: str | None) -> SoundforgeError | None:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return None
        message = str(error.get("message", ""))
        if status == 400 and any(w in message.lower() for w in ("safety", "blocked", "recitation", "artist")):
            return ContentRefusedError(f"Lyria refused the prompt: {message}", provider=self.name)
        if status == 400:
            return InvalidRequestError(
                f"Lyria refused the request ({error.get('status')}): {message}", provider=self.name
            )
        return None

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        if request.seed is not None and request.num_outputs > 1:
            raise InvalidRequestError(
                "Lyria takes either a seed or several samples, not both",
                field="seed",
                provider=self.name,
                hint="drop the seed or ask for one output",
            )
        instance: dict[str, Any] = {"prompt": request.prompt}
        if request.negative_prompt is not None:
            instance["negative_prompt"] = request.negative_prompt
        if request.seed is not None:
            instance["seed"] = request.seed
        body: dict[str, Any] = {"instances": [instance]}
        if request.num_outputs > 1:
            body["parameters"] = {"sample_count": request.num_outputs}
        project = self.settings["project"]
        location = self.settings.get("location", "us-central1")
        path = f"/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:predict"
        answer = await self.http.request_json("POST", path, idempotent=False, context=context, json=body)
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or not predictions:
            raise ProviderError("Lyria answered without predictions", provider=self.name)
        tracks = []
        for index, prediction in enumerate(predictions):
            encoded = next(
                (prediction.get(k) for k in AUDIO_KEYS if isinstance(prediction, dict) and k in prediction), None
            )
            try:
                wav = base64.b64decode(encoded or "", validate=True)
            except (binascii.Error, TypeError):
                raise ProviderError("Lyria returned malformed base64 audio", provider=self.name) from None
            audio, rate = _decode(wav)
            tracks.append(
                RawTrack(
                    audio=fit_length(audio, round(request.duration * rate)),
                    sample_rate=rate,
                    seed=request.seed,
                    parameters={
                        **{k: v for k, v in instance.items() if k != "prompt"},
                        "sample_index": index,
                        "model": answer.get("model", model),
                    },
                )
            )
        return RawGeneration(
            tracks=tracks, engine_versions={"api": "vertex-v1"}, device="cloud", watermarks=["SynthID (Google)"]
        )


def _decode(wav: bytes) -> tuple[Any, int]:
    if not wav:
        raise ProviderError("Lyria returned no audio", provider="lyria")
    try:
        return load_audio(wav)
    except SoundforgeError as exc:
        raise ProviderError("Lyria returned audio that cannot be decoded", provider="lyria") from exc


def _google_auth_token() -> str | None:
    """An access token from google-auth's default credentials, when that optional package is installed."""
    try:
        import google.auth
        import google.auth.transport.requests
    except ImportError:
        return None
    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        refresh: Any = credentials.refresh  # untyped in google-auth: called through Any, with or without its stubs
        refresh(google.auth.transport.requests.Request())
        return str(credentials.token)
    except Exception:  # no credentials configured is the common case
        return None
