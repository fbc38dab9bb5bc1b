"""Where a batch writes: a local folder or any fsspec URL; files land whole (temp name, then a rename) or not at all.

Workers (threads here, Ray actors elsewhere) write through `deliver`; the driver checks `delivered` on resume, so a
file that already holds a verified result is never generated, or paid for, twice.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..audio import decoded_sha256, format_for, write_atomic
from ..errors import ConfigurationError, ProviderError, SoundforgeError
from ..files import SIDECAR_SUFFIX, encode_track, sidecar_document
from ..output.inspect import record_of
from .manifest import BatchRow


class OutputLocation:
    """A run's output folder: a local path (or `file://` URL) or an fsspec URL such as `s3://bucket/cues`.

    Only the location string travels to workers; each process opens its own file system from it.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        text = os.fspath(target)
        self.url = text
        self.is_local = "://" not in text or text.startswith("file://")
        self._fs: Any = None
        self._root = text.removeprefix("file://") if self.is_local else ""
        if not self.is_local:
            try:
                import fsspec
            except ImportError:
                raise ConfigurationError(
                    f"writing to {text.split('://')[0]}:// URLs needs fsspec; "
                    "install soundforge[ray] or `pip install fsspec` and the file system's "
                    "package (s3fs, gcsfs, adlfs, …)"
                ) from None
            try:
                self._fs, self._root = fsspec.core.url_to_fs(text)
            except (ImportError, ValueError) as exc:
                raise ConfigurationError(f"cannot open output location {text!r}: {exc}") from None

    @property
    def folder(self) -> Path | None:
        """The local folder, or None for a remote location."""
        return Path(self._root) if self.is_local else None

    def __repr__(self) -> str:
        return f"OutputLocation({self.url!r})"

    def path(self, name: str) -> str:
        """The full path of a file in the location."""
        return os.path.join(self._root, name) if self.is_local else f"{self._root.rstrip('/')}/{name}"

    def makedirs(self) -> None:
        """Create the location if it does not exist."""
        if self.is_local:
            Path(self._root).mkdir(parents=True, exist_ok=True)
        else:
            self._fs.makedirs(self._root, exist_ok=True)

    def exists(self, name: str) -> bool:
        """Whether a file of that name is there."""
        return os.path.exists(self.path(name)) if self.is_local else bool(self._fs.exists(self.path(name)))

    def read_bytes(self, name: str) -> bytes:
        """A file's bytes."""
        if self.is_local:
            return Path(self.path(name)).read_bytes()
        return bytes(self._fs.cat_file(self.path(name)))

    def write(self, name: str, data: bytes) -> None:
        """Write a whole file, replacing any old one: under a temp name first, then renamed into place."""
        if self.is_local:
            write_atomic(self.path(name), data, overwrite=True)
            return
        folder, _, base = name.rpartition("/")
        if folder:
            self._fs.makedirs(self.path(folder), exist_ok=True)  # a no-op on object stores, needed on disks
        temp = self.path(
            f"{folder}/.{base}.{uuid.uuid4().hex[:8]}.tmp" if folder else f".{base}.{uuid.uuid4().hex[:8]}.tmp"
        )
        self._fs.pipe_file(temp, data)
        try:
            self._fs.mv(temp, self.path(name))
        except BaseException:
            self._fs.rm_file(temp)
            raise

    def sweep_temps(self) -> list[str]:
        """Delete temp files left by writers that were killed mid-write (call when no writer runs); returns them."""
        if self.is_local:
            found = [p for p in Path(self._root).glob(".*.tmp") if p.is_file()]
            for p in found:
                p.unlink(missing_ok=True)
            return [p.name for p in found]
        found = list(self._fs.glob(self.path(".*.tmp")))
        for path in found:
            self._fs.rm_file(path)
        return [str(path).rsplit("/", 1)[-1] for path in found]

    def open(self, name: str) -> Any:
        """A file opened for reading bytes (a context manager), for reading it in pieces."""
        return open(self.path(name), "rb") if self.is_local else self._fs.open(self.path(name), "rb")

    def size(self, name: str) -> int:
        """A file's size in bytes."""
        return os.path.getsize(self.path(name)) if self.is_local else int(self._fs.size(self.path(name)))

    def glob(self, pattern: str) -> list[str]:
        """Names (relative to the location) of the files matching a glob pattern such as `*/job.json`."""
        if self.is_local:
            return [str(p.relative_to(self._root)) for p in Path(self._root).glob(pattern)]
        prefix = self._root.rstrip("/") + "/"
        return [str(p).removeprefix(prefix) for p in self._fs.glob(self.path(pattern))]

    def remove_folder(self, name: str) -> None:
        """Delete a folder and everything in it, if it exists."""
        if self.is_local:
            shutil.rmtree(self.path(name), ignore_errors=True)
        elif self._fs.exists(self.path(name)):
            self._fs.rm(self.path(name), recursive=True)

    def remove(self, name: str) -> None:
        """Delete a file if it exists."""
        if self.exists(name):
            if self.is_local:
                os.unlink(self.path(name))
            else:
                self._fs.rm_file(self.path(name))


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
        from ..signing import sign_bytes

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
