"""A quality gate: checks a generated take for what makes it unusable before anyone has to listen.

Each check looks at the audio alone (float32, channels first) and says pass or fail with the measured value:

| check | fails when |
|---|---|
| `silence` | the peak is under -60 dBFS, or 90 % of 50 ms windows are |
| `clipping` | more than 0.1 % of samples sit at full scale (|x| >= 0.999) |
| `dc_offset` | a channel's mean is beyond ±0.05 |
| `noise` | the spectrum is as flat as noise (mean spectral flatness of 2048-sample frames over 0.4) |
| `degenerate` | a stuck loop or collapsed spectrum: it repeats with a period under 0.5 s (autocorrelation > 0.98) |
| `short` | the last quarter or more of the duration asked for is silent (the model stopped early) |

`GenerationRequest.quality = "report"` records the verdicts in `provenance.quality`; `"retry"` also makes a fresh
attempt with a new seed, up to `quality_retries` times, recording every rejected take (its seed, failures and cost).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

SILENCE_DBFS = -60.0
CLIP_LEVEL, CLIP_FRACTION = 0.999, 0.001
DC_LIMIT = 0.05
FLATNESS_LIMIT = 0.4
LOOP_CORRELATION, LOOP_MAX_PERIOD_S = 0.98, 0.5
SHORT_FRACTION = 0.25
_ANALYSIS_RATE = 8000
_MAX_ANALYSED_S = 30.0


class Check(BaseModel):
    """One check's verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    passed: bool
    value: float
    limit: float
    detail: str = ""


class QualityReport(BaseModel):
    """Every check of one take, and whether the take passes them all."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        """The names of the checks that failed."""
        return [c.name for c in self.checks if not c.passed]


def _db(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else -math.inf


def _mono(audio: np.ndarray[Any, Any], rate: int) -> np.ndarray[Any, Any]:
    """Mono at the analysis rate (block means: an anti-aliased enough decimation for these measures), ≤ 30 s."""
    mono = np.asarray(audio, dtype=np.float64).mean(axis=0)[: int(_MAX_ANALYSED_S * rate)]
    step = max(1, rate // _ANALYSIS_RATE)
    usable = len(mono) // step * step
    return np.asarray(mono[:usable].reshape(-1, step).mean(axis=1)) if step > 1 else mono


def _window_levels(audio: np.ndarray[Any, Any], rate: int) -> np.ndarray[Any, Any]:
    """Peak of each 50 ms window (over channels), in dBFS."""
    size = max(1, int(0.05 * rate))
    peaks = np.abs(audio).max(axis=0)
    count = len(peaks) // size
    if count == 0:
        return np.array([_db(float(peaks.max(initial=0.0)))])
    blocks = peaks[: count * size].reshape(count, size).max(axis=1)
    with np.errstate(divide="ignore"):
        return np.asarray(20 * np.log10(np.maximum(blocks, 1e-12)))


def check(audio: np.ndarray[Any, Any], rate: int, duration: float | None = None) -> QualityReport:
    """Run every check on a take."""
    audio = np.asarray(audio, dtype=np.float32)
    levels = _window_levels(audio, rate)
    peak = float(np.abs(audio).max(initial=0.0))
    quiet = float(np.mean(levels < SILENCE_DBFS))
    checks = [
        Check(
            name="silence",
            passed=_db(peak) >= SILENCE_DBFS and quiet < 0.9,
            value=round(quiet, 4),
            limit=0.9,
            detail=f"peak {_db(peak):.1f} dBFS; {quiet:.0%} of 50 ms windows under {SILENCE_DBFS:g} dBFS",
        )
    ]
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    checks.append(Check(name="clipping", passed=clipped <= CLIP_FRACTION, value=round(clipped, 6), limit=CLIP_FRACTION))
    offset = float(np.abs(audio.mean(axis=1)).max(initial=0.0))
    checks.append(Check(name="dc_offset", passed=offset <= DC_LIMIT, value=round(offset, 5), limit=DC_LIMIT))
    mono = _mono(audio, rate)
    checks.append(_flatness(mono))
    checks.append(_stuck(mono))
    asked = duration if duration is not None else audio.shape[1] / rate
    tail = _silent_tail(levels) * 0.05
    short = tail / asked if asked > 0 else 0.0
    checks.append(
        Check(
            name="short",
            passed=short < SHORT_FRACTION,
            value=round(short, 4),
            limit=SHORT_FRACTION,
            detail=f"the last {tail:.1f} s of {asked:g} s are silent",
        )
    )
    return QualityReport(checks=checks)


def _flatness(mono: np.ndarray[Any, Any]) -> Check:
    size = 2048
    frames = len(mono) // size
    if frames == 0:
        return Check(name="noise", passed=True, value=0.0, limit=FLATNESS_LIMIT, detail="too short to measure")
    blocks = mono[: frames * size].reshape(frames, size) * np.hanning(size)
    power = np.abs(np.fft.rfft(blocks, axis=1)) ** 2 + 1e-20
    loud = power.sum(axis=1) > 1e-6 * size  # silent frames say nothing about the spectrum
    if not loud.any():
        return Check(name="noise", passed=True, value=0.0, limit=FLATNESS_LIMIT, detail="silent")
    power = power[loud]
    flatness = np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)
    value = float(flatness.mean())
    return Check(name="noise", passed=value <= FLATNESS_LIMIT, value=round(value, 4), limit=FLATNESS_LIMIT)


def _stuck(mono: np.ndarray[Any, Any]) -> Check:
    """The best normalised autocorrelation at a lag of 20 ms-0.5 s: near 1, the take repeats one short cycle."""
    signal = mono - mono.mean()
    energy = float(np.dot(signal, signal))
    if len(signal) < _ANALYSIS_RATE or energy <= 1e-9:
        return Check(name="degenerate", passed=True, value=0.0, limit=LOOP_CORRELATION, detail="nothing to measure")
    n = 1 << (2 * len(signal) - 1).bit_length()
    spectrum = np.fft.rfft(signal, n)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum), n)[: int(LOOP_MAX_PERIOD_S * _ANALYSIS_RATE) + 1]
    lags = np.arange(len(correlation))
    # Normalised by the overlap at each lag, so a long lag is not favoured by having fewer samples.
    normalised = correlation / energy * len(signal) / np.maximum(len(signal) - lags, 1)
    window = normalised[int(0.02 * _ANALYSIS_RATE) :]
    best = float(window.max())
    period = (int(np.argmax(window)) + int(0.02 * _ANALYSIS_RATE)) / _ANALYSIS_RATE
    return Check(
        name="degenerate",
        passed=best <= LOOP_CORRELATION,
        value=round(best, 4),
        limit=LOOP_CORRELATION,
        detail=f"best self-similarity {best:.3f} at a period of {period * 1000:.0f} ms",
    )


def _silent_tail(levels: np.ndarray[Any, Any]) -> int:
    """How many 50 ms windows at the end are silent."""
    loud = np.nonzero(levels >= SILENCE_DBFS)[0]
    return len(levels) if len(loud) == 0 else len(levels) - 1 - int(loud[-1])
