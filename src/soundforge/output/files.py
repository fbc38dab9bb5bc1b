"""Saving tracks: loudness, encoding, embedded tags, JSON sidecar, all written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..audio import (
    FORMATS,
    AudioArray,
    AudioFormat,
    decoded_sha256,
    encode,
    format_for,
    load_audio,
    pcm16,
    pcm_sha256,
    write_atomic,
)
from ..audio.edits import Edits
from ..audio.loudness import check_target, normalize_loudness
from ..errors import InvalidRequestError
from . import tags
from .tags import TaggedAudio

if TYPE_CHECKING:
    from ..licences.licensing import License
    from ..licences.provenance import Provenance
    from .signing import C2paSigner

SIDECAR_SUFFIX = ".json"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the JSON sidecar of an audio file lives: `track.wav` -> `track.wav.json`."""
    target = Path(path)
    return target.with_name(target.name + SIDECAR_SUFFIX)


def role_path(path: str | os.PathLike[str], role: str) -> Path:
    """Where the `role` track (a stem) saved beside `path` goes: `name.role.ext`."""
    target = Path(path)
    return target.with_name(f"{target.stem}.{role}{target.suffix}")


def output_paths(path: str | os.PathLike[str], count: int, roles: Sequence[str | None] = ()) -> list[Path]:
    """The files `count` tracks saved to `path` go to: `name.role.ext` for tracks that each have their own role
    (stems), `path` and then `name.role.ext` for a mix followed by its stems, else `path` itself for one track and
    `name-1.ext`, `name-2.ext`… for more."""
    target = Path(path)
    if roles and all(roles) and len(set(roles)) == len(roles) == count:
        return [role_path(target, role) for role in roles if role]
    named = list(roles[1:])
    if len(roles) == count > 1 and roles[0] is None and all(named) and len(set(named)) == len(named):
        # A mix followed by its stems (request stems=...): the mix is `path`, each stem `name.role.ext`.
        return [target, *(role_path(target, role) for role in named if role)]
    if count == 1:
        return [target]
    return [target.with_name(f"{target.stem}-{i + 1}{target.suffix}") for i in range(count)]


def check_destination(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    count: int = 1,
    overwrite: bool = False,
    sidecar: bool = True,
    loudness: float | None = None,
    roles: Sequence[str | None] = (),
) -> AudioFormat:
    """Find every problem with where tracks will be saved, before anything is generated; returns the format.

    Checked: the format (from `format` or the extension), a `format` that contradicts the extension, the loudness
    target's range, files that
    exist (each track's and its sidecar) unless `overwrite`, and a folder that cannot be made or written. Raises
    InvalidRequestError, or FileExistsError for an existing file, so a paid or slow result is never lost at save.
    """
    target = Path(path)
    fmt = format_for(target, format)
    if loudness is not None:
        check_target(loudness)
    suffix = target.suffix.lower().lstrip(".")
    if format and suffix and suffix != fmt.name and not (suffix in ("oga",) and fmt.name == "ogg"):
        raise InvalidRequestError(
            f"the file name {target.name!r} ends in .{suffix} but the format asked for is {fmt.name}",
            field="format",
            hint=f"name the file .{fmt.name}, or leave out the format to follow the name"
            if suffix not in FORMATS
            else f"use -o {target.with_suffix('.' + fmt.name)}, or --format {suffix}",
        )
    paths = output_paths(target, count, roles)
    if not overwrite:
        for candidate in paths:
            for existing in [candidate, *([sidecar_path(candidate)] if sidecar else [])]:
                if existing.exists():
                    raise FileExistsError(
                        f"{existing} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
                    )
    _check_folder(target.parent if str(target.parent) else Path("."))
    return fmt


def _check_folder(folder: Path) -> None:
    """The folder exists and is writable, or its nearest existing parent is (then saving creates it)."""
    probe = folder.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InvalidRequestError(f"cannot save into {folder}: {probe} is a file, not a folder", field="output")
    problem = None if os.access(probe, os.W_OK | os.X_OK) else "is not writable"
    if problem is None:
        # Permission bits do not tell everything (root on /proc, a read-only mount): a file is made and removed,
        # so the failure comes now, naming the folder, not after generating, naming a temporary file.
        try:
            with tempfile.NamedTemporaryFile(dir=probe, prefix=".soundforge-write-check-"):
                pass
        except OSError as exc:
            problem = f"cannot be written ({exc.strerror or exc})"
    if problem is not None:
        raise InvalidRequestError(
            f"cannot save into {folder}: {probe} {problem}",
            field="output",
            hint="choose another output folder, or change its permissions",
        )


