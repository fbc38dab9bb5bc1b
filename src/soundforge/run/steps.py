"""The steps of a request's life that soundforge runs itself, around the provider's call.

Each step owns request fields (`capabilities.STEP_FIELDS`), says which doors may not ask for it (a streamed take is
heard before a step over the finished track could run), and does its work on the generation: the quality gate
judges each take and asks for another, the loop is cut from the take, stems are separated from the mix, the
watermark is embedded last. Output settings (format, loudness, trim, fades) are applied once, when the audio is
saved. The doors (`Client`, serve, batch) never restate these rules: `soundforge.run.plan.prepare` asks them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..audio import loops, pcm_sha256
from ..audio.edits import Edits
from ..audio.quality import QualityReport
from ..audio.quality import check as quality_check
from ..capabilities import STEP_FIELDS, Capabilities
from ..errors import InvalidRequestError
from ..ops.pricing import Cost
from ..request import GenerationRequest
from ..result import Generation, Track

#: How a request arrives: the library's generate (and agenerate), its stream (and astream), a serve job, a streamed
#: serve job, a batch row (its dry run plans the same way).
Door = Literal["generate", "stream", "job", "streamed_job", "row"]
DOORS: tuple[Door, ...] = ("generate", "stream", "job", "streamed_job", "row")
#: Doors whose take is heard while it is made.
STREAMED: frozenset[str] = frozenset({"stream", "streamed_job"})
#: Fresh takes `quality="retry"` makes when the request does not say how many.
DEFAULT_QUALITY_RETRIES = 2


@dataclass(frozen=True)
class Refusal:
    """A field a door cannot honour: which doors, why, and what to do instead."""

    doors: frozenset[str]
    why: str
    hint: str


@dataclass(frozen=True)
class Step:
    """One step: the fields it owns, whether a request asks for it, and the doors that refuse it."""

    name: str
    asked: Callable[[GenerationRequest], bool]
    refusal: Refusal | None = None

    @property
    def fields(self) -> frozenset[str]:
        """The request fields this step owns."""
        return STEP_FIELDS[self.name]

    def check_door(self, request: GenerationRequest, door: str) -> None:
        """Refuse the request at `door` when it asks for this step there and the step cannot run there."""
        if self.refusal is None or door not in self.refusal.doors or not self.asked(request):
            return
        raise InvalidRequestError(self.refusal.why, field=_asked_field(self, request), hint=self.refusal.hint)


def _asked_field(step: Step, request: GenerationRequest) -> str:
    """The field that asked for the step: the step's own name, or the output setting that is set."""
    if step.name == "output":
        return "loudness" if request.loudness is not None else Edits.of(request).asked()[0]
    return step.name


STEPS: tuple[Step, ...] = (
    Step(
        "output",
        lambda r: r.loudness is not None or bool(Edits.of(r)),
        Refusal(
            frozenset({"streamed_job"}),
            "a streamed job's stored file holds the samples that were streamed, and loudness, trim and fades would "
            "change them",
            "submit without stream, or apply them to the downloaded file",
        ),
    ),
    Step("cost", lambda r: r.max_cost is not None),
    Step(
        "quality",
        lambda r: r.quality == "retry",
        Refusal(
            STREAMED,
            "quality='retry' cannot be streamed: a rejected take would already have been heard",
            "use quality='report' to have the streamed take judged, or generate the audio to retry",
        ),
    ),
    Step(
        "loop",
        lambda r: bool(r.loop),
        Refusal(
            STREAMED,
            "loop=True cannot be streamed: the loop is cut from the finished take",
            "generate the loop, then play it repeatedly",
        ),
    ),
    Step(
        "stems",
        lambda r: bool(r.stems),
        Refusal(
            STREAMED,
            "stems cannot be streamed: they are separated from the finished track",
            "stream the track, then soundforge.separate(stream.generation), or submit without stream",
        ),
    ),
    Step(
        "watermark",
        lambda r: bool(r.watermark),
        Refusal(
            STREAMED,
            "watermark=True cannot be streamed: the watermark is computed over the finished track, and the chunks "
            "heard would carry none",
            "generate the track, or soundforge.run.watermarking.embed(stream.generation.tracks[0])",
        ),
    ),
)


def check_door(request: GenerationRequest, door: str) -> None:
    """Every step's refusal for `door`, in the steps' order (the first that applies is raised)."""
    for step in STEPS:
        step.check_door(request, door)


# --- the quality gate ---------------------------------------------------------------------------------------
def quality_takes(request: GenerationRequest) -> int:
    """How many takes the request may cost: 1, plus the fresh takes `quality="retry"` may make."""
    if request.quality != "retry":
        return 1
    return 1 + (request.quality_retries if request.quality_retries is not None else DEFAULT_QUALITY_RETRIES)


