"""Where a batch writes: a local folder or any fsspec URL; files land whole (temp name, then a rename) or not at all.

Workers (threads here, Ray actors elsewhere) write through `deliver`; the driver checks `delivered` on resume, so a
file that already holds a verified result is never generated, or paid for, twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..audio import decoded_sha256, format_for
from ..errors import ProviderError, SoundforgeError
from ..output.files import SIDECAR_SUFFIX, encode_track, sidecar_document
from ..output.inspect import record_of
from ..output.location import OutputLocation
from .manifest import BatchRow

__all__ = ["OutputLocation", "deliver", "delivered", "owned", "stale"]


def delivered(row: BatchRow, out: OutputLocation) -> bool:
    """Whether the row's files are there, complete, verifying and made for this row as it is now.

    Three checks on each file (the track, then each stem the row asks for): its `AUDIO_SHA256` tag matches its
    decoded audio (nothing truncated or edited), its sidecar names this row's fingerprint (the file answers the
    row's current prompt, seed, duration, ...), and the sidecar describes this very file (same audio hash). A file
    left by an earlier version of the row is not delivered, so a changed row runs again.
    """
    return all(_delivered_file(name, row, out) for name in row.file_names)


def _delivered_file(name: str, row: BatchRow, out: OutputLocation) -> bool:
    """Whether `name` is this row's finished file: its record (`output.inspect.record_of`) says it was made for
    this row, and its tags' audio hash, its sidecar's copy and what it decodes to agree."""
    sidecar = name + SIDECAR_SUFFIX
    if not (out.exists(name) and out.exists(sidecar)):
        return False
    try:
        data = out.read_bytes(name)
        record = record_of(data, out.read_bytes(sidecar), name)
        batch = (record.sidecar or {}).get("batch")
        if not isinstance(batch, dict) or batch.get("fingerprint") != row.fingerprint:
            return False
        side_tags = (record.sidecar or {}).get("tags")
        return (
            bool(record.tags)
            and isinstance(side_tags, dict)
            and record.tags.get("AUDIO_SHA256") == decoded_sha256(data) == side_tags.get("AUDIO_SHA256")
        )
    except (OSError, ValueError, SoundforgeError):
        return False


def _sidecar(data: bytes) -> dict[str, Any]:
    """A sidecar's JSON object ({} when it is not one)."""
    try:
        document = json.loads(data)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def owned(row: BatchRow, out: OutputLocation) -> bool:
    """Whether a sidecar of the row's files says a batch wrote it for this row name (any fingerprint): ours to
    replace."""
    for name in row.file_names:
        sidecar = name + SIDECAR_SUFFIX
        try:
            batch = _sidecar(out.read_bytes(sidecar)).get("batch") if out.exists(sidecar) else None
        except OSError:
            continue
        if isinstance(batch, dict) and batch.get("row") == row.name:
            return True
    return False


def stale(row: BatchRow, out: OutputLocation) -> bool:
    """Whether a file or sidecar of the row exists without verifying (a crash mid-write, or someone else's file)."""
    return any(out.exists(name) or out.exists(name + SIDECAR_SUFFIX) for name in row.file_names)


def deliver(tracks: Sequence[Any], row: BatchRow, out: OutputLocation, sign: Any = None) -> str:
    """Encode a row's tracks (the track, then its stems) with their tags (and C2PA manifests) and write each with
    its sidecar; returns the name of the row's main file.

    Stems are written before the track, and each sidecar before its file, so a row whose main file exists has all
    its files: an interrupted row is found stale and made again.
    """
    names = row.file_names
    if len(tracks) != len(names):
        raise ProviderError(f"row {row.name} expected {len(names)} tracks (the track and its stems), got {len(tracks)}")
    for track, name in reversed(list(zip(tracks, names, strict=True))):
        _deliver_file(track, name, row, out, sign)
    return row.file_name


def _deliver_file(track: Any, name: str, row: BatchRow, out: OutputLocation, sign: Any) -> None:
    fmt = format_for(None, row.request.output_format or "wav")
    loudness, edits = track.saving_options(None, None, None, None)  # the row's request: its saving defaults
    data, fields = encode_track(track, fmt, loudness=loudness, edits=edits)
    if sign is not None:
        from ..output.signing import sign_bytes

        data = sign_bytes(data, fmt, fields, sign)
    record = {
        **sidecar_document(track, fields, name),
        "batch": {"row": row.name, "fingerprint": row.fingerprint},
    }
    document = json.dumps(record, indent=2, ensure_ascii=False)
    sidecar = name + SIDECAR_SUFFIX
    out.write(sidecar, document.encode("utf-8"))
    try:
        out.write(name, data)
    except BaseException:
        out.remove(sidecar)  # never leave a sidecar that describes no file
        raise
