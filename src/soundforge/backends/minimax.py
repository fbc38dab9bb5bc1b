"""`minimax`: MiniMax Music (`POST /v1/music_generation`): songs from a style prompt and lyrics with structure tags,
and covers of a reference track.

Contract (docs/providers/minimax.md, from MiniMax's own clients: MiniMax-AI/MiniMax-MCP `minimax_mcp/server.py` and
`client.py`, MiniMax-AI/skills `minimax-music-guide.md` and `minimax_music.py`, and MiniMax's CLI and SDK mmx-cli
1.0.19 on npm, `music generate`, `music cover` and `MusicSDK.validateParams`): Bearer key, JSON body `{model, prompt,
lyrics, is_instrumental, lyrics_optimizer, audio_setting{sample_rate, bitrate, format}, output_format: hex|url}`; the
answer is HTTP 200 with `data.audio` (hex bytes, or a URL) or `data.audio_url`, `data.status` 2 when complete,
`extra_info.music_duration` in ms and `base_resp{status_code, status_msg}`, where a status code other than 0 is the
error. A cover (`music-cover`, `music-cover-free`) sends the reference as `audio_base64` (or `audio_url`); with
lyrics, the reference first goes to `POST /v1/music_cover_preprocess`, whose `cover_feature_id` the cover then names.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from ..audio import FORMATS, encode, load_audio
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

#: Models (MiniMax-AI/skills minimax-music-guide.md; mmx-cli 1.0.19 `MUSIC_GENERATE_MODELS`, `MUSIC_COVER_MODELS`):
#: 2.5 has no instrumental mode; the cover models make a new performance of a reference track.
MODELS = {
    "music-3.0": "the newest (MiniMax's CLI default); instrumental mode",
    "music-2.6": "recommended by MiniMax's guide; instrumental mode",
    "music-2.6-free": "the free tier of 2.6",
    "music-2.5+": "instrumental mode",
    "music-2.5": "songs with vocals only (no instrumental mode)",
    "music-2.0": "the MCP server's default",
    "music-cover": "a cover of a reference track (audio_prompt, 6 s to 6 min), optionally with new lyrics",
    "music-cover-free": "the free tier of music-cover",
}
NO_INSTRUMENTAL = frozenset({"music-2.5"})
COVER_MODELS = frozenset({"music-cover", "music-cover-free"})
#: A cover's limits (mmx-cli 1.0.19: `validateParams` and `music cover`'s options): the prompt is 10-300 characters,
#: lyrics 10-1000, the reference 6 s to 6 min and at most 50 MB, the seed 0-1000000.
COVER_PROMPT_CHARS = (10, 300)
COVER_LYRICS_CHARS = (10, 1000)
COVER_REFERENCE_SECONDS = (6.0, 360.0)
COVER_REFERENCE_BYTES = 50 * 1024 * 1024
MAX_SEED = 1_000_000
SAMPLE_RATES = (16000, 24000, 32000, 44100)
BITRATES = (32000, 64000, 128000, 256000)
MAX_PROMPT_CHARS = 2000
MAX_LYRICS_CHARS = 3500
#: Songs last as long as their lyrics; soundforge's 300 s ceiling is its own (MiniMax documents none: UNCONFIRMED).
MAX_SECONDS = 300.0
#: `aigc_watermark` is documented only by resellers (UNCONFIRMED), so it is sent only when asked for.
EXTRA_KEYS: dict[str, Any] = {"lyrics_optimizer": bool, "aigc_watermark": bool, "bitrate": int, "output_format": str}
#: What a cover takes in `extra` (MiniMax's CLI sends no instrumental, optimizer or watermark flag with a cover).
COVER_EXTRA_KEYS: dict[str, Any] = {"bitrate": int, "output_format": str}
#: base_resp status codes (the skills guide's "Error Handling"; the MCP client special-cases 1004).
RATE_LIMITED, AUTH_FAILED, NO_BALANCE, FLAGGED, INVALID = 1002, 1004, 1008, 1026, 2013


def _caps(model: str) -> Capabilities:
    if model in COVER_MODELS:
        return Capabilities(
            min_duration=1.0,
            max_duration=MAX_SECONDS,
            sample_rates=SAMPLE_RATES,
            channels=(1, 2),
            fields=frozenset(
                {"lyrics", "sample_rate", "channels", "seed", "audio_prompt", "audio_prompt_mode", "extra"}
            ),
            audio_prompt_modes=frozenset({"cover"}),
            vocals=True,
            max_outputs=1,
            seed_deterministic=False,  # MiniMax says "reproducible"; not verified here
            cost_hint="billed per cover by MiniMax (price UNCONFIRMED)",
        )
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
        if model in COVER_MODELS:
            return self._cover_body(request, model)
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
        if optimizer and (request.lyrics is not None or instrumental):
            # MiniMax's SDK: "Cannot use lyrics_optimizer with lyrics or is_instrumental".
            raise InvalidRequestError(
                "extra['lyrics_optimizer'] writes the lyrics itself: it goes with neither lyrics nor instrumental=True",
                field="extra",
                provider=self.name,
            )
        if request.lyrics is None and not instrumental and not optimizer:
            raise InvalidRequestError(
                "MiniMax needs lyrics for a song with vocals",
                field="lyrics",
                provider=self.name,
                hint="pass lyrics (with [Verse]/[Chorus] tags), instrumental=True, or "
                "extra={'lyrics_optimizer': True} to let MiniMax write them from the prompt",
            )
        body = self._output(request, extra) | {"model": model, "prompt": request.prompt}
        if request.lyrics is not None:
            body["lyrics"] = request.lyrics
        if instrumental:
            body["is_instrumental"] = True
        if optimizer:
            body["lyrics_optimizer"] = True
        if "aigc_watermark" in extra:
            body["aigc_watermark"] = extra["aigc_watermark"]
        return body

    def _output(self, request: GenerationRequest, extra: dict[str, Any]) -> dict[str, Any]:
        """`audio_setting` and `output_format`, checked."""
        bitrate = int(extra.get("bitrate", 256000))
        if bitrate not in BITRATES:
            raise InvalidRequestError(
                f"MiniMax bitrates are {', '.join(map(str, BITRATES))}", field="extra", provider=self.name
            )
        output_format = str(extra.get("output_format", "hex"))
        if output_format not in ("hex", "url"):
            raise InvalidRequestError("extra['output_format'] is 'hex' or 'url'", field="extra", provider=self.name)
        setting: dict[str, Any] = {"sample_rate": request.sample_rate or 44100, "bitrate": bitrate, "format": "mp3"}
        return {"audio_setting": setting, "output_format": output_format}

    def _cover_body(self, request: GenerationRequest, model: str) -> dict[str, Any]:
        """A cover's body: the reference track as `audio_base64` (FLAC), its limits checked before it is sent."""
        extra = checked_extra(request, COVER_EXTRA_KEYS, provider=self.name)
        if request.audio_prompt is None:
            raise InvalidRequestError(
                f"{model} makes a cover of a reference track: it needs one",
                field="audio_prompt",
                provider=self.name,
                hint="pass audio_prompt='song.mp3' (6 s to 6 min) and audio_prompt_mode='cover'",
            )
        prompt = request.prompt.strip()
        low, high = COVER_PROMPT_CHARS
        if not low <= len(prompt) <= high:
            raise InvalidRequestError(
                f"a MiniMax cover takes a style prompt of {low}-{high} characters, not {len(prompt)}",
                field="prompt",
                provider=self.name,
                hint='describe the cover\'s style, e.g. "indie folk, acoustic guitar, warm male vocal"',
            )
        lyrics = request.lyrics.strip() if request.lyrics is not None else ""
        low, high = COVER_LYRICS_CHARS
        if lyrics and not low <= len(lyrics) <= high:
            raise InvalidRequestError(
                f"a MiniMax cover takes lyrics of {low}-{high} characters, not {len(lyrics)}",
                field="lyrics",
                provider=self.name,
            )
        if request.seed is not None and not 0 <= request.seed <= MAX_SEED:
            raise InvalidRequestError(
                f"a MiniMax cover takes a seed from 0 to {MAX_SEED}, not {request.seed}",
                field="seed",
                provider=self.name,
            )
        body = self._output(request, extra) | {"model": model, "prompt": prompt}
        if request.channels is not None:
            body["audio_setting"]["channel"] = request.channels
        if request.seed is not None:
            body["seed"] = request.seed
        if lyrics:
            body["lyrics"] = lyrics
        body["audio_base64"] = self._reference(request)
        return body

    def _reference(self, request: GenerationRequest) -> str:
        """The audio prompt as base64 FLAC (lossless, about half a WAV's size), within MiniMax's limits."""
        assert request.audio_prompt is not None
        audio, rate = request.audio_prompt.load()
        seconds = audio.shape[-1] / rate
        low, high = COVER_REFERENCE_SECONDS
        if not low <= seconds <= high:
            raise InvalidRequestError(
                f"a MiniMax cover's reference track is {low:g} s to {high / 60:g} min long, not {seconds:.2f} s",
                field="audio_prompt",
                provider=self.name,
            )
        data = encode(audio, rate, FORMATS["flac"])
        if len(data) > COVER_REFERENCE_BYTES:
            raise InvalidRequestError(
                f"the reference track is {len(data) / 2**20:.1f} MB as FLAC; MiniMax takes at most 50 MB",
                field="audio_prompt",
                provider=self.name,
                hint="give a shorter clip or a lower sample rate",
            )
        return base64.b64encode(data).decode("ascii")

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

    async def _submit(
        self, body: dict[str, Any], context: RunContext, path: str = "/v1/music_generation"
    ) -> dict[str, Any]:
        """POST the song; a 1002 answer (rate-limited: nothing was made) is sent again after a backoff."""
        settings = self.http_settings()
        for attempt in range(settings.max_retries + 1):
            answer = await self.http.request_json("POST", path, idempotent=False, context=context, json=body)
            error = self._business_error(answer)
            if error is None:
                return answer
            if not isinstance(error, RateLimitError) or attempt == settings.max_retries:
                raise error
            await asyncio.sleep(backoff_delay(settings, attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _cover_feature(self, body: dict[str, Any], context: RunContext) -> str:
        """New lyrics for a cover: the reference goes to `/v1/music_cover_preprocess` first (as MiniMax's CLI does)
        and the cover names the `cover_feature_id` it answers instead of carrying the audio."""
        answer = await self._submit(
            {"model": "music-cover", "audio_base64": body.pop("audio_base64")}, context, "/v1/music_cover_preprocess"
        )
        feature = answer.get("cover_feature_id")
        if not isinstance(feature, str) or not feature:
            raise ProviderError(
                "MiniMax's cover preprocessing answered without a cover_feature_id",
                provider=self.name,
                request_id=answer.get("trace_id"),
            )
        return feature

    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        body = self._body(request, model)
        if model in COVER_MODELS and "lyrics" in body:
            body["cover_feature_id"] = await self._cover_feature(body, context)
        answer = await self._submit(body, context)
        data: dict[str, Any] = answer["data"] if isinstance(answer.get("data"), dict) else {}
        trace = answer.get("trace_id")
        # A URL answer is `data.audio_url` in MiniMax's SDK (`MusicResponse`), `data.audio` in its MCP server.
        reply = data.get("audio_url") or data.get("audio") if body["output_format"] == "url" else data.get("audio")
        if data.get("status") != 2 or not isinstance(reply, str) or not reply:
            raise ProviderError(
                f"MiniMax answered without a finished song (status {data.get('status')})",
                provider=self.name,
                request_id=trace,
            )
        if body["output_format"] == "url":
            audio, rate = decode_reply(await self.http.download(reply, context), self.name)
        else:
            try:
                audio, rate = load_audio(bytes.fromhex(reply))
            except (ValueError, SoundforgeError) as exc:
                raise ProviderError("MiniMax returned audio that cannot be decoded", provider=self.name) from exc
        extra_info: dict[str, Any] = answer["extra_info"] if isinstance(answer.get("extra_info"), dict) else {}
        kept = ("prompt", "lyrics", "model", "audio_base64")
        parameters: dict[str, Any] = {k: v for k, v in body.items() if k not in kept} | {
            "trace_id": trace,
            "returned_seconds": round(audio.shape[1] / rate, 3),
        }
        if "music_duration" in extra_info:
            parameters["music_duration_ms"] = extra_info["music_duration"]
        watermarks = ["AIGC watermark (MiniMax)"] if body.get("aigc_watermark") else []
        return cloud_track(request, audio, rate, parameters, api="v1", watermarks=watermarks)