def encode_track(
    track: TaggedAudio,
    fmt: AudioFormat,
    *,
    loudness: float | None = None,
    edits: Edits | None = None,
    applied: dict[str, str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Encode a track with its tags; returns the file bytes and the tag fields written into them.

    The file's `AUDIO_SHA256` tag is the hash of the samples the file decodes to, so `verify` can tell
    whether the audio changed after saving (a lossy format is hashed after its own encoding). `edits` (a trim,
    fades) come before the loudness target; the `EDITS` tag says what they did. `applied` are the `EDITS` and
    `LOUDNESS_LUFS` tags of samples that already carry their edits (`encode_saved`), written as they are.
    """
    audio = track.audio
    note = ""
    if edits:
        edits.check(track.audio.shape[1] / track.sample_rate, loop=track.provenance.loop is not None)
        audio, note = edits.apply(audio, track.sample_rate)
    if loudness is not None:
        # The tag records the loudness the file has, measured after normalising, not the target asked for.
        audio, loudness = normalize_loudness(audio, track.sample_rate, loudness)
    if fmt.name == "wav" and audio.shape[0] in (1, 2) and pcm16.matches_libsndfile():
        # 16-bit WAV: the decoded samples follow from the audio alone, so the file is written directly, without
        # libsndfile's trial encode, decode and second encode (soundforge.audio.pcm16).
        samples = pcm16.quantize(audio)
        fields = tags.describe(track, audio_sha256=pcm_sha256(pcm16.dequantize(samples)), loudness=loudness, fmt=fmt)
        fields |= _applied(note, applied)
        data = pcm16.wav_bytes(samples, track.sample_rate, tags.soundfile_strings(fields))
        return tags.embed(data, fmt, fields), fields
    untagged = encode(audio, track.sample_rate, fmt)
    fields = tags.describe(track, audio_sha256=decoded_sha256(untagged), loudness=loudness, fmt=fmt)
    fields |= _applied(note, applied)
    if fmt.name == "mp3":
        # LAME's frames do not depend on the tags, and `embed` replaces its ID3v2 tag with ours: only the ID3v1
        # trailer is added, instead of a second encode (5.5 s for 60 s of stereo here; the same bytes).
        return tags.embed(untagged + tags.id3v1_trailer(tags.soundfile_strings(fields)), fmt, fields), fields
    data = encode(audio, track.sample_rate, fmt, strings=tags.soundfile_strings(fields))
    return tags.embed(data, fmt, fields), fields


#: The tags that say what was done to a saved file's samples after generation.
APPLIED_TAGS = ("LOUDNESS_LUFS", "EDITS")


def _applied(note: str, applied: dict[str, str] | None) -> dict[str, str]:
    if applied is not None:  # samples that already carry their edits: the stored tags say what was done
        return {key: applied[key] for key in APPLIED_TAGS if key in applied}
    return {"EDITS": note} if note else {}


@dataclass(frozen=True)
class _Saved:
    """A saved file's samples with the records of the track it was saved from."""

    audio: AudioArray
    sample_rate: int
    license: License
    provenance: Provenance


def encode_saved(data: bytes, fmt: AudioFormat, license: License, provenance: Provenance) -> bytes:
    """Another encoding of a saved file (`data`): its samples exactly as stored, never edited again (the request's
    trim, fades and loudness were applied once, when it was saved), with the record of the track it holds and
    the stored file's `EDITS` and `LOUDNESS_LUFS` tags carried over. Lossless formats decode to the same samples."""
    samples, rate = load_audio(data)
    stored = tags.read_tags_bytes(data)
    saved = _Saved(samples, rate, license, provenance)
    return encode_track(saved, fmt, applied={k: stored[k] for k in APPLIED_TAGS if k in stored})[0]


def sidecar_document(track: TaggedAudio, fields: dict[str, str], file_name: str) -> dict[str, Any]:
    """The JSON sidecar: the file's tags, the full licence and the full provenance."""
    return {
        "soundforge_sidecar": 1,
        "file": file_name,
        "tags": fields,
        "license": track.license.model_dump(mode="json"),
        "provenance": track.provenance.model_dump(mode="json"),
    }


def save_track(
    track: TaggedAudio,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    loudness: float | None = None,
    overwrite: bool = False,
    sidecar: bool = True,
    sign: C2paSigner | None = None,
    edits: Edits | None = None,
) -> Path:
    """Write `track` to `path` (and its sidecar) atomically; see `Track.save`."""
    target = Path(path)
    fmt = check_destination(target, format=format, overwrite=overwrite, sidecar=sidecar, loudness=loudness)
    side = sidecar_path(target)
    data, fields = encode_track(track, fmt, loudness=loudness, edits=edits)
    if sign is not None:  # last: C2PA hashes the finished file, tags included
        from .signing import sign_bytes

        data = sign_bytes(data, fmt, fields, sign)
    if sidecar:
        document = json.dumps(sidecar_document(track, fields, target.name), indent=2, ensure_ascii=False)
        write_atomic(side, document.encode("utf-8"), overwrite=overwrite)
    try:
        write_atomic(target, data, overwrite=overwrite)
    except BaseException:
        if sidecar:
            side.unlink(missing_ok=True)  # never leave a sidecar that describes no file
        raise
    return target
