"""A result cache: a repeated deterministic request returns the stored audio, at no cost, with its provenance.

Only requests that can repeat exactly are cached: an explicit `seed`, on a model that declares seed determinism
(never ElevenLabs, whose seeds are not exact; never a request without a seed, which asks for a new variation). The
key is content-addressed on the provider, the model, the request as given (audio inputs by their hash), the engine
versions the backend reports and soundforge's version, so an upgrade never serves an old engine's audio.

`DiskCache` keeps entries in a folder (default: the user cache dir), each written atomically (the audio as float32,
bit-exact, and the licence and provenance as JSON), and evicts the least recently used past `max_bytes`. Anything
with `get(key)` and `put(key, generation)` can stand in for it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .._version import __version__
from ..audio import pcm_sha256
from ..licences.licensing import License
from ..licences.provenance import Provenance
from ..request import content_key
from ..result import Generation, Track
from .pricing import Cost


class ResultCache(Protocol):
    """What the client needs of a cache."""

    def get(self, key: str) -> Generation | None:
        """The stored generation for a key, or None."""

    def put(self, key: str, generation: Generation) -> None:
        """Store a generation under a key."""


def cache_key(provider: str, model: str, request: dict[str, Any], engine: dict[str, str]) -> str:
    """The content address of a deterministic call (`request` is the request's record)."""
    return content_key(
        {"provider": provider, "model": model, "request": request, "engine": engine, "soundforge": __version__}
    )


def as_cache_hit(generation: Generation) -> Generation:
    """The stored generation as a new result: provenance marked `cache_hit`, its cost zero (nothing was called)."""
    tracks = []
    for track in generation.tracks:
        original = track.provenance.cost
        was = original.describe() if original is not None else "an unknown cost"
        cost = Cost(
            amount=0.0, basis="cache_hit", estimated=False, detail=f"served from the result cache; made for {was}"
        )
        provenance = track.provenance.model_copy(update={"cache_hit": True, "cost": cost})
        tracks.append(
            Track(audio=track.audio, sample_rate=track.sample_rate, license=track.license, provenance=provenance)
        )
    return Generation(tracks)


class DiskCache:
    """Generations on disk, one folder per key, least recently used evicted past `max_bytes`.

    Args:
        folder: where entries live (default: the user cache dir's `results`).
        max_bytes: the most the entries may take together (default 2 GB).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, max_bytes: int = 2 * 1024**3) -> None:
        if folder is None:
            from platformdirs import user_cache_dir

            folder = Path(user_cache_dir("soundforge")) / "results"
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DiskCache({str(self.folder)!r}, max_bytes={self.max_bytes})"

    def get(self, key: str) -> Generation | None:
        """The stored generation for a key, or None (a missing or damaged entry is a miss; a hit is the most
        recently used)."""
        entry = self.folder / key
        meta = entry / "tracks.json"
        if not meta.exists():
            return None
        try:
            records = json.loads(meta.read_text("utf-8"))
            if not isinstance(records, list) or not records:
                return None
            tracks = [self._track(entry, index, record) for index, record in enumerate(records)]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # a damaged entry is a miss; the next put replaces it
        if any(track is None for track in tracks):
            return None
        os.utime(entry)  # recently used
        return as_cache_hit(Generation([t for t in tracks if t is not None]))

    @staticmethod
    def _track(entry: Path, index: int, record: dict[str, Any]) -> Track | None:
        """One stored track, or None when it is not what was stored: its samples must hash to the provenance's
        `pcm_sha256` (a flipped byte, NaN), be float32 (channels, samples) with the recorded channels, at the rate
        its provenance records (an entry whose rate was changed to 7 Hz is damaged)."""
        audio = np.load(entry / f"{index}.npy", allow_pickle=False)
        provenance = Provenance.model_validate(record["provenance"])
        rate = int(record["sample_rate"])
        if (
            audio.dtype != np.float32
            or audio.ndim != 2
            or audio.shape[0] != provenance.channels
            or rate != provenance.sample_rate
            # The stored samples hash to what was made (finite samples): a NaN or a flipped byte changes the hash,
            # so no separate scan for non-finite samples (it cost a few ms of a 20 ms budget on a 60 s track).
            or pcm_sha256(audio) != provenance.pcm_sha256
        ):
            return None
        return Track(
            audio=audio, sample_rate=rate, license=License.model_validate(record["license"]), provenance=provenance
        )

    def put(self, key: str, generation: Generation) -> None:
        """Store a generation under a key (written aside, then moved in place), evicting the least recently used
        entries past `max_bytes`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / f".{key}.{uuid.uuid4().hex}.part"
        staging.mkdir()
        try:
            records = []
            for index, track in enumerate(generation.tracks):
                buffer = io.BytesIO()
                np.save(buffer, np.ascontiguousarray(track.audio, dtype=np.float32), allow_pickle=False)
                (staging / f"{index}.npy").write_bytes(buffer.getvalue())
                records.append(
                    {
                        "sample_rate": track.sample_rate,
                        "license": track.license.model_dump(mode="json"),
                        "provenance": track.provenance.model_dump(mode="json"),
                    }
                )
            (staging / "tracks.json").write_text(json.dumps(records), "utf-8")
            with self._lock:
                target = self.folder / key
                if target.exists():
                    shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)  # the entry appears whole or not at all
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        self._evict()

    def _evict(self) -> None:
        """Remove the least recently used entries until the cache fits `max_bytes`."""
        with self._lock:
            entries = []
            for entry in self.folder.iterdir():
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                size = sum(f.stat().st_size for f in entry.iterdir())
                entries.append((entry.stat().st_mtime, size, entry))
            used = sum(size for _, size, _ in entries)
            for _, size, entry in sorted(entries, key=lambda e: e[0]):
                if used <= self.max_bytes:
                    break
                shutil.rmtree(entry, ignore_errors=True)
                used -= size

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            shutil.rmtree(self.folder, ignore_errors=True)
