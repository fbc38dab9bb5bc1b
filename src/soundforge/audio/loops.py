"""Seamless loops: a whole number of bars cut from a longer take, the audio that follows the cut faded into its head.

For a provider without a loop mode of its own, soundforge asks for more than the loop (a bar of lead-in, the loop,
a beat to cross-fade, and room for the take's own ending), finds the bar grid (the request's `bpm` and metre, the
tempo the provider reports, or one estimated from the audio; the downbeat from the onsets), and cuts
`[start, start + L)` at a downbeat. The `X` samples that followed the cut are cross-faded (equal power) into the
first `X` of the loop, so playing sample `L - 1` and then sample `0` hears what the take played there: the wrap is
as continuous as any other moment of the take. The loop points travel in the provenance (`loop`), in the file's
tags (`LOOPSTART`, `LOOPLENGTH`: the convention game engines read from Ogg and FLAC comments) and, in WAV, in a
`smpl` chunk that samplers read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidRequestError
from ..music import parse_time_signature
from ..request import GenerationRequest
from . import AudioArray

#: What is generated beyond the loop: a bar of lead-in before it, and this much after the cross-fade, so the
#: take's own ending (a fade-out, a final chord) stays out of the loop.
TAIL_SECONDS = 2.0
#: The tempo assumed when planning a loop whose tempo is only known after generation (the slowest bar it allows).
SLOWEST_BPM = 60.0
#: Tempi the estimator considers, and the hop of its onset envelope.
BPM_RANGE = (60.0, 200.0)
_HOP = 512


@dataclass(frozen=True)
class LoopPlan:
    """What to ask the provider for, and how to cut it."""

    duration: float  # seconds asked for of the loop (when `bars` is None: the loop is the most bars that fit)
    bars: int | None
    sixteenths_per_bar: int
    bpm: float | None
    generate_seconds: float

    def bar_seconds(self, bpm: float) -> float:
        return self.sixteenths_per_bar * 15.0 / bpm


def plan(request: GenerationRequest) -> LoopPlan:
    """The take to generate for a looped request (`request.loop`)."""
    meter = parse_time_signature(request.time_signature or "4/4")
    bpm = request.bpm
    slow_bar = meter.sixteenths_per_bar * 15.0 / (bpm or SLOWEST_BPM)
    loop_seconds = request.loop_bars * slow_bar if request.loop_bars else request.duration
    take = slow_bar + loop_seconds + slow_bar / 2 + TAIL_SECONDS
    return LoopPlan(request.duration, request.loop_bars, meter.sixteenths_per_bar, bpm, take)


def take_request(request: GenerationRequest, loop: LoopPlan) -> GenerationRequest:
    """The request the provider gets: the longer take, without the loop fields (the loop is made here)."""
    return request.model_copy(update={"duration": round(loop.generate_seconds, 3), "loop": None, "loop_bars": None})


@dataclass(frozen=True)
class Loop:
    """A cut loop and where it came from."""

    audio: AudioArray
    start: int  # in the take
    bars: int
    bpm: float
    crossfade: int
    tempo_source: str

    def record(self, sample_rate: int) -> dict[str, Any]:
        """The provenance entry: loop points in the result (the whole of it), bars, tempo, where it was cut."""
        return {
            "start": 0,
            "end": int(self.audio.shape[1]),
            "bars": self.bars,
            "bpm": round(self.bpm, 3),
            "tempo_source": self.tempo_source,
            "cut_from_seconds": round(self.start / sample_rate, 4),
            "crossfade_seconds": round(self.crossfade / sample_rate, 4),
            "made_by": "soundforge",
        }


def cut(audio: AudioArray, sample_rate: int, loop: LoopPlan, reported_bpm: float | None = None) -> Loop:
    """Cut the loop out of a take (see the module docstring). `reported_bpm` is the tempo the provider says it
    played (the synthesizer's, whose bar grid starts at its first sample)."""
    if loop.bpm is not None:
        bpm, source = loop.bpm, "request"
    elif reported_bpm:
        bpm, source = float(reported_bpm), "provider"
    else:
        bpm, source = estimate_tempo(audio, sample_rate), "estimated"
    bar = loop.bar_seconds(bpm) * sample_rate
    bars = loop.bars or max(1, math.floor(loop.duration * sample_rate / bar + 1e-9))
    length = round(bars * bar)
    # A beat, at most half a second and half the loop (a bar of 1/16 is shorter than a beat: the fade was longer
    # than the loop it fades into, a broadcasting ValueError).
    crossfade = max(1, min(round(min(60.0 / bpm, 0.5) * sample_rate), length // 2))
    phase = 0.0 if reported_bpm else downbeat(audio, sample_rate, bar)
    # Past the bar of lead-in where the take allows: a take's first bar is often a count-in or a fade-in.
    start = round(phase + bar) if phase + bar + length + crossfade <= audio.shape[1] else round(phase)
    if start + length + crossfade > audio.shape[1]:
        raise InvalidRequestError(
            f"the take ({audio.shape[1] / sample_rate:.2f} s) is too short for {bars} bar(s) at {bpm:.1f} BPM",
            field="loop_bars",
            hint="ask for fewer bars, or give the tempo (bpm) so the take can be planned for it",
        )
    out = np.array(audio[:, start : start + length], dtype=np.float32)
    tail = audio[:, start + length : start + length + crossfade]
    ramp = (np.arange(crossfade, dtype=np.float64) + 0.5) / crossfade * (math.pi / 2)
    head_gain, tail_gain = np.sin(ramp), np.cos(ramp)
    out[:, :crossfade] = (out[:, :crossfade] * head_gain + tail * tail_gain).astype(np.float32)
    return Loop(out, start, bars, bpm, crossfade, source)


def onset_envelope(audio: AudioArray, sample_rate: int) -> np.ndarray:
    """Spectral flux of the mono mix (half-wave rectified, log-compressed), one value per `_HOP` samples."""
    mono = np.asarray(audio, dtype=np.float64).mean(axis=0)
    size = 2048
    if mono.size < size * 2:
        return np.zeros(1)
    frames = np.lib.stride_tricks.sliding_window_view(mono, size)[::_HOP] * np.hanning(size)
    spectrum = np.log1p(100 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(0.0, np.diff(spectrum, axis=0)).sum(axis=1)
    return np.concatenate([[0.0], flux - flux.mean()])


def estimate_tempo(audio: AudioArray, sample_rate: int) -> float:
    """Quarter-note tempo from the autocorrelation of the onset envelope (60-200 BPM, a mild preference for
    tempi near 120 resolving octave doubts)."""
    envelope = onset_envelope(audio, sample_rate)
    rate = sample_rate / _HOP
    correlation = np.correlate(envelope, envelope, mode="full")[envelope.size - 1 :]
    best, best_score = 120.0, -np.inf
    for bpm in np.arange(BPM_RANGE[0], BPM_RANGE[1], 0.25):
        lag = 60.0 / bpm * rate
        low = int(lag)
        if low + 1 >= correlation.size:
            continue
        value = correlation[low] + (lag - low) * (correlation[low + 1] - correlation[low])
        score = value * math.exp(-0.5 * (math.log2(bpm / 120.0) / 0.9) ** 2)
        if score > best_score:
            best, best_score = float(bpm), score
    return best


def downbeat(audio: AudioArray, sample_rate: int, bar: float) -> float:
    """Where the bar grid starts (samples, within the first bar): the offset whose bar lines carry the most
    onset energy."""
    envelope = onset_envelope(audio, sample_rate)
    hops = bar / _HOP
    best, best_energy = 0.0, -np.inf
    for offset in np.arange(0.0, hops, 0.25):
        points = np.arange(offset, envelope.size - 1, hops).astype(int)
        energy = float(envelope[points].sum()) if points.size else 0.0
        if energy > best_energy:
            best, best_energy = offset, energy
    return best * _HOP
