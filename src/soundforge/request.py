"""`GenerationRequest`: the one provider-neutral description of what to generate.

It is frozen, validated on construction and round-trips through JSON, so the same request can be
logged, queued, sent over HTTP or replayed. Backends map its fields to their engine, or refuse a
field they cannot honour with `UnsupportedFeatureError`; nothing is silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .audio import AudioArray, as_audio, encode, format_for, load_audio
from .audio.edits import Edits
from .audio.loudness import MAX_LUFS, MIN_LUFS
from .errors import InvalidRequestError
from .music import STEMS, normalise_key, normalise_time_signature

MAX_PROMPT_CHARS = 4000
#: What a backend can do with an audio prompt (see `GenerationRequest.audio_prompt_mode`).
AudioPromptMode = Literal["continuation", "variation", "repaint", "cover", "extract"]
AUDIO_PROMPT_MODES: tuple[str, ...] = get_args(AudioPromptMode)
MAX_DURATION_S = 3600.0
#: The shortest trim: a shorter one leaves no audio to encode.
MIN_TRIM_S = 0.01
MAX_OUTPUTS = 16
#: The largest seed (a signed 64-bit integer, what torch and numpy take); output i of a request uses seed + i.
MAX_SEED = 2**63 - 1
#: Style adapters one request may stack (each is loaded into the model for the call and removed after it).
MAX_ADAPTERS = 8
#: An adapter's scale: 1 is its trained strength, 0 turns it off, a negative scale steers away from its style.
#: Beyond this the LoRA's update swamps the model's own weights: noise, never a stronger style.
MAX_ADAPTER_SCALE = 8.0


class AudioInput(BaseModel):
    """Audio given to a request (a melody, or a clip to continue or transform): a file path or embedded WAV.

    Build one with `AudioInput.from_array(array, sample_rate)` or `AudioInput(path=...)`; a request also
    accepts a path string or an `(array, sample_rate)` tuple directly. Embedded audio is stored as 16-bit WAV
    bytes, so the request stays JSON-serialisable (base64).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    path: Path | None = None
    wav: bytes | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _one_source(self) -> AudioInput:
        if (self.path is None) == (self.wav is None):
            raise ValueError("give exactly one of path= or wav= (or use AudioInput.from_array)")
        if self.path is not None and not self.path.is_file():
            raise ValueError(f"audio file {str(self.path)!r} does not exist")
        return self

    @classmethod
    def from_array(cls, audio: Any, sample_rate: int, *, exact: bool = False) -> AudioInput:
        """Embed a numpy array (mono 1-D, or (channels, samples)) with its sample rate: as 16-bit WAV, or with
        `exact` as 32-bit float WAV, which keeps every sample as given (separating a generated track)."""
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        data = as_audio(audio, name="audio input")
        if exact:
            import io

            import soundfile

            buffer = io.BytesIO()
            soundfile.write(buffer, data.T, int(sample_rate), format="WAV", subtype="FLOAT")
            return cls(wav=buffer.getvalue())
        return cls(wav=encode(data, int(sample_rate), format_for(None, "wav")))

    def load(self) -> tuple[AudioArray, int]:
        """The audio as float32 (channels, samples) and its sample rate."""
        return load_audio(self.wav if self.wav is not None else os.fspath(self.path))  # type: ignore[arg-type]


class Adapter(BaseModel):
    """A style adapter (a LoRA) applied to the model for one request: its `source` and the `scale` it is applied at.

    `source` is a local folder or `.safetensors` file, or a Hugging Face hub id (`owner/name`, at `revision` when
    given). Its licence is a component of the result's licence (its card's `license:`, or your declaration:
    `LicenseRegistry.declare_adapter`, `[adapters."<source>"]` in the config); docs/adapters.md.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    source: str = Field(..., min_length=1, max_length=1000, description="a folder, a .safetensors file or a hub id")
    scale: float = Field(
        1.0, ge=-MAX_ADAPTER_SCALE, le=MAX_ADAPTER_SCALE, description="how strongly it applies (1: as trained)"
    )
    revision: str | None = Field(
        None, min_length=1, max_length=200, description="a hub branch, tag or commit (hub ids only)"
    )

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        check_text(value, "adapter source")
        if not value.strip() or value != value.strip():
            raise ValueError(f"adapter source {value!r} is empty or has spaces around it")
        return value

    @classmethod
    def parse(cls, text: str) -> Adapter:
        """An adapter from the command line's `SOURCE[:SCALE]` ("owner/style-lora:0.7", "./my-lora")."""
        source, colon, scale = text.rpartition(":")
        if colon and source:
            try:
                number = float(scale)
            except ValueError:
                return cls(source=text)  # not a number after the last colon: it belongs to the source
            return cls(source=source, scale=number)
        return cls(source=text)


