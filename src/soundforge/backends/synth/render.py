"""The synthesizer: turns a `MusicPlan` into a stereo arrangement (drums, bass, chords, lead) with numpy.

Band-limited wavetables keep it fast (a minute of stereo audio renders in well under a second) and
free of aliasing; every random choice comes from one seeded generator, so a seed fixes the piece.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial

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


def _note_length(voice: Voice, length_s: float, sr: int) -> int:
    """Samples a note held `length_s` seconds sounds for, its release included."""
    return int(length_s * sr) + int(voice.release * sr) + 1


def _deferred_note(
    voice: Voice, midi: float, length_s: float, sr: int, brightness: float
) -> tuple[Callable[[], Buffer], int]:
    """A note to synthesise when the mix reaches it, and its length in samples."""
    return partial(_note, voice, midi, length_s, sr, brightness), _note_length(voice, length_s, sr)


def _note(voice: Voice, midi: float, length_s: float, sr: int, brightness: float) -> Buffer:
    gate = int(length_s * sr)
    n = _note_length(voice, length_s, sr)
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


@dataclass(frozen=True)
class Event:
    """One note or hit of the score: where it starts, how long it sounds, its gain and pan, and its samples (a
    buffer, or a function that makes it when the mix first reaches it)."""

    start: int
    length: int
    gain: float
    pan: float
    sound: Buffer | Callable[[], Buffer]

    def samples(self) -> Buffer:
        """The event's samples (made now when they were deferred)."""
        return self.sound() if callable(self.sound) else self.sound


