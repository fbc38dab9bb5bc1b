"""`synth`: the built-in offline synthesizer. No weights, no network, no torch; CC0 output.

It reads tempo ("128 BPM", "slow"), key and mode ("in A minor", "dark") and genre words from the
prompt (a request's `bpm`, `key` and `time_signature` override them exactly), then renders drums,
bass, chords and a lead line, through the named sections of `extra={"sections": [...]}` when given
(an intro of hats and chords, verses without the lead, full choruses, a bridge without drums...).
The same request and seed give bit-identical audio; a different seed gives a different piece.
It is the default provider on a fresh machine and the workhorse of fast tests.
"""

from __future__ import annotations

import numpy as np

from ...audio import ALGORITHMIC_MEDIA
from ...capabilities import Capabilities, ModelInfo
from ...errors import InvalidRequestError
from ...request import GenerationRequest
from ..base import Backend, RawGeneration, RawTrack, RunContext, checked_extra, default_seed
from .render import SECTION_PARTS, render
from .theory import plan_for

DEFAULT_SAMPLE_RATE = 44100
_CAPABILITIES = Capabilities(
    min_duration=1.0,
    max_duration=600.0,
    sample_rates=(22050, 24000, 32000, 44100, 48000),
    channels=(1, 2),
    fields=frozenset({"seed", "num_outputs", "sample_rate", "channels", "bpm", "key", "time_signature", "extra"}),
    max_outputs=16,
    seed_deterministic=True,
    cost_hint="free, local, faster than real time",
)


class SynthBackend(Backend):
    """The embedded procedural synthesizer."""

    settings_keys = frozenset()

    name = "synth"
    description = "built-in offline synthesizer (drums, bass, chords, lead); CC0"
    default_model = "default"
    cpu_bound = True

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(id="default", description="procedural arrangement from prompt words", capabilities=_CAPABILITIES)
        ]

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        sections = song_sections(request)
        sample_rate = request.sample_rate or DEFAULT_SAMPLE_RATE
        channels = request.channels or 2
        base_seed = default_seed(request)
        tracks = []
        for index in range(request.num_outputs):
            context.progress("render", index, request.num_outputs)
            seed = base_seed + index
            rng = np.random.default_rng(seed)
            plan = plan_for(
                request.prompt,
                int(rng.integers(1 << 30)),
                bpm=request.bpm,
                key=request.key,
                time_signature=request.time_signature,
                sections=sections,
            )
            stereo = render(plan, request.duration, sample_rate, rng)
            audio = stereo.mean(axis=0, keepdims=True) if channels == 1 else stereo
            tracks.append(
                RawTrack(
                    audio=audio.astype(np.float32),
                    sample_rate=sample_rate,
                    seed=seed,
                    parameters={
                        "tempo_bpm": plan.tempo,
                        "key": _key_name(plan.tonic, plan.minor),
                        "time_signature": str(plan.meter),
                        **({"sections": list(sections)} if sections else {}),
                        "style": plan.style.name,
                        "sample_rate": sample_rate,
                        "channels": channels,
                        "duration": request.duration,
                    },
                )
            )
        context.progress("render", request.num_outputs, request.num_outputs)
        return RawGeneration(
            tracks=tracks, engine_versions={"numpy": np.__version__}, digital_source_type=ALGORITHMIC_MEDIA
        )


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
