"""Provenance: how a result was made, recorded with every track and embedded in every saved file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..audio import TRAINED_ALGORITHMIC_MEDIA

#: How a cost is counted (`soundforge.ops.pricing` estimates and settles costs; the value lives with the
#: provenance that carries it).
Basis = Literal[
    "per_generation",
    "per_audio_second",
    "per_started_minute",
    "per_gpu_second",
    "local_compute",
    "cache_hit",
    "unknown",
]


class Cost(BaseModel):
    """The cost of one generation call: money (when the price is known) and, for local engines, compute time.

    `estimated` is True when the amount was worked out from the registry rather than reported by the vendor.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: float | None
    currency: str | None = "USD"
    basis: Basis
    estimated: bool = True
    confirmed: bool = False
    #: The price per unit of the basis (per GPU-second: what `settle` multiplies the reported seconds by).
    rate: float | None = None
    compute_seconds: float | None = None
    device: str | None = None
    source: str | None = None
    detail: str = ""

    @property
    def known(self) -> bool:
        """Whether the money amount is known (local engines: yes, zero)."""
        return self.amount is not None

    def describe(self) -> str:
        """One line for people: "$0.2000 (estimated, per generation)"."""
        if self.basis == "local_compute":
            seconds = f"{self.compute_seconds:.1f} s" if self.compute_seconds is not None else "compute"
            return f"{seconds} on {self.device or 'this machine'} (local, no charge)"
        if self.basis == "cache_hit":
            return "nothing (served from the result cache)"
        if self.amount is None:
            return "unknown price" + (f" ({self.detail})" if self.detail else "")
        how = "estimated" if self.estimated else "reported"
        return f"${self.amount:.4f} ({how}, {self.basis.replace('_', ' ')})"


class Attempt(BaseModel):
    """One provider tried while routing a request, successful or not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    model: str | None = None
    outcome: Literal["ok", "failed", "skipped"]
    error: str | None = None
    error_code: str | None = None
    seconds: float = 0.0


class Timings(BaseModel):
    """Seconds spent in each phase."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    load: float = 0.0
    generate: float = 0.0
    total: float = 0.0


class Provenance(BaseModel):
    """Every fact needed to explain and reproduce a result; `ai_generated` is always true."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ai_generated: Literal[True] = True
    digital_source_type: str = TRAINED_ALGORITHMIC_MEDIA
    provider: str
    model: str
    model_revision: str | None = None
    track_index: int = 0
    role: str | None = Field(None, description="what this track is of a song, e.g. the stem 'vocals'; None: the mix")
    seed: int | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, description="effective engine parameters")
    request: dict[str, Any] = Field(default_factory=dict, description="the request as given (audio inputs hashed)")
    soundforge_version: str
    engine: dict[str, str] = Field(default_factory=dict, description="engine package versions")
    device: str = "cpu"
    timings: Timings = Field(default_factory=Timings)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    pcm_sha256: str
    sample_rate: int
    channels: int
    attempts: list[Attempt] = Field(default_factory=list)
    requested: str | None = Field(None, description="the provider spec the caller asked for (`auto` included)")
    unofficial: bool = False
    watermarks: list[str] = Field(
        default_factory=list, description="watermarks the provider embeds in the audio itself, e.g. 'SynthID (Google)'"
    )
    cost: Cost | None = Field(
        None, description="what the call cost: reported by the vendor, or estimated (docs/prices.md)"
    )
    adapters: list[dict[str, Any]] | None = Field(
        None,
        description="style adapters applied to the model (request adapters): each one's source, revision, scale, "
        "weight file with its sha256, and licence id",
    )
    cache_hit: bool = Field(False, description="served from soundforge's result cache: no call was made this time")
    quality: dict[str, Any] | None = Field(
        None, description="the quality gate's verdicts and the takes it rejected (request quality='report'/'retry')"
    )
    source: dict[str, Any] | None = Field(
        None,
        description="what this track was made from, for a stem separated by soundforge.separate: the source's "
        "pcm_sha256 and, where known, its provider, model and licence",
    )
    watermark: dict[str, Any] | None = Field(
        None,
        description="the invisible watermark soundforge embedded (watermark=True, soundforge.run.watermarking): "
        "method, model, payload and the PCM hash before marking that the payload comes from",
    )
    loop: dict[str, Any] | None = Field(
        None,
        description="loop points of a seamless loop (request loop=True): start, end (samples), bars, bpm, where it "
        "was cut and who made it (the provider's loop mode, or soundforge)",
    )

    @property
    def substitution(self) -> str | None:
        """When a fallback made the result instead of the provider asked for: what was asked, what ran and why.

        None when the provider asked for made it (or `auto` chose it, which is no substitution).
        """
        if self.requested is None or self.requested == "auto":
            return None
        asked = self.requested.partition(":")[0]
        if asked == self.provider:
            return None
        why = next((a.error for a in self.attempts if a.outcome != "ok" and a.error), None)
        return f"{self.requested} was asked for; the fallback {self.provider}:{self.model} made this" + (
            f" ({self.requested}: {why})" if why else ""
        )
