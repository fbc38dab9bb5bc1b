"""Musical facts a request can state: key, time signature, the sections of a lyric sheet.

One spelling for each, so every backend, the tags and the provenance agree: a key is "A minor" or "F# major"
(tonic with `#` or `b`, then "major" or "minor"); a time signature is "3/4" or "6/8". Pure functions, no audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Pitch class of each natural note.
_NATURAL = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_KEY = re.compile(
    r"^\s*(?P<letter>[a-g])\s*(?P<accidental>#|♯|b|♭|\s*sharp|\s*flat|-sharp|-flat)?\s*"
    r"(?P<mode>major|minor|maj|min|m|M|moll|dur)?\s*$",
    re.IGNORECASE,
)
#: Beats per bar and beat unit that soundforge accepts: what music is written in, not every fraction.
_DENOMINATORS = (1, 2, 4, 8, 16, 32)
_SECTION = re.compile(r"^\s*\[(?P<name>[^\[\]\n]{1,40})\]\s*$")


@dataclass(frozen=True)
class Key:
    """A musical key: tonic spelled with `#` or `b`, and its mode."""

    tonic: str
    minor: bool

    @property
    def pitch_class(self) -> int:
        """0 (C) to 11 (B)."""
        pc = _NATURAL[self.tonic[0].lower()]
        if self.tonic.endswith("#"):
            pc += 1
        elif self.tonic.endswith("b") and len(self.tonic) == 2:
            pc -= 1
        return pc % 12

    def __str__(self) -> str:
        return f"{self.tonic} {'minor' if self.minor else 'major'}"

    @property
    def short(self) -> str:
        """The ID3 `TKEY` spelling: tonic, then `m` for minor ("Am", "F#", "Bbm")."""
        return self.tonic + ("m" if self.minor else "")


def parse_key(text: str) -> Key:
    """Read "A minor", "am", "F#m", "Bb major", "E flat minor", "C" (major) into a `Key`.

    Raises ValueError, saying what is accepted, for anything else.
    """
    match = _KEY.match(text)
    if not match:
        raise ValueError(f"key {text!r} is not a key; write a tonic and a mode, e.g. 'A minor', 'F# major', 'Bbm'")
    letter = match["letter"].upper()
    accidental = (match["accidental"] or "").strip().lower().lstrip("-")
    mode = match["mode"] or ""
    minor = mode != "M" and mode.lower() in ("minor", "min", "m", "moll")
    tonic = letter + ("#" if accidental in ("#", "♯", "sharp") else "b" if accidental in ("b", "♭", "flat") else "")
    return Key(tonic, minor)


def normalise_key(text: str) -> str:
    """The one spelling of a key ("A minor", "F# major")."""
    return str(parse_key(text))


@dataclass(frozen=True)
class TimeSignature:
    """Beats per bar over the beat unit (3/4, 6/8)."""

    beats: int
    unit: int

    def __str__(self) -> str:
        return f"{self.beats}/{self.unit}"

    @property
    def sixteenths_per_bar(self) -> int:
        """Length of a bar in sixteenth notes (4/4: 16, 3/4: 12, 6/8: 12); a 1/32 unit rounds up."""
        return max(1, round(self.beats * 16 / self.unit))

    @property
    def compound(self) -> bool:
        """6/8, 9/8, 12/8: the felt beat is three eighths (a dotted quarter), not one."""
        return self.unit == 8 and self.beats % 3 == 0 and self.beats > 3

    @property
    def pulse_sixteenths(self) -> int:
        """Length of the felt beat in sixteenths: 6 in compound metres, else the beat unit's (4 for x/4)."""
        return 6 if self.compound else max(1, 16 // self.unit)


def parse_time_signature(text: str) -> TimeSignature:
    """Read "3/4", "6/8", "4" (over 4) into a `TimeSignature`; beats 1-32, unit a power of two up to 32."""
    value = text.strip()
    beats_text, sep, unit_text = value.partition("/")
    if not sep:
        unit_text = "4"
    try:
        beats, unit = int(beats_text), int(unit_text)
    except ValueError:
        raise ValueError(f"time signature {text!r} is not of the form '3/4' or '6/8'") from None
    if not 1 <= beats <= 32 or unit not in _DENOMINATORS:
        raise ValueError(
            f"time signature {text!r}: beats per bar must be 1-32 and the beat unit one of "
            f"{', '.join(map(str, _DENOMINATORS))}"
        )
    return TimeSignature(beats, unit)


def normalise_time_signature(text: str) -> str:
    """The one spelling of a time signature ("3/4")."""
    return str(parse_time_signature(text))


@dataclass(frozen=True)
class Section:
    """One tagged part of a lyric sheet: its name as written (lower case) and its lines."""

    name: str
    lines: tuple[str, ...]


def lyric_sections(lyrics: str) -> list[Section]:
    """Split a lyric sheet at its structure tags (`[verse]`, `[chorus]`, `[bridge]`, `[intro]`, ...).

    Lines before the first tag form a section named "verse"; an empty tagged section (an instrumental break) is kept.
    """
    sections: list[Section] = []
    name, lines = None, list[str]()
    for raw in lyrics.splitlines():
        tag = _SECTION.match(raw)
        if tag:
            if name is not None or lines:
                sections.append(Section(name or "verse", tuple(lines)))
            name, lines = tag["name"].strip().lower(), []
        elif raw.strip():
            lines.append(raw.strip())
    if name is not None or lines:
        sections.append(Section(name or "verse", tuple(lines)))
    return sections


#: Stems soundforge names in requests and file names; an engine offers some of them.
STEMS = (
    "vocals",
    "backing_vocals",
    "drums",
    "bass",
    "guitar",
    "keyboard",
    "percussion",
    "strings",
    "synth",
    "brass",
    "woodwinds",
    "fx",
    "other",  # what a separator leaves after its named stems (Demucs' fourth source)
)
