"""Results: a `Generation` holds one `Track` per output; each track has audio, licence and provenance."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .audio import AudioArray, encode, format_for
from .audio.edits import Edits
from .licences.licensing import License
from .licences.provenance import Provenance
from .ops.pricing import Cost
from .output.files import check_destination, encode_track, output_paths, save_track

if TYPE_CHECKING:
    from .output.signing import C2paSigner


@dataclass(frozen=True)
class Track:
    """One generated clip: float32 audio shaped (channels, samples), its sample rate, licence and provenance."""

    audio: AudioArray = field(repr=False)
    sample_rate: int
    license: License = field(repr=False)
    provenance: Provenance = field(repr=False)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return float(self.audio.shape[1] / self.sample_rate)

    @property
    def channels(self) -> int:
        """Number of channels (1 mono, 2 stereo)."""
        return int(self.audio.shape[0])

    @property
    def role(self) -> str | None:
        """What the track is of a song: a stem ("vocals", "drums", ...), or None for the whole mix."""
        return self.provenance.role

    def __repr__(self) -> str:
        return (
            f"Track({self.duration:.2f} s, {self.sample_rate} Hz, {self.channels} ch, "
            f"{self.provenance.provider}:{self.provenance.model}, licence {self.license.id})"
        )

    def save(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        loudness: float | None = None,
        overwrite: bool = False,
        sidecar: bool = True,
        sign: C2paSigner | None = None,
        *,
        trim: float | None = None,
        fade_in: float | None = None,
        fade_out: float | None = None,
    ) -> Path:
        """Write the track with embedded licence/provenance tags (and a JSON sidecar) atomically.

        Args:
            path: destination; the extension picks the format unless `format` is given.
            format: "wav", "flac", "ogg" or "mp3".
            loudness: normalise to this integrated loudness (LUFS, e.g. -14) with a -1 dBTP ceiling.
            overwrite: replace an existing file (otherwise FileExistsError).
            sidecar: also write `<file>.json` with the full provenance and licence.
            sign: sign a C2PA manifest into the file (WAV, MP3, FLAC; needs `soundforge[c2pa]`).
            trim: cut the file to this many seconds, where the waveform crosses zero (`soundforge.audio.edits`).
            fade_in, fade_out: fades of this many seconds (after the trim, before the loudness target).

        `loudness`, `trim`, `fade_in` and `fade_out` left out take the request's values, so a request that asked
        for them is saved as it asked; the samples in memory and their provenance hash stay as generated.
        """
        loudness, edits = self.saving_options(loudness, trim, fade_in, fade_out)
        return save_track(
            self,
            path,
            format=format,
            loudness=loudness,
            overwrite=overwrite,
            sidecar=sidecar,
            sign=sign,
            edits=edits,
        )

    def to_bytes(
        self,
        format: str = "wav",
        loudness: float | None = None,
        *,
        trim: float | None = None,
        fade_in: float | None = None,
        fade_out: float | None = None,
    ) -> bytes:
        """The encoded file, tags included, as bytes (what `save` would write)."""
        loudness, edits = self.saving_options(loudness, trim, fade_in, fade_out)
        return encode_track(self, format_for(None, format), loudness=loudness, edits=edits)[0]

    def saving_options(
        self, loudness: float | None, trim: float | None, fade_in: float | None, fade_out: float | None
    ) -> tuple[float | None, Edits]:
        """The loudness target and edits a save applies: those given, else the ones the request asked for."""
        asked = self.provenance.request

        def pick(value: float | None, name: str) -> float | None:
            return value if value is not None else asked.get(name)

        return pick(loudness, "loudness"), Edits(
            pick(trim, "trim"), pick(fade_in, "fade_in"), pick(fade_out, "fade_out")
        )

    def _repr_html_(self) -> str:
        """An audio player for Jupyter, with an Ogg Vorbis preview (about 1 MB a minute, not a 10 MB WAV)."""
        import html

        preview = encode(self.audio, self.sample_rate, format_for(None, "ogg"))
        data = base64.b64encode(preview).decode("ascii")
        caption = html.escape(
            f"{self.provenance.provider}:{self.provenance.model} · {self.duration:.1f} s · "
            f"{self.license.summary()} · preview (Ogg Vorbis); save() writes the full quality"
        )
        return f'<div><audio controls src="data:audio/ogg;base64,{data}"></audio><br><small>{caption}</small></div>'


@dataclass(frozen=True)
class Generation:
    """The result of one request: its tracks (one per `num_outputs`), in order."""

    tracks: list[Track]

    def __post_init__(self) -> None:
        if not self.tracks:
            raise ValueError("a generation has at least one track")

    def _single(self) -> Track:
        return self.tracks[0]

    @property
    def audio(self) -> AudioArray:
        """Audio of the first track."""
        return self._single().audio

    @property
    def sample_rate(self) -> int:
        """Sample rate of the first track."""
        return self._single().sample_rate

    @property
    def duration(self) -> float:
        """Duration in seconds of the first track."""
        return self._single().duration

    @property
    def license(self) -> License:
        """Licence of the first track (all tracks of one generation share it)."""
        return self._single().license

    @property
    def provenance(self) -> Provenance:
        """Provenance of the first track."""
        return self._single().provenance

    @property
    def provider(self) -> str:
        """The provider that made the result (compare `substitution` when a fallback may have run)."""
        return self._single().provenance.provider

    @property
    def substitution(self) -> str | None:
        """Why a fallback made this instead of the provider asked for, or None when the one asked for made it."""
        return self._single().provenance.substitution

    @property
    def cost(self) -> Cost | None:
        """What the call that made these tracks cost (its tracks share it): reported by the vendor where it says,
        otherwise estimated from the price registry (`cost.estimated`); local engines: compute-seconds."""
        return self._single().provenance.cost

    def save(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        loudness: float | None = None,
        overwrite: bool = False,
        sidecar: bool = True,
        sign: C2paSigner | None = None,
        *,
        trim: float | None = None,
        fade_in: float | None = None,
        fade_out: float | None = None,
    ) -> list[Path]:
        """Save every track (arguments as for `Track.save`). Tracks with roles (stems) go to `name.vocals.wav`,
        `name.drums.wav`…; other sets of several tracks get `-1`, `-2`… before the extension."""
        roles = [track.role for track in self.tracks]
        # Every track's file is checked before the first is written: no half-saved set of variations.
        check_destination(
            path,
            format=format,
            count=len(self.tracks),
            overwrite=overwrite,
            sidecar=sidecar,
            loudness=loudness,
            roles=roles,
        )
        for track in self.tracks:  # every edit is checked before the first file is written
            track.saving_options(loudness, trim, fade_in, fade_out)[1].check(
                track.duration, loop=track.provenance.loop is not None
            )
        return [
            track.save(
                target, format, loudness, overwrite, sidecar, sign, trim=trim, fade_in=fade_in, fade_out=fade_out
            )
            for target, track in zip(output_paths(path, len(self.tracks), roles), self.tracks, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.tracks)

    def __repr__(self) -> str:
        return f"Generation({len(self.tracks)} track(s): {self.tracks[0]!r})"

    def _repr_html_(self) -> str:
        return "".join(t._repr_html_() for t in self.tracks)
