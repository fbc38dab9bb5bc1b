"""`synth`: the built-in offline synthesizer. No weights, no network, no torch; CC0 output.

It reads tempo ("128 BPM", "slow"), key and mode ("in A minor", "dark"), metre ("in 3/4", "waltz") and genre
words from the prompt (a request's `bpm`, `key` and `time_signature` override them exactly), then renders drums,
bass, chords and a lead line, through the named sections of `extra={"sections": [...]}` when given
(an intro of hats and chords, verses without the lead, full choruses, a bridge without drums...).
The same request and seed give bit-identical audio; a different seed gives a different piece.
It is the default provider on a fresh machine and the workhorse of fast tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...audio import ALGORITHMIC_MEDIA
from ...capabilities import Capabilities, ModelInfo
from ...errors import InvalidRequestError
from ...request import GenerationRequest
from ..base import (
    AudioChunk,
    Backend,
    ChunkAssembler,
    ChunkStream,
    RawGeneration,
    RawTrack,
    RunContext,
    checked_extra,
    default_seed,
)
from .render import RENDER_BLOCK, SECTION_PARTS, Score, score
from .theory import plan_for

DEFAULT_SAMPLE_RATE = 44100
#: Audio per chunk when streaming (`[providers.synth] stream_chunk_seconds`).
STREAM_CHUNK_SECONDS = 0.5
_CAPABILITIES = Capabilities(
    min_duration=1.0,
    max_duration=600.0,
    sample_rates=(22050, 24000, 32000, 44100, 48000),
    channels=(1, 2),
    fields=frozenset({"seed", "num_outputs", "sample_rate", "channels", "bpm", "key", "time_signature", "extra"}),
    max_outputs=16,
    seed_deterministic=True,
    streaming=True,
    cost_hint="free, local, faster than real time",
)
#: The synthesizer's one model.
_MODELS = (ModelInfo(id="default", description="procedural arrangement from prompt words", capabilities=_CAPABILITIES),)


class SynthBackend(Backend):
    """The embedded procedural synthesizer."""

    settings_keys = frozenset({"stream_chunk_seconds"})

    name = "synth"
    description = "built-in offline synthesizer (drums, bass, chords, lead); CC0"
    default_model = "default"
    cpu_bound = True

    def models(self) -> list[ModelInfo]:
        return list(_MODELS)  # built once: ModelInfo is frozen, and routing asks for it for every request

    def check(self, request: GenerationRequest, model: str) -> None:
        """The common checks, and the synthesizer's own `extra` keys and sections, before any work."""
        super().check(request, model)
        song_sections(request)

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        tracks, seed = [], default_seed(request)
        for index in range(request.num_outputs):
            context.progress("render", index, request.num_outputs)
            piece, track = self._piece(request, seed + index)
            audio = np.empty((track.channels, piece.n), dtype=np.float32)
            for offset, block in piece.blocks(RENDER_BLOCK):
                audio[:, offset : offset + block.shape[1]] = track.shaped(block)
            tracks.append(track.raw(audio))
        context.progress("render", request.num_outputs, request.num_outputs)
        return self._raw(tracks)

    def stream(self, request: GenerationRequest, model: str, context: RunContext) -> ChunkStream:
        """Render block by block (`stream_chunk_seconds`, default 0.5 s): the chunks are the very samples
        `generate` makes for the same request and seed, because the mix is computed per sample (`Score`)."""
        seconds = float(self.settings.get("stream_chunk_seconds", STREAM_CHUNK_SECONDS))
        assembler, tracks, seed = ChunkAssembler(), [], default_seed(request)
        for index in range(request.num_outputs):
            piece, track = self._piece(request, seed + index)
            block = max(1, round(seconds * track.sample_rate))
            assembler.expect(index, piece.n)
            for offset, mixed in piece.blocks(block):
                context.progress("render", index * piece.n + offset, request.num_outputs * piece.n)
                yield assembler.add(AudioChunk(track.shaped(mixed), offset, track.sample_rate, index))
            tracks.append(track.raw(assembler.track(index)))
        context.progress("render", request.num_outputs, request.num_outputs)
        return self._raw(tracks)

    def _piece(self, request: GenerationRequest, seed: int) -> tuple[Score, _Output]:
        """The output of a request made with `seed`: its score (nothing mixed yet), and how its samples are
        shaped and recorded."""
        sections = song_sections(request)
        sample_rate = request.sample_rate or DEFAULT_SAMPLE_RATE
        channels = request.channels or 2
        rng = np.random.default_rng(seed)
        plan = plan_for(
            request.prompt,
            int(rng.integers(1 << 30)),
            bpm=request.bpm,
            key=request.key,
            time_signature=request.time_signature,
            sections=sections,
        )
        parameters = {
            "tempo_bpm": plan.tempo,
            "key": _key_name(plan.tonic, plan.minor),
            "time_signature": str(plan.meter),
            **({"sections": list(sections)} if sections else {}),
            "style": plan.style.name,
            "sample_rate": sample_rate,
            "channels": channels,
            "duration": request.duration,
        }
        return score(plan, request.duration, sample_rate, rng), _Output(seed, sample_rate, channels, parameters)

    @staticmethod
    def _raw(tracks: list[RawTrack]) -> RawGeneration:
        return RawGeneration(
            tracks=tracks, engine_versions={"numpy": np.__version__}, digital_source_type=ALGORITHMIC_MEDIA
        )


@dataclass(frozen=True)
class _Output:
    """One output's facts: its seed, format and recorded parameters."""

    seed: int
    sample_rate: int
    channels: int
    parameters: dict[str, Any]

    def shaped(self, stereo: Any) -> Any:
        """A mixed stereo block in the output's channel count, as float32."""
        audio = stereo.mean(axis=0, keepdims=True) if self.channels == 1 else stereo
        return audio.astype(np.float32)

    def raw(self, audio: Any) -> RawTrack:
        return RawTrack(audio=audio, sample_rate=self.sample_rate, seed=self.seed, parameters=self.parameters)


def song_sections(request: GenerationRequest) -> tuple[str, ...]:
    """`extra["sections"]`: the named sections the piece runs through, in order (`SECTION_PARTS` names them)."""
    extra = checked_extra(request, {"sections": list}, provider="synth")
    sections = tuple(str(name).strip().lower() for name in extra.get("sections", ()))
    unknown = sorted(set(sections) - set(SECTION_PARTS))
    if unknown:
        raise InvalidRequestError(
            f"unknown synth section(s): {', '.join(unknown)}",
            field="extra",
            provider="synth",
            hint=f"sections are {', '.join(SECTION_PARTS)}",
        )
    return sections


_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def _key_name(tonic: int, minor: bool) -> str:
    return f"{_NAMES[tonic]} {'minor' if minor else 'major'}"
