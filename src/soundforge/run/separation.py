"""Stems of any track: what `soundforge.separate(track_or_file, stems=...)` (`Client.separate`) needs beside the
client. A separator is local Demucs by default, or a provider that extracts stems itself (ElevenLabs' stem
separation, ACE-Step's extract).

Every stem is a named track (`Track.role`) whose licence is its source's and the separator's together (the
strictest terms win, every duty adds up: `License.effective`), checked against the client's licence policy before
anything runs, and whose provenance links it to its source (`provenance.source`: the source's PCM hash, provider,
model and licence). The source can be a `Track` or `Generation` (its first track), a file soundforge wrote (its
sidecar or tags give its licence and provenance), any other audio file, or an `(array, sample_rate)` pair; audio
soundforge has no record of keeps the licence "unknown" for its part, which only the caller can settle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio import AudioArray, as_audio, load_audio, pcm_sha256
from ..errors import InvalidRequestError, LicensePolicyError, ProviderError
from ..licences.licensing import UNKNOWN_LICENSE, License, LicenseComponent, LicenseRegistry
from ..request import AudioInput, GenerationRequest, stem_name
from ..result import Generation, Track

if TYPE_CHECKING:
    from ..licences.policy import LicensePolicy
    from ..routing import Candidate

#: What `separate` returns when no stems are named: the four every separator offers.
DEFAULT_STEMS = ("vocals", "drums", "bass", "other")
DEFAULT_SEPARATOR = "demucs"
SOURCE_ROLE_PREFIX = "source "


@dataclass(frozen=True)
class SeparationSource:
    """The audio to separate and what is known of it."""

    audio: AudioArray
    sample_rate: int
    license: License
    record: dict[str, Any]


def check_stems(stems: Sequence[str]) -> tuple[str, ...]:
    """The stems asked for in soundforge's spelling, refused when empty, repeated or unknown."""
    if isinstance(stems, str):
        stems = (stems,)
    try:
        names = tuple(stem_name(s) for s in stems)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), field="stems") from None
    if not names:
        raise InvalidRequestError("name at least one stem", field="stems", hint=f"e.g. {', '.join(DEFAULT_STEMS)}")
    if len(set(names)) != len(names):
        raise InvalidRequestError("name each stem once", field="stems")
    return names


def source_of(source: Any, registry: LicenseRegistry) -> SeparationSource:
    """Read a source: its samples, its licence (`unknown` without a soundforge record) and a provenance link."""
    if isinstance(source, Generation):
        source = source.tracks[0]
    if isinstance(source, Track):
        record = {
            "pcm_sha256": source.provenance.pcm_sha256,
            "provider": source.provenance.provider,
            "model": source.provenance.model,
            "license": source.license.id,
            **({"role": source.role} if source.role else {}),
        }
        return SeparationSource(source.audio, source.sample_rate, source.license, record)
    if isinstance(source, tuple) and len(source) == 2:
        audio, rate = as_audio(source[0], name="source"), int(source[1])
        unknown = unknown_audio_license(registry)
        return SeparationSource(audio, rate, unknown, {"pcm_sha256": pcm_sha256(audio), "license": unknown.id})
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidRequestError(f"audio file {str(path)!r} does not exist", field="source")
        audio, rate = load_audio(path)
        license, record = _file_record(path, registry)
        return SeparationSource(audio, rate, license, {"pcm_sha256": pcm_sha256(audio), **record, "file": path.name})
    raise InvalidRequestError(
        f"cannot separate a {type(source).__name__}: give a Track, a Generation, a file path or (array, sample_rate)",
        field="source",
    )


def _file_record(path: Path, registry: LicenseRegistry) -> tuple[License, dict[str, Any]]:
    """A saved file's licence and origin (`output.inspect.read_record`): the sidecar's full licence, else the
    licence of the provider and model its tags name, else unknown."""
    from ..output.inspect import read_record

    record = read_record(path)
    license, provenance, fields = record.license, record.provenance, record.fields
    if license is not None:
        return license, {
            "provider": provenance.get("provider") or fields.get("PROVIDER"),
            "model": provenance.get("model") or fields.get("MODEL"),
            "license": license.id,
            "generation_pcm_sha256": provenance.get("pcm_sha256") or fields.get("GENERATED_PCM_SHA256"),
        }
    if fields.get("PROVIDER") and fields.get("MODEL"):
        license = registry.license_for(fields["PROVIDER"], fields["MODEL"])
        return license, {"provider": fields["PROVIDER"], "model": fields["MODEL"], "license": license.id}
    unknown = unknown_audio_license(registry)
    return unknown, {"license": unknown.id}