class Score:
    """The events of a piece in mixing order, with the length and fades of the track they are mixed into.

    The mix is a sum of events per sample (always in the order they were made) followed by per-sample shaping
    (saturation, fades, a fixed ceiling), so any span of it can be rendered on its own: rendering in blocks gives
    the same samples as rendering the whole at once, bit for bit, whatever the block size. That is what lets the
    synthesizer stream. A score is mixed once: its events are made as the mix reaches them.
    """

    def __init__(self, n: int, sr: int, duration: float, segments: Iterator[tuple[int, list[Event]]]) -> None:
        self.n = n
        #: (first sample, events) pairs in order; no event of a segment starts before its first sample.
        self._segments = segments
        self.fade_out = min(n // 4, int(0.02 * sr) if duration < 8 else int(1.5 * sr))
        self.fade_in = min(n, int(0.005 * sr)) if self.fade_out > 0 else 0

    def blocks(self, block: int) -> Iterator[tuple[int, Buffer]]:
        """The finished mix as (offset, (2, samples) float64 block) pairs of `block` samples (the last shorter).

        An event's samples are made when the first block it sounds in is mixed and dropped after its last, so
        memory stays at a few blocks' worth however long the piece is.
        """
        block = max(1, block)
        pending = next(self._segments, None)
        sounding: list[tuple[Event, list[Buffer]]] = []  # in the order made; the list holds the samples once made
        for b0 in range(0, self.n, block):
            b1 = min(self.n, b0 + block)
            while pending is not None and pending[0] < b1:
                sounding += [(event, []) for event in pending[1] if event.start < self.n]
                pending = next(self._segments, None)
            left, right = np.zeros(b1 - b0), np.zeros(b1 - b0)
            still: list[tuple[Event, list[Buffer]]] = []
            for event, made in sounding:
                end = min(self.n, event.start + event.length)
                if event.start < b1:
                    if not made:
                        made.append(event.samples())
                    lo, hi = max(b0, event.start), min(b1, end)
                    angle = (event.pan + 1) * math.pi / 4
                    piece = made[0][lo - event.start : hi - event.start] * event.gain
                    left[lo - b0 : hi - b0] += piece * math.cos(angle)
                    right[lo - b0 : hi - b0] += piece * math.sin(angle)
                if end > b1:
                    still.append((event, made))
            sounding = still
            yield b0, self._shape(np.stack([left, right]), b0)

    def _shape(self, mix: Buffer, offset: int) -> Buffer:
        """Saturation, the fades and the output ceiling: all per sample, so a block is shaped on its own."""
        out = CEILING * np.tanh(mix * DRIVE)
        index = np.arange(offset, offset + mix.shape[1])
        if self.fade_out > 0:
            tail = index >= self.n - self.fade_out
            if tail.any():
                out[:, tail] *= (self.n - 1 - index[tail]) / max(1, self.fade_out - 1)
            head = index < self.fade_in
            if head.any():
                out[:, head] *= index[head] / max(1, self.fade_in - 1)
        return np.asarray(out, dtype=np.float64)


#: The mix goes through tanh(DRIVE * x) scaled to CEILING (-1 dBFS): the same gentle saturation for every
#: block, so no pass over the whole track (a peak search) is needed before the first sample can be heard.
CEILING = 10 ** (-1 / 20)
DRIVE = 1.2
#: Samples mixed at a time by `render`: small buffers stay in the CPU's cache (rendering ten minutes in one
#: buffer was several times slower than in blocks of this size on the 2-core reference machine).
RENDER_BLOCK = 32768


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
    """Render `duration` seconds of the plan as a (2, samples) float64 array under a -1 dBFS ceiling."""
    piece = score(plan, duration, sr, rng)
    stereo = np.empty((2, piece.n))
    for offset, block in piece.blocks(RENDER_BLOCK):
        stereo[:, offset : offset + block.shape[1]] = block
    return stereo


def score(plan: MusicPlan, duration: float, sr: int, rng: np.random.Generator) -> Score:
    """The notes and hits of `duration` seconds of the plan, made bar by bar as `Score.blocks` reaches them (so
    the first block of a ten-minute piece costs no more than that of a short one). The same plan and generator
    state give the same score."""
    n = round(duration * sr)
    style = plan.style
    beat = 60.0 / plan.tempo
    step = beat / 4
    spb = plan.meter.sixteenths_per_bar
    pulse = plan.meter.pulse_sixteenths
    common = spb == STEPS_PER_BAR and pulse == 4  # 4/4 (and 2/2's bar): the patterns as written
    bars = math.ceil(duration / (spb * beat / 4)) + 1
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

    kit = _drum_kit(sr, rng, plan.tonic)
    base = DRUM_PATTERNS[style.drums] if common else meter_pattern(style.drums, plan.meter)
    pattern = groove(base, rng, spb)
    # The hits' velocities and the lead's motifs have a generator each, so bars can be made one at a time.
    velocities = np.random.default_rng(int(rng.integers(1 << 62)))
    motifs = np.random.default_rng(int(rng.integers(1 << 62)))
    chord_voice, bass_voice, lead_voice = VOICES[style.chords], VOICES[style.bass], VOICES[style.lead]
    steps_in_scale = scale(plan)

    def drums(bar: int) -> Iterator[Event]:
        """The pattern every bar, a fill-like variation every 8th bar."""
        for name, steps in pattern.items():
            hits = list(steps)
            if name == "snare" and bar % 8 == 7:
                hits += [spb - 3, spb - 2, spb - 1]
            part = "hat" if name in ("hat", "open_hat") else "drums"
            audible = part in playing[bar] or (part == "hat" and "drums" in playing[bar])
            for s in hits:
                velocity = 0.85 + 0.15 * velocities.random()  # drawn for every hit: sections change no other choice
                if audible:
                    sound = kit[DRUM_SOUND.get(name, name)]
                    yield Event(step_start(bar, s), len(sound), DRUM_GAIN[name] * velocity, DRUM_PAN[name], sound)

    def harmony(bar: int) -> Iterator[Event]:
        """One chord per bar from the progression, and the bass on its root."""
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
                note, samples = _deferred_note(chord_voice, midi, length * step * 0.95, sr, brightness)
                yield Event(step_start(bar, s), samples, 0.11, -0.4 + 0.4 * i, note)
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
            note, samples = _deferred_note(bass_voice, root, length * step * 0.9, sr, brightness * 0.6)
            yield Event(step_start(bar, s), samples, 0.32, 0.0, note)

    def lead(phrase_start: int) -> Iterator[Event]:
        """A two-bar motif per four-bar phrase, repeated with a varied answer; chord tones on strong steps."""
        motif = _motif(motifs, spb)
        for half in range(2):
            bar0 = phrase_start + 2 * half
            for s, length, degree_offset in motif:
                bar = bar0 + s // spb
                if bar >= bars or "lead" not in playing[bar]:
                    continue
                chord_degree = progression[bar % len(progression)]
                degree = chord_degree + degree_offset + (2 if half == 1 and s >= spb + spb // 2 else 0)
                midi = 72 + plan.tonic + steps_in_scale[degree % 7] + 12 * (degree // 7)
                note, samples = _deferred_note(lead_voice, midi, length * step * 0.9, sr, brightness)
                yield Event(step_start(bar, s % spb), samples, 0.16, 0.25, note)

    def bar_by_bar() -> Iterator[tuple[int, list[Event]]]:
        for bar in range(bars):
            events = [*drums(bar), *harmony(bar)]
            if bar >= intro_bars and (bar - intro_bars) % 4 == 0:
                events += lead(bar)
            yield step_start(bar, 0), events

    return Score(n, sr, duration, bar_by_bar())


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
