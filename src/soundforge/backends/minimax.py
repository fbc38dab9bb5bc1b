"""`minimax`: MiniMax Music (`POST /v1/music_generation`): songs from a style prompt and lyrics with structure tags.

Contract (docs/providers/minimax.md, from MiniMax's own clients: MiniMax-AI/MiniMax-MCP `minimax_mcp/server.py` and
`client.py`, MiniMax-AI/skills `minimax-music-guide.md` and `minimax_music.py`): Bearer key, JSON body `{model, prompt,
lyrics, is_instrumental, lyrics_optimizer, audio_setting{sample_rate, bitrate, format}, output_format: hex|url}`; the
answer is HTTP 200 with `data.audio` (hex bytes or a URL), `data.status` 2 when complete, `extra_info.music_duration`
in ms and `base_resp{status_code, status_msg}`, where a status code other than 0 is the error.
"""

from __future__ import annotations

import asyncio
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
from .cloud import CLOUD_SETTINGS, CloudBackend, backoff_delay, cloud_track, decode_reply

#: Models (MiniMax-AI/skills minimax-music-guide.md): 2.5 has no instrumental mode.
MODELS = {
    "music-2.6": "recommended; instrumental mode",
    "music-2.6-free": "the free tier of 2.6",
    "music-2.5+": "instrumental mode",
    "music-2.5": "songs with vocals only (no instrumental mode)",
    "music-2.0": "the MCP server's default",
}
NO_INSTRUMENTAL = frozenset({"music-2.5"})
SAMPLE_RATES = (16000, 24000, 32000, 44100)
BITRATES = (32000, 64000, 128000, 256000)
MAX_PROMPT_CHARS = 2000
MAX_LYRICS_CHARS = 3500
#: Songs last as long as their lyrics; soundforge's 300 s ceiling is its own (MiniMax documents none: UNCONFIRMED).
MAX_SECONDS = 300.0
#: `aigc_watermark` is documented only by resellers (UNCONFIRMED), so it is sent only when asked for.
EXTRA_KEYS: dict[str, Any] = {"lyrics_optimizer": bool, "aigc_watermark": bool, "bitrate": int, "output_format": str}
#: base_resp status codes (the skills guide's "Error Handling"; the MCP client special-cases 1004).
RATE_LIMITED, AUTH_FAILED, NO_BALANCE, FLAGGED, INVALID = 1002, 1004, 1008, 1026, 2013


def _caps(model: str) -> Capabilities:
    return Capabilities(
        min_duration=1.0,
        max_duration=MAX_SECONDS,
        sample_rates=SAMPLE_RATES,
        channels=(1, 2),
        fields=frozenset({"lyrics", "sample_rate", "extra", *(() if model in NO_INSTRUMENTAL else ("instrumental",))}),
        vocals=True,
        max_outputs=1,
        seed_deterministic=False,
        cost_hint="billed per song by MiniMax (price UNCONFIRMED)",
    )


