"""Reading back what soundforge saved: one reader of a file's record, one verification.

A saved file carries its record twice: embedded tags (they travel with the audio) and a JSON sidecar beside it
(the full licence and provenance). `read_record` reads both with one precedence, used by every reader (the CLI's
`info` and `verify`, `separate` on a file, batch's check that a row's file is complete): tag fields from the file
itself, from the sidecar's copy when the file's tags are gone; the licence and provenance from the sidecar.
`verify` recomputes the audio hash of what the file decodes to and compares it with the one recorded, checks a
C2PA manifest's validity, and can look for AudioSeal's watermark in the samples.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..audio import decoded_sha256
from ..errors import ProviderUnavailableError
from ..licences.licensing import License
from .files import sidecar_path
from .tags import read_tags_bytes

if TYPE_CHECKING:
    from ..run.watermarking import WatermarkReading


@dataclass(frozen=True)
class FileRecord:
    """What a saved file says about itself.

    Attributes:
        path: the file.
        tags: soundforge's tag fields embedded in the file (empty when stripped or never written).
        sidecar: the JSON sidecar document (None when there is none, or it is not soundforge's).
    """

    path: str
    tags: dict[str, str]
    sidecar: dict[str, Any] | None

    @property
    def fields(self) -> dict[str, str]:
        """The tag fields: the file's own, else the copy the sidecar keeps."""
        if self.tags:
            return self.tags
        copy = (self.sidecar or {}).get("tags")
        return {str(k): str(v) for k, v in copy.items()} if isinstance(copy, dict) else {}

    @property
    def license(self) -> License | None:
        """The full licence from the sidecar; None without one (the tags name the licence only)."""
        document = (self.sidecar or {}).get("license")
        if not isinstance(document, dict):
            return None
        try:
            return License.model_validate(document)
        except ValueError:
            return None

    @property
    def provenance(self) -> dict[str, Any]:
        """The full provenance from the sidecar, as JSON ({} without one)."""
        document = (self.sidecar or {}).get("provenance")
        return document if isinstance(document, dict) else {}

    @property
    def found(self) -> bool:
        """Whether the file carries any soundforge record."""
        return bool(self.fields) or self.sidecar is not None


def record_of(data: bytes, sidecar: bytes | None, path: str) -> FileRecord:
    """The record of a saved file from its bytes and its sidecar's (for files in any store, not only on disk)."""
    document: dict[str, Any] | None = None
    if sidecar is not None:
        try:
            loaded = json.loads(sidecar)
        except ValueError:
            loaded = None
        document = loaded if isinstance(loaded, dict) and "soundforge_sidecar" in loaded else None
    return FileRecord(path=path, tags=read_tags_bytes(data), sidecar=document)


def read_record(path: str | os.PathLike[str]) -> FileRecord:
    """The record of the saved file at `path` (its tags and its sidecar)."""
    return _read(Path(path))[1]


def _read(file: Path) -> tuple[bytes, FileRecord]:
    """A saved file's bytes and its record, the file read once."""
    data = file.read_bytes()
    side = sidecar_path(file)
    return data, record_of(data, side.read_bytes() if side.is_file() else None, str(file))


@dataclass(frozen=True)
class Verification:
    """The outcome of `verify`.

    Attributes:
        status: `ok` (the audio is what soundforge wrote), `modified` (it changed, or its C2PA manifest is
            invalid), or `unverifiable` (no recorded hash to compare with).
        recorded_sha256 / actual_sha256: the hash the file records and the hash of what it decodes to.
        c2pa: a one-line summary of its C2PA manifest, None when it has none (or c2pa-python is absent).
        watermark: what AudioSeal's detector found, when asked to look.
        watermark_matches: whether a watermark was found with the recorded payload (any payload when none is
            recorded); None when not looked for.
    """

    record: FileRecord
    status: Literal["ok", "modified", "unverifiable"]
    recorded_sha256: str | None
    actual_sha256: str | None
    c2pa: str | None = None
    watermark: WatermarkReading | None = None
    watermark_matches: bool | None = None

    @property
    def ok(self) -> bool:
        """The audio is unchanged, and carries the recorded watermark when one was looked for."""
        return self.status == "ok" and self.watermark_matches is not False


def c2pa_summary(path: str | os.PathLike[str]) -> str | None:
    """A one-line C2PA summary of a file, or None when it has no manifest or c2pa-python is absent."""
    try:
        from .signing import read_manifest, validation_problems

        store = read_manifest(Path(path))
    except ProviderUnavailableError:
        return None
    if not store:
        return None
    problems = validation_problems(store)
    return "signed manifest, " + (
        "valid (signer not on a trust list)" if not problems else "INVALID: " + ", ".join(problems)
    )


def verify(path: str | os.PathLike[str], *, watermark: bool = False) -> Verification:
    """Whether the audio of a saved file is still what soundforge wrote: its decoded samples' hash against the
    recorded one, its C2PA manifest's validity, and (with `watermark`, needs `soundforge[watermark]` and the
    detector's weights) AudioSeal's watermark with the recorded payload. Works on a file whose tags are gone
    (from the sidecar's copy), and with `watermark`, on one with no record at all."""
    data, record = _read(Path(path))  # read once: the record, the watermark and the hash all come from these bytes
    fields = record.fields
    reading, matches = None, None
    if watermark:
        from ..audio import load_audio
        from ..run import watermarking

        watermarking.check_ready(watermarking.DETECTOR_CARD)
        audio, rate = load_audio(data)
        reading = watermarking.detect_audio(audio, rate)
        recorded = fields.get("AUDIOSEAL_PAYLOAD")
        matches = reading.detected and (recorded is None or reading.payload == recorded)
    expected = fields.get("AUDIO_SHA256")
    if not expected:
        return Verification(record, "unverifiable", None, None, None, reading, matches)
    actual = decoded_sha256(data)
    c2pa = c2pa_summary(path)
    status: Literal["ok", "modified"] = "ok" if actual == expected and not (c2pa and "INVALID" in c2pa) else "modified"
    return Verification(record, status, expected, actual, c2pa, reading, matches)