def stem_name(value: str) -> str:
    """A stem's soundforge name ("Backing vocals" -> "backing_vocals"), refused when it is not one of `STEMS`."""
    name = value.strip().lower().replace(" ", "_").replace("-", "_")
    if name not in STEMS:
        raise ValueError(f"stem {value!r} is not one of {', '.join(STEMS)}")
    return name


def invalid_request(exc: ValidationError, *, prefix: str = "invalid request") -> InvalidRequestError:
    """One `InvalidRequestError` for pydantic's errors: every bad field named, no input echoed back.

    `details` holds (field, message) per problem, for callers that list them (manifests, the HTTP service).
    """
    details = [(_field_of(e), explain_validation_error(e)) for e in exc.errors(include_input=False)]
    text = "; ".join(f"{field}: {message}" if field else message for field, message in details)
    error = InvalidRequestError(f"{prefix}: {text}", field=details[0][0] if details and details[0][0] else None)
    error.details = details
    return error


def _field_of(error: Any) -> str:
    """The field a pydantic error is about: its location, or for a check across fields (a model validator, whose
    location is empty) the field the raised `InvalidRequestError` names."""
    located = ".".join(str(p) for p in error.get("loc", ()))
    if located:
        return located
    raised = (error.get("ctx") or {}).get("error")
    return getattr(raised, "field", None) or ""


def explain_validation_error(error: Any) -> str:
    """One pydantic error as a short sentence (unknown fields say where provider parameters go)."""
    if error["type"] == "extra_forbidden":
        return "unknown field (provider-specific parameters go in extra={...})"
    return str(error["msg"]).removeprefix("Value error, ")


def check_text(value: str, name: str) -> str:
    """Refuse text that cannot be written as UTF-8 (a lone surrogate such as "\\ud800", which JSON allows and
    Python makes of a non-UTF-8 byte in a command line): it would pass here and fail later, in a file's tags."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} holds a character that is not valid Unicode text ({value[exc.start]!r} at "
            f"position {exc.start}); check the text's encoding"
        ) from None
    return value


#: `extra` is kept in every record and sidecar: it may nest this deep and take this much room as JSON.
MAX_EXTRA_DEPTH = 32
MAX_EXTRA_BYTES = 64 * 1024


def _check_extra_depth(value: Any) -> None:
    """Refuse an `extra` nested deeper than `MAX_EXTRA_DEPTH` (walked without recursion, so a hostile depth is a
    clear error, never a RecursionError)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_EXTRA_DEPTH:
                raise ValueError(f"extra is nested more than {MAX_EXTRA_DEPTH} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _check_extra_size(value: Any) -> None:
    """Refuse an `extra` larger than `MAX_EXTRA_BYTES` as JSON (its text already checked)."""
    size = len(json.dumps(value, default=str, ensure_ascii=False).encode("utf-8"))
    if size > MAX_EXTRA_BYTES:
        raise ValueError(f"extra takes {size} bytes as JSON; at most {MAX_EXTRA_BYTES} are kept with a result")


def _check_extra(value: Any, path: str) -> None:
    """Provider parameters are written into records and tags too: the same text and number rules apply."""
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} is {value}; numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), f"{path} key")
            _check_extra(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_extra(item, f"{path}[{index}]")


def _coerce_audio(value: Any) -> Any:
    if value is None or isinstance(value, (AudioInput, dict)):
        return value
    if isinstance(value, (str, os.PathLike)):
        return AudioInput(path=Path(value))
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray):
        return AudioInput.from_array(value[0], int(value[1]))
    if isinstance(value, np.ndarray):
        raise ValueError("a bare array has no sample rate; pass (array, sample_rate)")
    return value