class QualityGate:
    """Judges each take of a request and says whether another is wanted (`quality="retry"`); the sync, async and
    streaming loops around the provider call share it, so the rule is written once."""

    def __init__(self, take: GenerationRequest) -> None:
        self.take = take
        self.rejected: list[dict[str, Any]] = []
        self.report: QualityReport | None = None

    def next_take(self, generation: Generation) -> GenerationRequest | None:
        """The request for another take when this one is rejected and retries are left; None when done."""
        if self.take.quality is None:
            return None
        self.report = judge(generation, self.take)
        if (
            self.report is None
            or self.report.passed
            or self.take.quality == "report"
            or 1 + len(self.rejected) >= quality_takes(self.take)
        ):
            return None
        self.rejected.append(_rejected(generation, self.report))
        self.take = self.take.model_copy(update={"seed": secrets.randbelow(2**31)})
        return self.take

    def result(self, generation: Generation) -> Generation:
        """The last take, with the gate's verdicts (and the takes it rejected) in its provenance."""
        return with_quality(generation, self.report, self.rejected)


def takes_cost(provenance: Mapping[str, Any]) -> Cost | None:
    """What every take behind a result cost: the kept take's cost plus those the quality gate rejected (each a
    paid call). `provenance` is a track's provenance as JSON (a job record's, a sidecar's). None when unknown."""
    kept = provenance.get("cost")
    if not kept:
        return None
    cost = Cost.model_validate(kept)
    rejected = [r.get("cost") for r in (provenance.get("quality") or {}).get("rejected", [])]
    if not rejected:
        return cost
    amounts = [cost.amount, *(Cost.model_validate(c).amount if c else None for c in rejected)]
    total = None if any(a is None for a in amounts) else sum(a for a in amounts if a is not None)
    return cost.model_copy(update={"amount": total, "detail": f"{len(amounts)} takes (quality gate)"})


def judge(generation: Generation, request: GenerationRequest) -> QualityReport | None:
    """The quality gate over every track of a take (the worst verdicts, check by check); None for a cache hit."""
    if generation.provenance.cache_hit:
        return None  # already judged when it was made
    reports = [quality_check(t.audio, t.sample_rate, request.duration) for t in generation.tracks]
    return reports[0] if len(reports) == 1 else QualityReport(checks=[c for r in reports for c in r.checks])


def _rejected(generation: Generation, report: QualityReport) -> dict[str, Any]:
    cost = generation.cost
    return {
        "seed": generation.provenance.seed,
        "failures": report.failures,
        "cost": cost.model_dump(mode="json") if cost is not None else None,
    }


def with_quality(generation: Generation, report: QualityReport | None, rejected: list[dict[str, Any]]) -> Generation:
    """The take with the gate's verdicts (and the takes it rejected) in every track's provenance."""
    if report is None:
        return generation
    verdict = {"passed": report.passed, "checks": [c.model_dump() for c in report.checks], "rejected": rejected}
    return Generation(
        [
            Track(t.audio, t.sample_rate, t.license, t.provenance.model_copy(update={"quality": verdict}))
            for t in generation.tracks
        ]
    )


# --- the loop -----------------------------------------------------------------------------------------------
def as_loop(
    generation: Generation,
    request: GenerationRequest,
    plan: loops.LoopPlan | None,
    capabilities: Callable[[str, str], Capabilities],
) -> Generation:
    """Each track as a loop: cut from the take (soundforge's loop), or marked as the provider's own."""
    tracks = []
    for track in generation.tracks:
        provenance = track.provenance
        native = plan is None and "loop" in capabilities(provenance.provider, provenance.model).fields
        if native:
            record = {"start": 0, "end": int(track.audio.shape[1]), "made_by": provenance.provider}
            tracks.append(
                Track(track.audio, track.sample_rate, track.license, provenance.model_copy(update={"loop": record}))
            )
            continue
        # A fallback without a loop mode answered a request planned for one: the loop is cut from what it made.
        cut_plan = plan or loops.plan(request.model_copy(update={"duration": track.duration * 0.75}))
        loop = loops.cut(track.audio, track.sample_rate, cut_plan, _reported_bpm(provenance.parameters))
        update = {"loop": loop.record(track.sample_rate), "pcm_sha256": pcm_sha256(loop.audio)}
        tracks.append(Track(loop.audio, track.sample_rate, track.license, provenance.model_copy(update=update)))
    return Generation(tracks)


def _reported_bpm(parameters: dict[str, Any]) -> float | None:
    """The tempo a provider says it played (the synthesizer's `tempo_bpm`), whose bar grid starts at zero."""
    value = parameters.get("tempo_bpm")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
