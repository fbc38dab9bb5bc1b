"""A request's plan: everything that can be decided before any work, decided once, for every door.

`prepare` is the only place that asks the router where a request goes. The library's `generate` and `stream`, serve's
admission and batch's planning (its dry run too) call it, so they accept and refuse alike, with the same error:
- the door's refusals (a streamed take cannot be looped, retried, separated or watermarked; a streamed job's stored
  file cannot be edited) and the job limits of a door that has them;
- the route (licence policy, capabilities, availability, cost and budget for each candidate);
- the loop's take: a loop is cut from a longer take, and that take is what is routed and checked against the
  provider's limits (a provider that loops natively gets the request as it is);
- the stems' separator and the stems' combined licence;
- AudioSeal's code and weights for a watermark;
- what the request may really cost: the audio it will make and its estimate, counting every take
  `quality="retry"` may pay for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..audio import loops
from ..backends.adapters import is_local
from ..errors import InvalidRequestError
from ..licences.licensing import License
from ..licences.policy import LicensePolicy
from ..licences.provenance import Attempt
from ..ops.budget import Budget
from ..ops.pricing import Cost
from ..request import GenerationRequest
from ..routing import Candidate, Router
from . import separation, watermarking
from .steps import DOORS, STREAMED, Door, check_door, quality_takes

__all__ = ["DOORS", "Door", "JobLimits", "Plan", "check_one_output", "prepare", "stems_source"]


@dataclass(frozen=True)
class JobLimits:
    """What one serve job or batch row may ask (`[serve]`): checked on the audio that will really be made."""

    #: The most seconds of audio one job may make, every take and output counted (`[serve] max_job_seconds`).
    max_seconds: float | None = None
    #: A serve job or a batch row stores one track: more outputs would be made and thrown away.
    one_output: bool = False
    #: The local folders a job's adapters may come from (`[serve] adapter_folders`); None: any file the caller
    #: names (the library, a batch manifest: the caller's own files). A client of a service names no other path.
    adapter_folders: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Plan:
    """One request's plan. `take` is what the provider is asked for; `candidates` are tried in order."""

    request: GenerationRequest
    provider: str | None
    door: Door
    take: GenerationRequest
    candidates: list[Candidate]
    skipped: list[Attempt] = field(default_factory=list)
    #: How the loop is cut from the take; None when the request is no loop or its provider loops natively.
    loop: loops.LoopPlan | None = None
    #: Where the stems come from (`provider:model`), when the request asks for stems.
    separator: str | None = None
    #: The licence of the result: the chosen candidate's, or the stems' combined licence.
    license: License | None = None

    @property
    def chosen(self) -> Candidate:
        """The first candidate: the one that runs unless it fails and a fallback takes over."""
        return self.candidates[0]

    @property
    def takes(self) -> int:
        """How many takes the request may pay for (1, or 1 + the retries of `quality="retry"`)."""
        return quality_takes(self.request)

    @property
    def audio_seconds(self) -> float:
        """The seconds of audio the request may make: the take's length, times outputs, times takes."""
        return self.take.duration * self.take.num_outputs * self.takes

    @property
    def estimate(self) -> Cost:
        """What the request may cost with the chosen candidate, every take counted."""
        return scaled(self.chosen.estimate, self.takes)


def scaled(estimate: Cost, takes: int) -> Cost:
    """An estimate for `takes` calls of the same kind."""
    if takes == 1 or estimate.amount is None:
        return estimate
    detail = f"{estimate.detail}; " if estimate.detail else ""
    return estimate.model_copy(update={"amount": estimate.amount * takes, "detail": f"{detail}up to {takes} takes"})