def unknown_audio_license(registry: LicenseRegistry) -> License:
    """The licence of audio soundforge has no record of: unknown, until its owner says."""
    component = LicenseComponent(
        role="audio",
        name="the audio given (soundforge has no record of where it came from)",
        license=registry.licenses[UNKNOWN_LICENSE],
    )
    return License.effective([component])


def combined_license(source: License, separator: License) -> License:
    """The licence of a stem: the source's components (roles prefixed "source ") and the separator's."""
    parts = [c.model_copy(update={"role": SOURCE_ROLE_PREFIX + c.role}) for c in source.components]
    return License.effective([*parts, *separator.components], plan=separator.plan, plan_note=separator.plan_note)


def separation_request(
    found: SeparationSource, stem: str, *, seed: int | None = None, extra: dict[str, Any] | None = None
) -> GenerationRequest:
    """The request a separator gets: the source as an exact (32-bit float) audio prompt, `extract`, one stem."""
    return GenerationRequest(
        prompt="stem separation",
        audio_prompt=AudioInput.from_array(found.audio, found.sample_rate, exact=True),
        audio_prompt_mode="extract",
        stem=stem,
        duration=found.audio.shape[1] / found.sample_rate,
        seed=seed,
        extra=dict(extra or {}),
    )


def probe_request(stem: str, duration: float) -> GenerationRequest:
    """A separation request for routing only (capabilities, availability, policy), before the source exists."""
    return GenerationRequest(
        prompt="stem separation",
        audio_prompt=AudioInput.from_array(np.zeros((2, 1), np.float32), 44100),
        audio_prompt_mode="extract",
        stem=stem,
        duration=duration,
    )


def check_separator(chosen: Candidate, names: Sequence[str], source: License, policy: LicensePolicy) -> License:
    """The stems' licence, once the separator offers every stem and the policy accepts the combined terms."""
    offered = chosen.backend.capabilities(chosen.model).stems
    missing = [s for s in names if s not in offered]
    if missing:
        raise InvalidRequestError(
            f"{chosen.backend.name}:{chosen.model} separates {', '.join(sorted(offered))}; not {', '.join(missing)}",
            field="stems",
            hint="ask for the stems it offers, or pick a separator that has them (demucs:htdemucs_6s: guitar, "
            "keyboard)",
        )
    license = combined_license(source, chosen.license)
    decision = policy.check(chosen.backend.name, chosen.model, license)
    if not decision.allowed:
        raise LicensePolicyError(chosen.backend.name, chosen.model, license.id, decision.clause)
    return license


def collect_stems(
    take: Callable[[str], Generation], names: Sequence[str], chosen: Candidate
) -> dict[str | None, Track]:
    """Every stem asked for, by role, from `take(stem)` (one call of the separator): one call gives every stem of
    Demucs or ElevenLabs; a model that extracts one stem per call (ACE-Step) is called again for each stem still
    missing. A separator that answers no track for a stem asked of it is a `ProviderError`."""
    by_role: dict[str | None, Track] = {}
    for name in names:
        if name in by_role:
            continue
        for track in take(name).tracks:
            by_role.setdefault(track.role, track)
        if name not in by_role:
            raise ProviderError(
                f"{chosen.backend.name}:{chosen.model} answered no {name} stem", provider=chosen.backend.name
            )
    return by_role


def stem_generation(
    by_role: dict[str | None, Track], names: Sequence[str], license: License, source: dict[str, Any]
) -> Generation:
    """The stems asked for, in order, each with the combined licence and a link to its source."""
    tracks = []
    for index, name in enumerate(names):
        track = by_role[name]
        provenance = track.provenance.model_copy(update={"track_index": index, "source": source})
        tracks.append(Track(track.audio, track.sample_rate, license, provenance))
    return Generation(tracks)
