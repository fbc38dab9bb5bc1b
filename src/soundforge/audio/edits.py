"""Edits applied when a track is saved: a trim to a length, cut where the waveform crosses zero, and fades.

Saving options, like the loudness target: the generated samples (and their hash in the provenance) stay as made;
the file's own `AUDIO_SHA256` covers the edited samples, and its `EDITS` tag says what was done. A loop is never
edited: a trim or a fade would break its wrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidRequestError
from . import AudioArray

#: How far before the asked length a zero crossing is looked for; past it, the cut gets a 5 ms fade instead.
ZERO_CROSSING_WINDOW = 0.01
_CUT_FADE = 0.005


@dataclass(frozen=True)
class Edits:
    """What to do to a track's samples on saving (seconds; None: nothing)."""

    trim: float | None = None
    fade_in: float | None = None
    fade_out: float | None = None

    @classmethod
    def of(cls, source: Any) -> Edits:
        """The edits a request (or anything with `trim`, `fade_in`, `fade_out`) asks for."""
        return cls(getattr(source, "trim", None), getattr(source, "fade_in", None), getattr(source, "fade_out", None))

    def asked(self) -> list[str]:
        """The names of the edits asked for, in the order they are applied."""
        return [name for name in ("trim", "fade_in", "fade_out") if getattr(self, name) is not None]

    def __bool__(self) -> bool:
        return bool(self.asked())

    def check(self, duration: float, *, loop: bool = False) -> None:
        """Refuse edits that do not fit the track, before anything is written."""
        for name, value in (("trim", self.trim), ("fade_in", self.fade_in), ("fade_out", self.fade_out)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise InvalidRequestError(f"{name} must be a non-negative number of seconds", field=name)
        if not self:
            return
        if loop:
            raise InvalidRequestError(
                "a loop is saved as made: a trim or a fade would break its wrap", field=self.asked()[0]
            )
        length = min(duration, self.trim) if self.trim is not None else duration
        if self.trim is not None and self.trim <= 0:
            raise InvalidRequestError("trim must be longer than 0 s", field="trim")
        faded = (self.fade_in or 0) + (self.fade_out or 0)
        if faded and faded >= length - 1e-9:  # fades that fill the whole file leave nothing heard
            raise InvalidRequestError(
                f"fades of {faded:g} s do not fit in {length:g} s of audio (they must leave some of it unfaded)",
                field="fade_out" if self.fade_out is not None else "fade_in",
            )

    def apply(self, audio: AudioArray, sample_rate: int) -> tuple[AudioArray, str]:
        """The edited samples and a note of what was done (for the `EDITS` tag)."""
        notes = []
        out = np.array(audio, dtype=np.float32)
        if self.trim is not None and round(self.trim * sample_rate) < out.shape[1]:
            end, at_zero = zero_crossing_before(out, round(self.trim * sample_rate), sample_rate)
            out = out[:, :end]
            if not at_zero:
                out = fade(out, round(_CUT_FADE * sample_rate), at_end=True)
            notes.append(
                f"trimmed to {end / sample_rate:.4f} s " + ("at a zero crossing" if at_zero else "with a 5 ms fade")
            )
        if self.fade_in:
            out = fade(out, round(self.fade_in * sample_rate), at_end=False)
            notes.append(f"fade in {self.fade_in:g} s")
        if self.fade_out:
            out = fade(out, round(self.fade_out * sample_rate), at_end=True)
            notes.append(f"fade out {self.fade_out:g} s")
        return out, "; ".join(notes)


def zero_crossing_before(audio: AudioArray, end: int, sample_rate: int) -> tuple[int, bool]:
    """The cut point at or before `end` where the mono mix changes sign (the cut then falls between a sample and
    its sign change: no step), within `ZERO_CROSSING_WINDOW`; (end, False) when there is none."""
    mono = audio[:, : end + 1].mean(axis=0)
    lowest = max(1, end - round(ZERO_CROSSING_WINDOW * sample_rate))
    window = mono[lowest - 1 : end + 1]
    crossings = np.nonzero(np.signbit(window[:-1]) != np.signbit(window[1:]))[0]
    if crossings.size == 0:
        return end, False
    return lowest + int(crossings[-1]), True


def fade(audio: AudioArray, samples: int, *, at_end: bool) -> AudioArray:
    """A quarter-sine fade over `samples` at the start (in) or the end (out)."""
    samples = min(samples, audio.shape[1])
    if samples <= 0:
        return audio
    gain = np.sin((np.arange(samples, dtype=np.float64) + 0.5) / samples * (math.pi / 2)).astype(np.float32)
    out = audio.copy()
    if at_end:
        out[:, -samples:] *= gain[::-1]
    else:
        out[:, :samples] *= gain
    return out