def prepare(
    router: Router,
    policy: LicensePolicy,
    request: GenerationRequest,
    provider: str | None,
    door: Door,
    *,
    limits: JobLimits | None = None,
    budget: Budget | None = None,
) -> Plan:
    """Plan `request` arriving through `door`; raise the first reason it cannot run, before any work.

    `budget` is checked against every take the request may pay for (the router checks each candidate's single
    call against the client's own budget).
    """
    if door not in DOORS:
        raise ValueError(f"unknown door {door!r}")
    check_door(request, door)
    if limits is not None and limits.one_output:
        check_one_output(request)
    if limits is not None and limits.adapter_folders is not None:
        check_adapter_folders(request, limits.adapter_folders)
    if limits is not None:  # the least this request makes, before routing: a refusal that needs no provider
        _check_seconds(request.duration * request.num_outputs * quality_takes(request), request, limits)
    streaming = door in STREAMED
    candidates, skipped = router.plan(request, provider, streaming=streaming)
    take, loop = request, None
    if request.loop:
        chosen = candidates[0]
        native = "loop" in chosen.backend.capabilities(chosen.model).fields
        if request.loop_bars is not None or not native:
            loop = loops.plan(request)
            take = loops.take_request(request, loop)
            # The take is what runs: it is routed and checked (the provider's maximum duration) itself.
            candidates, skipped = router.plan(take, provider)
    separator, license = None, candidates[0].license
    if request.stems:
        separator, license = stems_source(router, policy, request, candidates[0])
    if request.watermark:
        watermarking.check_ready()  # the code and the weights, before any take is paid for
    plan = Plan(request, provider, door, take, candidates, skipped, loop, separator, license)
    if limits is not None:
        _check_seconds(plan.audio_seconds, request, limits)
    if budget is not None and plan.takes > 1:
        budget.check(plan.chosen.backend.name, plan.estimate)
    return plan


def check_one_output(request: GenerationRequest) -> None:
    """A serve job or a batch row stores one track: more outputs would be made, paid for and thrown away."""
    if request.num_outputs > 1:
        raise InvalidRequestError(
            "one job (or batch row) makes one track; submit one per variation, each with its own seed, instead of "
            "num_outputs > 1",
            field="num_outputs",
        )


def check_adapter_folders(request: GenerationRequest, folders: tuple[str, ...]) -> None:
    """Refuse an adapter on a local path outside `folders`: a service's client must not make the server read (or
    learn of) any file it can reach. Hub ids pass (fetched as the provider's downloads allow)."""
    for adapter in request.adapters or ():
        if not is_local(adapter.source):
            continue
        real = os.path.realpath(os.path.expanduser(adapter.source))
        allowed = [os.path.realpath(folder) for folder in folders]
        if not any(os.path.commonpath([real, folder]) == folder for folder in allowed):
            raise InvalidRequestError(
                f"adapter {adapter.source!r}: this service loads local adapters only from its adapter folders",
                field="adapters",
                hint="name a hub adapter (owner/name), or ask the operator to place it in one of [serve] "
                "adapter_folders and name its path there",
            )


def _check_seconds(seconds: float, request: GenerationRequest, limits: JobLimits) -> None:
    """Refuse a job that would make more audio than the service allows."""
    if limits.max_seconds is None or seconds <= limits.max_seconds:
        return
    counted = " (outputs, quality takes and a loop's longer take counted)" if seconds != request.duration else ""
    raise InvalidRequestError(
        f"this job would make {seconds:g} s of audio{counted}; this server allows {limits.max_seconds:g} s per job",
        field="duration",
        hint="ask the operator to raise [serve] max_job_seconds, or ask for less",
    )


def stems_source(
    router: Router, policy: LicensePolicy, request: GenerationRequest, maker: Candidate
) -> tuple[str, License]:
    """Where the stems of a request come from, and the stems' licence, checked before anything is generated: the
    model that makes the track when it extracts every stem asked for itself (ACE-Step's base model; the stems have
    its licence), else Demucs (the stems have the track's licence and Demucs'), refused here when missing, without
    those stems or refused by the policy."""
    if not request.stems:
        raise InvalidRequestError("the request asks for no stems", field="stems")
    caps = maker.backend.capabilities(maker.model)
    if "extract" in caps.audio_prompt_modes and set(request.stems) <= caps.stems:
        return f"{maker.backend.name}:{maker.model}", maker.license
    probe = separation.probe_request(request.stems[0], request.duration)
    chosen = router.plan(probe, separation.DEFAULT_SEPARATOR)[0][0]
    license = separation.check_separator(chosen, request.stems, maker.license, policy)
    return f"{chosen.backend.name}:{chosen.model}", license