class _InvalidRequestOnCall(type(BaseModel)):  # type: ignore[misc]
    """Makes `GenerationRequest(...)` raise `InvalidRequestError` instead of pydantic's `ValidationError`.

    On the metaclass, not in `__init__`: a custom `__init__` would also run when the request is validated inside
    another model (the HTTP service's job body), where pydantic must see its own error to report the field.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise invalid_request(exc) from None


def content_key(parts: dict[str, Any]) -> str:
    """The content address of a call: sha256 of its parts as canonical JSON (the job journal's and the result
    cache's keys; `GenerationRequest.record()` is the request's part)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class GenerationRequest(BaseModel, metaclass=_InvalidRequestOnCall):
    """What to generate. Only `prompt` is required; unset fields use the backend's defaults.

    Args:
        prompt: text description of the audio.
        negative_prompt: what to steer away from (diffusion models).
        duration: length in seconds.
        seed: random seed; the same seed, request and engine give the same audio. None picks one and records it.
        num_outputs: how many variations to return.
        max_cost: the most the call may cost, in USD (docs/prices.md). A provider whose estimate is higher, or whose
            price is unknown, is refused before anything is sent; `auto` skips it. Local engines cost nothing.
        quality: "report" runs the quality gate (silence, clipping, DC offset, noise, a stuck loop, a take that
            stops early: `soundforge.audio.quality`), records its verdicts in `provenance.quality`; "retry" also makes
            a fresh take with a new seed while the gate fails, up to `quality_retries` (2) times, each rejected take
            (seed, failures, cost) recorded. Every take is a paid call where the provider charges.
        loop / loop_bars: a seamless loop of `loop_bars` bars (default: as many whole bars as fit in `duration`),
            from the provider's own loop mode where it has one, else cut by soundforge from a longer take at bar
            lines with its tail cross-faded into its head; loop points in provenance, tags and WAV `smpl`.
        sample_rate / channels: wanted output format, when the backend can honour it.
        temperature, top_k, top_p: sampling for token models (MusicGen, MAGNeT).
        guidance: classifier-free guidance scale (MusicGen's cfg_coef, diffusion cfg).
        steps: denoising steps (diffusion models).
        melody: audio whose melody conditions the output (MusicGen-melody).
        audio_prompt: audio to work on; `audio_prompt_mode` says what to do with it: "continuation" (extend it to
            `duration`), "variation" (transform it; `strength` says how much), "repaint" (regenerate `region`, keep
            the rest), "cover" (a new performance of it; `strength` is how closely it is followed), "extract" (one
            `stem` of it, e.g. "vocals").
        region: (start, end) seconds of the audio prompt that "repaint" regenerates.
        stem: the part "extract" returns ("vocals", "drums", "bass", ...; `soundforge.music.STEMS`).
        stems: also split the generated track into these stems (`soundforge.separate`: the provider's own
            extraction where its model has it, else Demucs); the result holds the mix, then one track per stem.
        watermark: embed AudioSeal's invisible watermark in every track, with a payload tied to its provenance
            (`soundforge.run.watermarking`; needs `soundforge[watermark]` and AudioSeal's weights in its cache).
        lyrics / instrumental / vocal_language: vocals control for providers that sing; lyrics may carry
            structure tags (`[verse]`, `[chorus]`, `[bridge]`); the language is an ISO 639 code ("en", "ja").
        bpm / key / time_signature: tempo, key ("A minor", "F# major", "Bbm") and metre ("3/4", "6/8"), stated
            once in one spelling (`soundforge.music`) and written into the saved files' tags.
        output_format / loudness: defaults for saving (format name, LUFS target).
        trim / fade_in / fade_out: edits for saving (seconds): a trim cut where the waveform crosses zero, fades
            (`soundforge.audio.edits`); batch and serve apply them to the files they write.
        adapters: style adapters (LoRAs) applied at generation time, each `Adapter(source, scale)` (a string is
            a source at scale 1); providers that load them: `soundforge providers`, docs/adapters.md. Each adapter's
            licence is part of the result's licence and its files' sha256 part of the provenance.
        extra: provider-specific parameters, validated by that backend.
    """

    # allow_inf_nan=False: NaN, Infinity and 1e999 (which JSON parsers read as inf) are refused like any bad number.
    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64", allow_inf_nan=False
    )

    prompt: str = Field(..., description="text description of the audio to generate")
    negative_prompt: str | None = None
    duration: float = Field(10.0, gt=0, le=MAX_DURATION_S, description="seconds")
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    num_outputs: int = Field(1, ge=1, le=MAX_OUTPUTS)
    max_cost: float | None = Field(None, ge=0, description="the most this call may cost, in USD; refused before it")
    quality: Literal["report", "retry"] | None = Field(
        None,
        description="run the quality gate (soundforge.audio.quality): record its verdicts, or also retry bad takes",
    )
    quality_retries: int | None = Field(None, ge=0, le=10, description="fresh takes quality='retry' may make (2)")
    loop: bool | None = Field(
        None,
        description="a seamless loop: a whole number of bars whose end runs into its start (soundforge.audio.loops)",
    )
    loop_bars: int | None = Field(None, ge=1, le=256, description="bars in the loop (default: as many as fit)")
    sample_rate: int | None = Field(None, ge=8000, le=192000)
    channels: Literal[1, 2] | None = None
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, ge=0, le=1)
    guidance: float | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1, le=1000)
    melody: AudioInput | None = None
    audio_prompt: AudioInput | None = None
    audio_prompt_mode: AudioPromptMode | None = None
    strength: float | None = Field(None, gt=0, le=1)
    region: tuple[float, float] | None = Field(None, description="(start, end) seconds of the audio prompt")
    stem: str | None = Field(None, description="the stem that audio_prompt_mode='extract' returns")
    stems: tuple[str, ...] | None = Field(
        None, description="also split the result into these stems (soundforge.separate), after the mix"
    )
    watermark: bool | None = Field(
        None, description="embed AudioSeal's invisible watermark in every track (soundforge.run.watermarking)"
    )
    lyrics: str | None = None
    instrumental: bool | None = None
    vocal_language: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    bpm: float | None = Field(None, ge=20, le=400, description="tempo in beats per minute")
    key: str | None = Field(None, description='musical key, e.g. "A minor", "F# major"')
    time_signature: str | None = Field(None, description='metre, e.g. "4/4", "3/4", "6/8"')
    output_format: Literal["wav", "flac", "ogg", "mp3"] | None = None
    loudness: float | None = Field(None, ge=MIN_LUFS, le=MAX_LUFS, description="LUFS target when saving")
    trim: float | None = Field(
        None,
        ge=MIN_TRIM_S,
        le=MAX_DURATION_S,
        description="when saving: cut to this many seconds at a zero crossing (at least 10 ms)",
    )
    fade_in: float | None = Field(None, ge=0, le=600, description="when saving: a fade-in of this many seconds")
    fade_out: float | None = Field(None, ge=0, le=600, description="when saving: a fade-out of this many seconds")
    adapters: tuple[Adapter, ...] | None = Field(
        None, description="style adapters (LoRAs) applied for this request, each with its scale (docs/adapters.md)"
    )
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> GenerationRequest:
        """Like pydantic's, raising `InvalidRequestError` for a bad request."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise invalid_request(exc) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> GenerationRequest:
        """Like pydantic's, raising `InvalidRequestError` for a bad request."""
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise invalid_request(exc) from None

    @field_validator("negative_prompt", "lyrics")
    @classmethod
    def _text(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else check_text(value, info.field_name)

    @field_validator("extra")
    @classmethod
    def _extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_extra_depth(value)
        _check_extra(value, "extra")
        _check_extra_size(value)
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, value: str) -> str:
        check_text(value, "prompt")
        text = value.strip()
        if not text:
            raise ValueError("prompt is empty; describe the audio you want, e.g. 'calm piano at 70 BPM'")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
        return text

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else normalise_key(value)

    @field_validator("time_signature")
    @classmethod
    def _time_signature(cls, value: str | None) -> str | None:
        return None if value is None else normalise_time_signature(value)

    @field_validator("stem")
    @classmethod
    def _stem(cls, value: str | None) -> str | None:
        return None if value is None else stem_name(value)

    @field_validator("stems")
    @classmethod
    def _stems(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        names = tuple(stem_name(v) for v in value)
        if not names or len(set(names)) != len(names):
            raise ValueError("stems names each stem once, at least one")
        return names

    @field_validator("region")
    @classmethod
    def _region(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 <= value[0] < value[1]:
            raise ValueError(f"region {value} must be (start, end) seconds with 0 <= start < end")
        return value

    @field_validator("adapters", mode="before")
    @classmethod
    def _adapter_items(cls, value: Any) -> Any:
        if isinstance(value, (str, Adapter, dict)):
            value = [value]  # one adapter given alone
        if isinstance(value, (list, tuple)):
            return [Adapter(source=item) if isinstance(item, str) else item for item in value]
        return value

    @field_validator("adapters")
    @classmethod
    def _adapters(cls, value: tuple[Adapter, ...] | None) -> tuple[Adapter, ...] | None:
        if value is None:
            return None
        if not value or len(value) > MAX_ADAPTERS:
            raise ValueError(f"adapters holds 1 to {MAX_ADAPTERS} adapters, not {len(value)}")
        sources = [(a.source, a.revision) for a in value]
        if len(set(sources)) != len(sources):
            raise ValueError("adapters names the same adapter twice; give it once, with the scale you want")
        return value

    @field_validator("melody", "audio_prompt", mode="before")
    @classmethod
    def _audio(cls, value: Any) -> Any:
        return _coerce_audio(value)

    @model_validator(mode="after")
    def _consistent(self) -> GenerationRequest:
        if self.strength is not None and self.audio_prompt is None:
            raise ValueError("strength applies to an audio_prompt; give audio_prompt= too")
        if self.audio_prompt_mode is not None and self.audio_prompt is None:
            raise ValueError("audio_prompt_mode needs an audio_prompt")
        if self.lyrics is not None and self.instrumental:
            raise ValueError("lyrics and instrumental=True contradict each other")
        if self.vocal_language is not None and self.instrumental:
            raise ValueError("vocal_language and instrumental=True contradict each other")
        mode = self.audio_prompt_mode
        if (self.region is None) != (mode != "repaint"):
            raise ValueError("audio_prompt_mode='repaint' and region=(start, end) go together; give both or neither")
        if (self.stem is None) != (mode != "extract"):
            raise ValueError("audio_prompt_mode='extract' and stem= go together; give both, e.g. stem='vocals'")
        if self.strength is not None and mode in ("continuation", "repaint", "extract"):
            raise ValueError(f"strength applies to 'variation' and 'cover', not to audio_prompt_mode={mode!r}")
        if self.trim is not None and not self.loop and self.trim > self.duration:
            # Every result is `duration` long (a loop, whole bars long, refuses a trim for its own reason).
            raise InvalidRequestError(
                f"trim={self.trim:g} s is longer than the {self.duration:g} s asked for, so it would cut nothing",
                field="trim",
                hint=f"give a trim up to {self.duration:g} s, or leave it out",
            )
        if self.loop_bars is not None and not self.loop:
            raise ValueError("loop_bars applies to a loop; give loop=True too")
        if self.stems is not None and (self.num_outputs != 1 or mode == "extract"):
            raise ValueError("stems splits one generated track: use num_outputs=1 and no audio_prompt_mode='extract'")
        if self.seed is not None and self.seed + self.num_outputs > MAX_SEED + 1:
            # Output i is made with seed + i and records it: each must be a seed a request can give back.
            raise InvalidRequestError(
                f"with num_outputs={self.num_outputs} the outputs use seeds {self.seed} to "
                f"{self.seed + self.num_outputs - 1}, past the largest seed ({MAX_SEED}): give a seed up to "
                f"{MAX_SEED + 1 - self.num_outputs}",
                field="seed",
            )
        Edits.of(self).check(self.duration, loop=bool(self.loop))  # the rule saving applies, checked up front
        return self

    def record(self) -> dict[str, Any]:
        """The request as JSON for provenance and job keys, with embedded audio replaced by its hash."""
        record = self.model_dump(mode="json", exclude={"melody", "audio_prompt"}, exclude_none=True)
        for name in ("melody", "audio_prompt"):
            value = getattr(self, name)
            if value is not None:
                blob = value.wav if value.wav is not None else Path(value.path).read_bytes()
                record[name] = {
                    "sha256": hashlib.sha256(blob).hexdigest(),
                    **({"path": str(value.path)} if value.path is not None else {}),
                }
        return record

    def set_fields(self) -> set[str]:
        """Fields the caller gave (not defaults), minus the always-present ones; backends check these."""
        return {
            name
            for name in self.model_fields_set
            if name not in {"prompt", "duration", "extra"} and getattr(self, name) is not None
        } | ({"extra"} if self.extra else set())


def build_request(prompt_or_request: str | GenerationRequest | None, params: Mapping[str, Any]) -> GenerationRequest:
    """A validated request from a prompt plus keyword fields, or from a request updated with keyword fields; the
    prompt may come as a keyword too (`generate(prompt="rain")` raised a TypeError).

    Raises InvalidRequestError (a ValueError) naming each bad field.
    """
    if prompt_or_request is None:
        if "prompt" not in params:
            raise InvalidRequestError("give a prompt: generate('rain on a tin roof', ...)", field="prompt")
        return GenerationRequest(**params)
    if isinstance(prompt_or_request, GenerationRequest):
        if not params:
            return prompt_or_request
        data = {k: getattr(prompt_or_request, k) for k in prompt_or_request.model_fields_set}
        return GenerationRequest(**{**data, **params})
    if not isinstance(prompt_or_request, str):
        raise InvalidRequestError("the first argument must be a prompt string or a GenerationRequest", field="prompt")
    return GenerationRequest(prompt=prompt_or_request, **params)
