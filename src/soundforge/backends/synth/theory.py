"""Reading a prompt into musical choices: tempo, key, mode, style. Pure functions, no audio."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, replace

from ...music import TimeSignature, parse_key, parse_time_signature

COMMON_TIME = TimeSignature(4, 4)

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


@dataclass(frozen=True)
class Style:
    """Arrangement choices for one genre family."""

    name: str
    tempo: float
    drums: str  # "four_on_floor", "backbeat", "half_time", "breakbeat", "none"
    bass: str  # "sub", "saw", "pluck"
    chords: str  # "pad", "piano", "organ"
    lead: str  # "square", "pluck", "bell", "saw"
    swing: float = 0.0
    brightness: float = 1.0


STYLES: dict[str, Style] = {
    "house": Style("house", 124, "four_on_floor", "saw", "organ", "pluck"),
    "techno": Style("techno", 130, "four_on_floor", "sub", "pad", "saw", brightness=0.9),
    "synthwave": Style("synthwave", 110, "backbeat", "saw", "pad", "saw"),
    "lofi": Style("lofi", 85, "backbeat", "sub", "piano", "bell", swing=0.18, brightness=0.6),
    "hiphop": Style("hiphop", 92, "backbeat", "sub", "piano", "pluck", swing=0.12, brightness=0.7),
    "rock": Style("rock", 120, "backbeat", "pluck", "organ", "square"),
    "ambient": Style("ambient", 70, "none", "sub", "pad", "bell", brightness=0.5),
    "cinematic": Style("cinematic", 80, "half_time", "sub", "pad", "bell", brightness=0.7),
    "dnb": Style("dnb", 172, "breakbeat", "sub", "pad", "pluck"),
    "jazz": Style("jazz", 112, "backbeat", "pluck", "piano", "bell", swing=0.3, brightness=0.8),
    "pop": Style("pop", 116, "backbeat", "pluck", "piano", "square"),
    "chiptune": Style("chiptune", 140, "backbeat", "pluck", "organ", "square", brightness=1.2),
}

# Words that pick a style, first match wins (longer phrases first).
STYLE_WORDS: list[tuple[str, str]] = [
    ("drum and bass", "dnb"),
    ("drum & bass", "dnb"),
    ("dnb", "dnb"),
    ("jungle", "dnb"),
    ("lo-fi", "lofi"),
    ("lofi", "lofi"),
    ("lo fi", "lofi"),
    ("chillhop", "lofi"),
    ("hip hop", "hiphop"),
    ("hip-hop", "hiphop"),
    ("hiphop", "hiphop"),
    ("trap", "hiphop"),
    ("boom bap", "hiphop"),
    ("synthwave", "synthwave"),
    ("retrowave", "synthwave"),
    ("80s", "synthwave"),
    ("outrun", "synthwave"),
    ("techno", "techno"),
    ("trance", "techno"),
    ("house", "house"),
    ("disco", "house"),
    ("edm", "house"),
    ("dance", "house"),
    ("club", "house"),
    ("ambient", "ambient"),
    ("drone", "ambient"),
    ("meditation", "ambient"),
    ("soundscape", "ambient"),
    ("cinematic", "cinematic"),
    ("orchestral", "cinematic"),
    ("film score", "cinematic"),
    ("epic", "cinematic"),
    ("trailer", "cinematic"),
    ("jazz", "jazz"),
    ("swing", "jazz"),
    ("bossa", "jazz"),
    ("rock", "rock"),
    ("guitar", "rock"),
    ("punk", "rock"),
    ("metal", "rock"),
    ("chiptune", "chiptune"),
    ("8-bit", "chiptune"),
    ("8 bit", "chiptune"),
    ("video game", "chiptune"),
    ("pop", "pop"),
]

TEMPO_WORDS: list[tuple[str, float]] = [
    ("very slow", 0.7),
    ("slow", 0.8),
    ("relaxed", 0.9),
    ("calm", 0.85),
    ("mellow", 0.9),
    ("chill", 0.9),
    ("upbeat", 1.12),
    ("energetic", 1.15),
    ("driving", 1.1),
    ("fast", 1.2),
    ("frantic", 1.3),
]
MINOR_WORDS = (
    "minor",
    "sad",
    "dark",
    "melancholic",
    "melancholy",
    "moody",
    "tense",
    "tension",
    "haunting",
    "somber",
    "sombre",
    "mysterious",
    "eerie",
    "gloomy",
)
MAJOR_WORDS = ("major", "happy", "bright", "joyful", "uplifting", "cheerful", "sunny", "triumphant", "hopeful")

_BPM = re.compile(r"(\d{2,3}(?:\.\d+)?)\s*(?:bpm|beats per minute)", re.IGNORECASE)
_KEY = re.compile(
    r"\b(?:in\s+(?:the\s+key\s+of\s+)?)?([a-g])\s*(#|♯|b|♭|sharp|flat)?\s*"
    r"(major|minor|maj|min|m)\b",
    re.IGNORECASE,
)
_KEY_ONLY = re.compile(r"\bin\s+([a-g])\s*(#|♯|b|♭|sharp|flat)?\b", re.IGNORECASE)
#: A metre written in the prompt ("in 3/4", "6/8 groove"); a fraction that is no metre ("24/7") is left alone.
_METER = re.compile(r"(?<![\d/])(\d{1,2})\s*/\s*(\d{1,2})(?![\d/])")
#: Words that name a metre.
METER_WORDS = (("waltz", "3/4"), ("jig", "6/8"))


@dataclass(frozen=True)
class MusicPlan:
    """Everything the renderer needs to know, derived from the prompt (and the seed for unset choices)."""

    tempo: float
    tonic: int  # pitch class 0-11
    minor: bool
    style: Style
    meter: TimeSignature = COMMON_TIME
    #: Named sections in order ("intro", "verse", "chorus", ...), sharing the piece's bars; () plays everything.
    sections: tuple[str, ...] = ()


def _pitch_class(letter: str, accidental: str | None) -> int:
    return parse_key(letter + (accidental or "")).pitch_class


def plan_for(
    prompt: str,
    choose: int,
    *,
    bpm: float | None = None,
    key: str | None = None,
    time_signature: str | None = None,
    sections: tuple[str, ...] = (),
) -> MusicPlan:
    """The plan for a request: tempo, key, metre and sections it states exactly, the rest read from the prompt."""
    plan = replace(plan_from_prompt(prompt, choose), sections=sections)
    if bpm is not None:
        plan = replace(plan, tempo=float(bpm))
    if key is not None:
        stated = parse_key(key)
        plan = replace(plan, tonic=stated.pitch_class, minor=stated.minor)
    if time_signature is not None:
        plan = replace(plan, meter=parse_time_signature(time_signature))
    return plan


def plan_from_prompt(prompt: str, choose: int) -> MusicPlan:
    """Read tempo, key, mode and style words from `prompt`; `choose` (from the seed) fills what it leaves open."""
    text = prompt.lower()
    style = next(
        (STYLES[name] for word, name in STYLE_WORDS if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)), None
    )
    if style is None:
        style = list(STYLES.values())[choose % len(STYLES)] if "random" in text else STYLES["pop"]
    bpm_match = _BPM.search(prompt)
    if bpm_match:
        tempo = min(max(float(bpm_match.group(1)), 40.0), 240.0)
    else:
        factor = next((f for word, f in TEMPO_WORDS if re.search(rf"\b{word}\b", text)), 1.0)
        tempo = round(style.tempo * factor)
    key_match = _KEY.search(prompt)
    if key_match:
        tonic = _pitch_class(key_match.group(1), key_match.group(2))
        minor = key_match.group(3).lower() in ("minor", "min", "m")
    else:
        only = _KEY_ONLY.search(prompt)
        tonic = _pitch_class(only.group(1), only.group(2)) if only else (choose * 7) % 12
        if any(re.search(rf"\b{w}\b", text) for w in MINOR_WORDS):
            minor = True
        elif any(re.search(rf"\b{w}\b", text) for w in MAJOR_WORDS):
            minor = False
        else:
            minor = style.name in ("lofi", "cinematic", "dnb", "techno", "synthwave") or (
                bool(choose & 1) and style.name not in ("pop", "chiptune", "house")
            )
    return MusicPlan(tempo=tempo, tonic=tonic, minor=minor, style=style, meter=_meter_from_prompt(prompt, text))


def _meter_from_prompt(prompt: str, text: str) -> TimeSignature:
    """The metre the prompt writes ("3/4") or names ("waltz"); common time otherwise."""
    for match in _METER.finditer(prompt):
        with contextlib.suppress(ValueError):
            return parse_time_signature(f"{match.group(1)}/{match.group(2)}")
    named = next((meter for word, meter in METER_WORDS if re.search(rf"\b{word}\b", text)), None)
    return parse_time_signature(named) if named else COMMON_TIME


# Chord progressions as scale degrees (0-based), per mode.
PROGRESSIONS_MAJOR = [(0, 4, 5, 3), (0, 5, 3, 4), (3, 4, 0, 5), (0, 3, 4, 3), (5, 3, 0, 4)]
PROGRESSIONS_MINOR = [(0, 5, 2, 6), (0, 3, 6, 2), (0, 5, 3, 4), (0, 6, 5, 6), (0, 3, 4, 0)]


def scale(plan: MusicPlan) -> tuple[int, ...]:
    """Semitone offsets of the plan's scale."""
    return MINOR if plan.minor else MAJOR


def chord_notes(plan: MusicPlan, degree: int, root_midi: int, size: int = 3) -> list[int]:
    """MIDI notes of the diatonic chord on `degree`, stacked in thirds from `root_midi`'s octave."""
    steps = scale(plan)
    notes = []
    for i in range(size):
        d = degree + 2 * i
        notes.append(root_midi + plan.tonic + steps[d % 7] + 12 * (d // 7))
    return notes