class MiniMaxBackend(CloudBackend):
    """MiniMax Music (`MINIMAX_API_KEY`; `base_url = "https://api.minimaxi.com"` for the mainland service)."""

    settings_keys = CLOUD_SETTINGS

    name = "minimax"
    description = "MiniMax Music (cloud): songs from a style prompt and lyrics with structure tags"
    default_model = "music-2.6"
    key_env = "MINIMAX_API_KEY"
    default_base_url = "https://api.minimax.io"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m, description=d, capabilities=_caps(m)) for m, d in MODELS.items()]

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def _body(self, request: GenerationRequest, model: str) -> dict[str, Any]:
        """The request body, with every documented limit checked first (nothing is sent that MiniMax would refuse)."""
        extra = checked_extra(request, EXTRA_KEYS, provider=self.name)
        if len(request.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequestError(
                f"MiniMax takes a prompt of at most {MAX_PROMPT_CHARS} characters, not {len(request.prompt)}",
                field="prompt",
                provider=self.name,
            )
        if request.lyrics is not None and not 1 <= len(request.lyrics) <= MAX_LYRICS_CHARS:
            raise InvalidRequestError(
                f"MiniMax takes lyrics of 1-{MAX_LYRICS_CHARS} characters, not {len(request.lyrics)}",
                field="lyrics",
                provider=self.name,
            )
        instrumental = bool(request.instrumental)
        optimizer = bool(extra.get("lyrics_optimizer", False))
        if request.lyrics is None and not instrumental and not optimizer:
            raise InvalidRequestError(
                "MiniMax needs lyrics for a song with vocals",
                field="lyrics",
                provider=self.name,
                hint="pass lyrics (with [Verse]/[Chorus] tags), instrumental=True, or "
                "extra={'lyrics_optimizer': True} to let MiniMax write them from the prompt",
            )
        bitrate = int(extra.get("bitrate", 256000))
        if bitrate not in BITRATES:
            raise InvalidRequestError(
                f"MiniMax bitrates are {', '.join(map(str, BITRATES))}", field="extra", provider=self.name
            )
        output_format = str(extra.get("output_format", "hex"))
        if output_format not in ("hex", "url"):
            raise InvalidRequestError("extra['output_format'] is 'hex' or 'url'", field="extra", provider=self.name)
        body: dict[str, Any] = {
            "model": model,
            "prompt": request.prompt,
            "audio_setting": {"sample_rate": request.sample_rate or 44100, "bitrate": bitrate, "format": "mp3"},
            "output_format": output_format,
        }
        if request.lyrics is not None:
            body["lyrics"] = request.lyrics
        if instrumental:
            body["is_instrumental"] = True
        if optimizer:
            body["lyrics_optimizer"] = True
        if "aigc_watermark" in extra:
            body["aigc_watermark"] = extra["aigc_watermark"]
        return body

    def _business_error(self, answer: dict[str, Any]) -> SoundforgeError | None:
        """The error `base_resp` reports (MiniMax answers HTTP 200 with a status code), or None when it is 0."""
        base = answer.get("base_resp")
        if not isinstance(base, dict):
            return ProviderError("MiniMax answered without base_resp", provider=self.name)
        code, message = base.get("status_code"), str(base.get("status_msg", ""))
        trace = answer.get("trace_id")
        if code == 0:
            return None
        if code == RATE_LIMITED:
            return RateLimitError(f"MiniMax rate limit (1002): {message}", provider=self.name, request_id=trace)
        if code == AUTH_FAILED:
            return AuthenticationError(f"MiniMax rejected the API key (1004): {message}", provider=self.name)
        if code == NO_BALANCE:
            return ProviderError(
                f"MiniMax account balance is insufficient (1008): {message}",
                provider=self.name,
                request_id=trace,
                hint="top up the MiniMax account; nothing was generated",
            )
        if code == FLAGGED:
            return ContentRefusedError(
                f"MiniMax flagged the prompt or lyrics (1026): {message}",
                provider=self.name,
                hint="change the prompt or the lyrics; sending them again fails the same way",
            )
        if code == INVALID:
            return InvalidRequestError(f"MiniMax refused the parameters (2013): {message}", provider=self.name)
        return ProviderError(f"MiniMax failed ({code}): {message}", provider=self.name, request_id=trace)

    async def _submit(self, body: dict[str, Any], context: RunContext) -> dict[str, Any]:
        """POST the song; a 1002 answer (rate-limited: nothing was made) is sent again after a backoff."""
        settings = self.http_settings()
        for attempt in range(settings.max_retries + 1):
            answer = await self.http.request_json(
                "POST", "/v1/music_generation", idempotent=False, context=context, json=body
            )
            error = self._business_error(answer)
            if error is None:
                return answer
            if not isinstance(error, RateLimitError) or attempt == settings.max_retries:
                raise error
            await asyncio.sleep(backoff_delay(settings, attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        body = self._body(request, model)
        answer = await self._submit(body, context)
        data: dict[str, Any] = answer["data"] if isinstance(answer.get("data"), dict) else {}
        trace = answer.get("trace_id")
        if data.get("status") != 2 or not isinstance(data.get("audio"), str) or not data["audio"]:
            raise ProviderError(
                f"MiniMax answered without a finished song (status {data.get('status')})",
                provider=self.name,
                request_id=trace,
            )
        if body["output_format"] == "url":
            audio, rate = decode_reply(await self.http.download(data["audio"], context), self.name)
        else:
            try:
                audio, rate = load_audio(bytes.fromhex(data["audio"]))
            except (ValueError, SoundforgeError) as exc:
                raise ProviderError("MiniMax returned audio that cannot be decoded", provider=self.name) from exc
        extra_info: dict[str, Any] = answer["extra_info"] if isinstance(answer.get("extra_info"), dict) else {}
        parameters: dict[str, Any] = {k: v for k, v in body.items() if k not in ("prompt", "lyrics", "model")} | {
            "trace_id": trace,
            "returned_seconds": round(audio.shape[1] / rate, 3),
        }
        if "music_duration" in extra_info:
            parameters["music_duration_ms"] = extra_info["music_duration"]
        watermarks = ["AIGC watermark (MiniMax)"] if body.get("aigc_watermark") else []
        return cloud_track(request, audio, rate, parameters, api="v1", watermarks=watermarks)
