"""The synthesizer: turns a `MusicPlan` into a stereo arrangement (drums, bass, chords, lead) with numpy.

Band-limited wavetables keep it fast (a minute of stereo audio renders in well under a second) and
free of aliasing; every random choice comes from one seeded generator, so a seed fixes the piece.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ...music import TimeSignature
from .theory import PROGRESSIONS_MAJOR, PROGRESSIONS_MINOR, MusicPlan, chord_notes, scale

Buffer = npt.NDArray[np.float64]
TABLE_SIZE = 4096
STEPS_PER_BAR = 16


@lru_cache(maxsize=256)
def _wavetable(shape: str, harmonics: int) -> Buffer:
    """One cycle of `shape` with at most `harmonics` partials (band-limited), peak-normalised."""
    phase = np.arange(TABLE_SIZE) * (2 * np.pi / TABLE_SIZE)
    wave = np.zeros(TABLE_SIZE)
    for k in range(1, max(1, harmonics) + 1):
        if shape == "saw" or (shape == "square" and k % 2 == 1):
            wave += np.sin(k * phase) / k
        elif shape == "organ" and k in (1, 2, 3, 4, 6, 8):
            wave += np.sin(k * phase) * {1: 1.0, 2: 0.8, 3: 0.6, 4: 0.4, 6: 0.25, 8: 0.2}[k]
        elif shape == "piano":
            wave += np.sin(k * phase) * (0.6 ** (k - 1))
        elif shape == "sine" and k == 1:
            wave += np.sin(phase)
    peak = np.max(np.abs(wave))
    return wave / peak if peak > 0 else wave


def midi_to_hz(note: float) -> float:
    """Equal-tempered frequency of a MIDI note number (A4 = 69 = 440 Hz)."""
    return float(440.0 * 2.0 ** ((note - 69) / 12))


def _oscillator(shape: str, freq: float, n: int, sr: int, brightness: float) -> Buffer:
    nyquist_harmonics = int((sr / 2) / freq)
    harmonics = max(1, min(nyquist_harmonics, int(24 * brightness)))
    table = _wavetable(shape, harmonics)
    index = (np.arange(n) * (freq * TABLE_SIZE / sr)).astype(np.int64) & (TABLE_SIZE - 1)
    return np.asarray(table[index], dtype=np.float64)


def _envelope(n: int, sr: int, attack: float, decay: float, sustain: float, release: float, gate: int) -> Buffer:
    """ADSR: `gate` samples held, then released; always ends at zero (no clicks)."""
    env = np.empty(n)
    a = max(1, int(attack * sr))
    d = max(1, int(decay * sr))
    gate = min(gate, n)
    t = np.arange(n)
    env[:] = sustain
    env[: min(a, n)] = t[: min(a, n)] / a
    dec_end = min(a + d, n)
    if dec_end > a:
        env[a:dec_end] = 1.0 - (1.0 - sustain) * (t[a:dec_end] - a) / d
    level_at_gate = env[gate - 1] if gate > 0 else 0.0
    if gate < n:
        rel = t[gate:] - gate
        env[gate:] = level_at_gate * np.maximum(0.0, 1.0 - rel / max(1, int(release * sr)))
    env[-min(n, 32) :] *= np.linspace(1.0, 0.0, min(n, 32))
    return env


@dataclass(frozen=True)
class Voice:
    """How one instrument sounds."""

    shape: str
    attack: float
    decay: float
    sustain: float
    release: float
    detune_cents: float = 0.0
    fm_ratio: float = 0.0  # > 0: FM bell instead of a wavetable


VOICES = {
    "pad": Voice("saw", 0.35, 0.5, 0.7, 0.6, detune_cents=9.0),
    "piano": Voice("piano", 0.004, 0.9, 0.25, 0.25),
    "organ": Voice("organ", 0.01, 0.05, 0.9, 0.08),
    "square": Voice("square", 0.01, 0.15, 0.6, 0.1),
    "saw": Voice("saw", 0.01, 0.2, 0.6, 0.12, detune_cents=6.0),
    "pluck": Voice("saw", 0.002, 0.25, 0.0, 0.1),
    "bell": Voice("sine", 0.002, 1.2, 0.0, 0.4, fm_ratio=3.5),
    "sub": Voice("sine", 0.01, 0.3, 0.8, 0.08),
}


def _note(voice: Voice, midi: float, length_s: float, sr: int, brightness: float) -> Buffer:
    gate = int(length_s * sr)
    n = gate + int(voice.release * sr) + 1
    freq = midi_to_hz(midi)
    if voice.fm_ratio > 0:
        t = np.arange(n) / sr
        index = 2.5 * brightness * np.exp(-t * 4.0)
        tone = np.sin(2 * np.pi * freq * t + index * np.sin(2 * np.pi * freq * voice.fm_ratio * t))
    elif voice.detune_cents:
        spread = 2 ** (voice.detune_cents / 1200)
        tone = 0.5 * (
            _oscillator(voice.shape, freq * spread, n, sr, brightness)
            + _oscillator(voice.shape, freq / spread, n, sr, brightness)
        )
    else:
        tone = _oscillator(voice.shape, freq, n, sr, brightness)
    return tone * _envelope(n, sr, voice.attack, voice.decay, voice.sustain, voice.release, gate)


class Track:
    """A stereo bus that notes and hits are mixed into."""

    def __init__(self, n: int) -> None:
        self.left = np.zeros(n)
        self.right = np.zeros(n)

    def add(self, sound: Buffer, start: int, gain: float, pan: float) -> None:
        """Mix `sound` at sample `start`; pan -1 (left) … 1 (right), constant power."""
        if start >= len(self.left) or start < 0:
            return
        end = min(len(self.left), start + len(sound))
        angle = (pan + 1) * math.pi / 4
        chunk = sound[: end - start] * gain
        self.left[start:end] += chunk * math.cos(angle)
        self.right[start:end] += chunk * math.sin(angle)


def kick_hz(tonic: int) -> float:
    """The kick's resting pitch: the key's root in the lowest octave that is above 40 Hz (41-78 Hz)."""
    hz = midi_to_hz(24 + tonic)  # C1 = 32.7 Hz
    return hz * 2 if hz < 40 else hz


def _drum_kit(sr: int, rng: np.random.Generator, tonic: int) -> dict[str, Buffer]:
    def t(seconds: float) -> Buffer:
        return np.arange(int(seconds * sr)) / sr

    tk = t(0.45)
    # The pitch sweeps down onto the key's root, so the kick sits in the key instead of on one fixed ~45 Hz.
    kick_freq = kick_hz(tonic) + 110 * np.exp(-tk * 60)
    kick = np.sin(2 * np.pi * np.cumsum(kick_freq) / sr) * np.exp(-tk * 7)
    kick[: int(0.003 * sr)] += rng.standard_normal(int(0.003 * sr)) * 0.3
    ts = t(0.25)
    snare_noise = np.diff(rng.standard_normal(len(ts) + 1)) * 0.5
    snare = snare_noise * np.exp(-ts * 18) + 0.5 * np.sin(2 * np.pi * 190 * ts) * np.exp(-ts * 25)
    th = t(0.06)
    hat = np.diff(rng.standard_normal(len(th) + 2), n=2) * 0.25 * np.exp(-th * 70)
    to = t(0.3)
    open_hat = np.diff(rng.standard_normal(len(to) + 2), n=2) * 0.2 * np.exp(-to * 12)
    clap_t = t(0.2)
    clap_env = sum(np.exp(-np.maximum(clap_t - d, 0) * 60) * (clap_t >= d) for d in (0.0, 0.011, 0.022))
    clap = np.diff(rng.standard_normal(len(clap_t) + 1)) * 0.35 * clap_env
    return {"kick": kick, "snare": snare, "hat": hat, "open_hat": open_hat, "clap": clap}


DRUM_PATTERNS: dict[str, dict[str, list[int]]] = {
    "four_on_floor": {"kick": [0, 4, 8, 12], "clap": [4, 12], "hat": [2, 6, 10, 14], "open_hat": []},
    "backbeat": {"kick": [0, 8, 10], "snare": [4, 12], "hat": [0, 2, 4, 6, 8, 10, 12, 14]},
    "half_time": {"kick": [0, 10], "snare": [8], "hat": [0, 4, 8, 12]},
    "breakbeat": {"kick": [0, 10], "snare": [4, 12], "hat": [0, 2, 4, 6, 8, 10, 12, 14]},
    "none": {},
}


def meter_pattern(drums: str, meter: TimeSignature) -> dict[str, list[int]]:
    """A style's drum pattern in a metre other than 4/4 (4/4 uses `DRUM_PATTERNS` as written): the kick on the
    downbeat, the backbeat on the other felt beats, hats on the offbeats."""
    if drums == "none":
        return {}
    spb, pulse = meter.sixteenths_per_bar, meter.pulse_sixteenths
    beats = list(range(0, spb, pulse))
    offbeats = [b + pulse // 2 for b in beats if pulse > 1]
    if drums == "four_on_floor":
        return {"kick": beats, "clap": beats[1::2], "hat": offbeats, "open_hat": []}
    if drums == "half_time":
        return {"kick": [0], "snare": [beats[len(beats) // 2]] if len(beats) > 1 else [], "hat": beats}
    # backbeat, breakbeat: a waltz-like bar of three beats answers the downbeat on both others
    backbeat = beats[1:] if len(beats) == 3 else beats[1::2]
    return {"kick": [0], "snare": backbeat, "hat": list(range(0, spb, 2))}


def groove(
    base: dict[str, list[int]], rng: np.random.Generator, steps_per_bar: int = STEPS_PER_BAR
) -> dict[str, list[int]]:
    """The style's pattern varied by the seed: extra kicks on off-steps, a denser or sparser hat, ghost snares.

    Each seed gets its own groove over the same style, so two seeds differ in rhythm, not only in notes.
    """
    pattern = {name: list(steps) for name, steps in base.items()}

    def inside(steps: tuple[int, ...]) -> list[int]:
        return [s for s in steps if s < steps_per_bar]

    if "kick" in pattern:
        free = [s for s in inside((3, 6, 7, 11, 14, 15)) if s not in pattern["kick"]]
        count = int(rng.integers(0, 3))
        if free:
            pattern["kick"] += [int(s) for s in rng.choice(free, size=min(count, len(free)), replace=False)]
    if pattern.get("hat"):
        variant = int(rng.integers(3))
        if variant == 1:  # sixteenths here and there
            pattern["hat"] += [s for s in range(1, steps_per_bar, 2) if rng.random() < 0.5]
        elif variant == 2:  # sparser: drop some
            pattern["hat"] = [s for s in pattern["hat"] if rng.random() < 0.7] or pattern["hat"][:1]
    if "snare" in pattern and rng.random() < 0.6:
        ghosts = inside((2, 7, 9, 15))
        pattern["ghost"] = [
            int(s) for s in rng.choice(ghosts, size=min(int(rng.integers(1, 3)), len(ghosts)), replace=False)
        ]
    if "open_hat" in pattern and rng.random() < 0.5:
        pattern["open_hat"] = [s for s in inside((2, 6, 10, 14)) if s not in pattern.get("hat", [])] or [
            inside((14,))[0] if inside((14,)) else steps_per_bar - 2
        ]
    return {name: sorted(set(steps)) for name, steps in pattern.items()}


DRUM_GAIN = {"kick": 0.9, "snare": 0.45, "ghost": 0.12, "clap": 0.45, "hat": 0.22, "open_hat": 0.15}
DRUM_PAN = {"kick": 0.0, "snare": 0.05, "ghost": 0.05, "clap": -0.05, "hat": -0.3, "open_hat": 0.3}
#: The sample each part plays (a ghost note is a quiet snare).
DRUM_SOUND = {"ghost": "snare"}

#: What plays in each named section of a song (`MusicPlan.sections`): "drums" is the kit, "hat" the hats alone.
SECTION_PARTS: dict[str, frozenset[str]] = {
    "intro": frozenset({"hat", "chords"}),
    "verse": frozenset({"drums", "bass", "chords"}),
    "pre-chorus": frozenset({"drums", "bass", "chords", "lead"}),
    "chorus": frozenset({"drums", "bass", "chords", "lead"}),
    "drop": frozenset({"drums", "bass", "chords", "lead"}),
    "bridge": frozenset({"bass", "chords", "lead"}),
    "break": frozenset({"chords"}),
    "solo": frozenset({"drums", "bass", "chords", "lead"}),
    "outro": frozenset({"hat", "chords"}),
}
_EVERYTHING = frozenset({"drums", "hat", "bass", "chords", "lead"})


def section_parts(sections: tuple[str, ...], bars: int) -> list[frozenset[str]]:
    """The parts playing in each bar: the sections share the bars in order, as evenly as whole bars allow."""
    if not sections:
        return [_EVERYTHING] * bars
    return [SECTION_PARTS[sections[min(len(sections) - 1, bar * len(sections) // bars)]] for bar in range(bars)]


def render(plan: MusicPlan, duration: float, sr: int, rng: np.random.Generator) -> Buffer:
    """Render `duration` seconds of the plan as a (2, samples) float64 array peaking at -1 dBFS."""
    n = round(duration * sr)
    style = plan.style
    beat = 60.0 / plan.tempo
    step = beat / 4
    spb = plan.meter.sixteenths_per_bar
    pulse = plan.meter.pulse_sixteenths
    common = spb == STEPS_PER_BAR and pulse == 4  # 4/4 (and 2/2's bar): the patterns as written
    bars = math.ceil(duration / (spb * beat / 4)) + 1
    mix = Track(n)
    brightness = style.brightness

    def step_start(bar: int, s: int) -> int:
        swing = style.swing * step if s % 2 == 1 else 0.0
        return round(((bar * spb + s) * step + swing) * sr)

    progressions = PROGRESSIONS_MINOR if plan.minor else PROGRESSIONS_MAJOR
    progression = progressions[int(rng.integers(len(progressions)))]
    intro_bars = 4 if bars > 12 else 0

    # The bars each section plays in (everything plays everywhere without sections); the last, partial bar and
    # the spare one the loop renders past the end belong to the last section.
    heard = max(1, bars - 1)
    playing = section_parts(plan.sections, heard)
    playing += [playing[-1]] * (bars - heard)

    # Drums: the pattern every bar, a fill-like variation every 8th bar.
    kit = _drum_kit(sr, rng, plan.tonic)
    base = DRUM_PATTERNS[style.drums] if common else meter_pattern(style.drums, plan.meter)
    pattern = groove(base, rng, spb)
    for bar in range(bars):
        for name, steps in pattern.items():
            hits = list(steps)
            if name == "snare" and bar % 8 == 7:
                hits += [spb - 3, spb - 2, spb - 1]
            part = "hat" if name in ("hat", "open_hat") else "drums"
            audible = part in playing[bar] or (part == "hat" and "drums" in playing[bar])
            for s in hits:
                velocity = 0.85 + 0.15 * rng.random()  # drawn for every hit, so sections change no other choice
                if audible:
                    mix.add(
                        kit[DRUM_SOUND.get(name, name)], step_start(bar, s), DRUM_GAIN[name] * velocity, DRUM_PAN[name]
                    )

    # Chords: one per bar from the progression.
    chord_voice = VOICES[style.chords]
    bass_voice = VOICES[style.bass]
    for bar in range(bars):
        degree = progression[bar % len(progression)]
        notes = chord_notes(plan, degree, 48 + 12, size=4 if style.name == "jazz" else 3)
        beats = range(0, spb, pulse)
        if style.chords == "pad":
            chord_hits = [(0, spb)]
        elif style.chords == "organ":
            chord_hits = [(2, 1), (6, 1), (10, 1), (14, 1)] if common else [(b + pulse // 2, 1) for b in beats]
        else:
            chord_hits = [(0, 6), (6, 4), (10, 6)] if common else [(b, pulse) for b in beats]
        for s, length in chord_hits if "chords" in playing[bar] else ():
            for i, midi in enumerate(notes):
                sound = _note(chord_voice, midi, length * step * 0.95, sr, brightness)
                mix.add(sound, step_start(bar, s), 0.11, -0.4 + 0.4 * i)

        # Bass: the chord root.
        root = notes[0] - 24
        if not common:
            bass_hits = [(b, max(1, pulse - 1)) for b in beats]
        elif style.drums == "four_on_floor":
            bass_hits = [(2, 2), (6, 2), (10, 2), (14, 2)]
        elif style.bass == "sub":
            bass_hits = [(0, 6), (8, 6)]
        else:
            bass_hits = [(0, 3), (6, 2), (8, 3), (11, 2)]
        for s, length in bass_hits if "bass" in playing[bar] else ():
            mix.add(_note(bass_voice, root, length * step * 0.9, sr, brightness * 0.6), step_start(bar, s), 0.32, 0.0)

    # Lead: a two-bar motif per four-bar phrase, repeated with a varied answer; chord tones on strong steps.
    lead_voice = VOICES[style.lead]
    steps_in_scale = scale(plan)
    for phrase_start in range(intro_bars, bars, 4):
        motif = _motif(rng, spb)
        for half in range(2):
            bar0 = phrase_start + 2 * half
            for s, length, degree_offset in motif:
                bar = bar0 + s // spb
                if bar >= bars or "lead" not in playing[bar]:
                    continue
                chord_degree = progression[bar % len(progression)]
                degree = chord_degree + degree_offset + (2 if half == 1 and s >= spb + spb // 2 else 0)
                midi = 72 + plan.tonic + steps_in_scale[degree % 7] + 12 * (degree // 7)
                sound = _note(lead_voice, midi, length * step * 0.9, sr, brightness)
                mix.add(sound, step_start(bar, s % spb), 0.16, 0.25)

    stereo = np.stack([mix.left, mix.right])
    stereo = np.tanh(stereo * 1.2) / np.tanh(1.2)  # gentle saturation, glues the mix
    fade = min(n // 4, int(0.02 * sr) if duration < 8 else int(1.5 * sr))
    if fade > 0:
        stereo[:, -fade:] *= np.linspace(1.0, 0.0, fade)
        head = min(n, int(0.005 * sr))
        stereo[:, :head] *= np.linspace(0.0, 1.0, head)
    peak = float(np.max(np.abs(stereo)))
    if peak > 0:
        stereo *= 10 ** (-1 / 20) / peak
    return np.asarray(stereo, dtype=np.float64)


def _motif(rng: np.random.Generator, steps_per_bar: int = STEPS_PER_BAR) -> list[tuple[int, int, int]]:
    """A two-bar rhythm with scale-degree offsets from the chord root: (step, length, offset)."""
    positions, s = [], 0
    while s < 2 * steps_per_bar:
        length = int(rng.choice([2, 2, 4, 4, 6, 8]))
        if rng.random() < 0.8:
            strong = s % 4 == 0
            offset = int(rng.choice([0, 2, 4]) if strong else rng.choice([1, 2, 3, 5, -1]))
            positions.append((s, length, offset))
        s += length
    return positions
