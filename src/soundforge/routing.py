"""Provider specs and the choice of provider: aliases, `auto`, fallbacks, capability and policy checks.

Everything here runs before any model loads or any request leaves the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .backends import PLANNED, Backend, known_providers
from .backends.adapters import AdapterFiles, adapter_card, adapter_files
from .capabilities import Capabilities
from .config import Config
from .errors import (
    BudgetExceededError,
    ConfigurationError,
    InvalidRequestError,
    LicensePolicyError,
    ModelNotAvailableError,
    ProviderUnavailableError,
    SoundforgeError,
    UnsupportedFeatureError,
)
from .licences.licensing import License, LicenseRegistry
from .licences.provenance import Attempt
from .ops.budget import Budget
from .ops.health import ProviderHealth
from .ops.pricing import Cost, PriceRegistry
from .request import GenerationRequest

AUTO = "auto"
#: The estimate of a candidate made without one (a price registry knows nothing of it).
UNKNOWN_COST = Cost(amount=None, basis="unknown")

#: Provider name -> Backend instance (the client caches them).
BackendGetter = Callable[[str], Backend]


@dataclass(frozen=True)
class ProviderSpec:
    """A parsed `"provider"` or `"provider:model"` string."""

    provider: str
    model: str | None = None

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider


def parse_spec(spec: str, aliases: dict[str, str] | None = None) -> ProviderSpec:
    """Parse a provider spec, resolving aliases (one level) first."""
    text = spec.strip()
    if not text:
        raise InvalidRequestError("empty provider spec", field="provider", hint="use e.g. 'synth' or 'auto'")
    if aliases and text in aliases:
        text = aliases[text].strip()
    provider, _, model = text.partition(":")
    return ProviderSpec(provider.strip().lower(), model.strip() or None)


class Origin(Enum):
    """Why a provider is considered: the caller named it, `auto` chose it, or it is a configured fallback."""

    EXPLICIT = "explicit"
    AUTO = "auto"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Candidate:
    """A provider/model that passed every check and will be tried, in order."""

    backend: Backend
    model: str
    license: License
    #: What the call is expected to cost (`Cost.amount` None: the price is unknown).
    estimate: Cost = UNKNOWN_COST
    #: The request's style adapters, found and hashed (their licences are in `license`).
    adapters: tuple[AdapterFiles, ...] = ()


@dataclass(frozen=True)
class ProviderStatus:
    """One row of `Client.providers()`: can it run here, and under which licence."""

    name: str
    description: str
    available: bool
    reason: str
    fix: str | None
    default_model: str
    models: list[str]
    license: License | None
    local: bool
    policy_allows: bool
    policy_clause: str = ""
    capabilities: Capabilities | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON (the CLI's `providers --json` and serve's `/v1/providers` print this one shape)."""
        return {
            "name": self.name,
            "description": self.description,
            "available": self.available,
            "reason": self.reason,
            "fix": self.fix,
            "default_model": self.default_model,
            "models": self.models,
            "local": self.local,
            "license": self.license.model_dump(mode="json", exclude={"components"}) if self.license else None,
            "policy_allows": self.policy_allows,
            "policy_clause": self.policy_clause,
            # The default model's: what a form or an agent may offer (None where the backend cannot load here).
            "capabilities": self.capabilities.model_dump(mode="json") if self.capabilities else None,
        }


class Router:
    """Turns a request and a spec into the ordered candidates to try, recording every skip."""

    def __init__(
        self,
        config: Config,
        registry: LicenseRegistry,
        get_backend: BackendGetter,
        *,
        names: Callable[[], list[str]] = known_providers,
        prices: PriceRegistry | None = None,
        budget: Budget | None = None,
        health: ProviderHealth | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        for source, declared in config.adapters.items():  # a declaration naming no known licence fails at once
            registry.check_adapter_license(source, declared)
        self.get_backend = get_backend
        self.names = names
        self.prices = prices or PriceRegistry.default()
        self.budget = budget
        self.health = health or ProviderHealth(
            cooldown_after=config.cooldown_after,
            cooldown_seconds=config.cooldown_seconds,
            persist=config.strategy == "fastest",
        )

    def estimate(self, backend: Backend, model: str, request: GenerationRequest) -> Cost:
        """What a call to `backend:model` for `request` is expected to cost (before anything runs)."""
        plan = self.config.provider_settings(backend.name).get("plan")
        return self.prices.estimate(
            backend.name,
            model,
            duration=request.duration,
            outputs=request.num_outputs,
            local=backend.local,
            plan=str(plan) if plan else None,
        )

    def _check_cost(self, provider: str, estimate: Cost, request: GenerationRequest) -> None:
        """The request's `max_cost` and the budget, checked like the licence policy: before the call."""
        if request.max_cost is not None and estimate.basis != "local_compute":
            if estimate.amount is None:
                raise BudgetExceededError(
                    f"{provider}'s price is unknown ({estimate.detail or 'no price record'}), so max_cost "
                    f"{request.max_cost:g} cannot be checked",
                    provider=provider,
                    hint="drop max_cost, or pick a provider whose price soundforge knows (docs/prices.md)",
                )
            if estimate.amount > request.max_cost:
                raise BudgetExceededError(
                    f"{provider} would cost {estimate.describe()}, over max_cost {request.max_cost:g}",
                    provider=provider,
                )
        if self.budget is not None:
            self.budget.check(provider, estimate)

    def license_for(self, backend: Backend, model: str) -> License:
        """The licence of `model` run by `backend`, for the plan configured for that provider."""
        found = backend.license_for(model)
        if found is not None:
            return found
        plan = self.config.provider_settings(backend.name).get("plan")
        return self.registry.license_for(backend.name, model, plan=plan, card=backend.model_card(model))

    def supported_by(self, field: str, value: object = None) -> list[str]:
        """Providers whose default model honours `field` (set to `value`, when given: a mode, a stem), installed
        here or not (`setup_hint` says what the others need): a user asking for a melody should hear that musicgen
        can, even before installing it."""
        names = []
        for name in self.names():
            try:
                backend = self.get_backend(name)
                caps = backend.capabilities(self.model_for(backend, None))
                if caps.honours(field, value) if value is not None else caps.supports(field):
                    names.append(name)
            except SoundforgeError:
                continue
        return names

    def setup_hint(self, names: list[str]) -> str:
        """For the providers in `names` that cannot run here: what each needs (the install or key to set)."""
        needs = []
        for name in names:
            try:
                status = self.get_backend(name).availability()
            except SoundforgeError:
                continue
            if not status.available:
                needs.append(f"{name}: {status.fix or status.reason}")
        return "; ".join(needs)

    def passing_policy(self, request: GenerationRequest | None = None, *, set_up: bool = True) -> list[str]:
        """Providers (default models) that the policy allows: those set up here, or with `set_up=False` those that
        are not (a refusal names them too: not set up is not refused)."""
        names = []
        for name in self.names():
            try:
                backend = self.get_backend(name)
                model = self.model_for(backend, None)
                if (
                    backend.availability().available is set_up
                    and self.config.policy.check(name, model, self.license_for(backend, model)).allowed
                    and (request is None or self._fits(backend, model, request))
                ):
                    names.append(name)
            except SoundforgeError:
                continue
        return names

    def _fits(self, backend: Backend, model: str, request: GenerationRequest) -> bool:
        try:
            backend.check(request, model)
            return True
        except SoundforgeError:
            return False

    def model_for(self, backend: Backend, model: str | None = None) -> str:
        """The model a spec means: the one it names, else the provider's configured `model`, else its default."""
        return model or self.config.provider_settings(backend.name).get("model") or backend.default_model

    def _prepare(
        self, spec: ProviderSpec, request: GenerationRequest, origin: Origin, streaming: bool = False
    ) -> Candidate:
        """Check one spec completely (policy, availability, capabilities, weights); raise why it cannot run.

        The licence policy is checked before the weights, so a refused model is never looked for or fetched.
        """
        try:
            backend = self.get_backend(spec.provider)
        except ProviderUnavailableError:
            self._check_planned(spec, request)
            raise
        cooling = self.health.cooling(backend.name) if origin is not Origin.EXPLICIT else None
        if cooling is not None:  # a provider that keeps failing is passed over by auto and fallbacks for a while
            raise ProviderUnavailableError(spec.provider, cooling, fix="it is tried again when the cool-down ends")
        model = self.model_for(backend, spec.model)
        # The licence is known without the engine: a refused model says so even where it could not run anyway.
        license = self.license_for(backend, model)
        self._check_policy(backend.name, model, license, request)
        estimate = self.estimate(backend, model, request)
        self._check_cost(backend.name, estimate, request)
        status = backend.availability(request)
        if not status.available:
            raise ProviderUnavailableError(spec.provider, status.reason, fix=status.fix)
        try:
            backend.check(request, model)
            if streaming:
                backend.check_stream(request, model)
        except UnsupportedFeatureError as exc:
            asked = True if exc.field == "streaming" else getattr(request, exc.field or "", None)
            others = self.supported_by(exc.field or "", asked)
            exc.offer(others, not_set_up=self.setup_hint(others))
            raise
        adapters: tuple[AdapterFiles, ...] = ()
        if request.adapters:
            license, adapters = self._adapters(backend, model, license, request, allow_fetch=origin is not Origin.AUTO)
        # Only a provider somebody named may start a download; `auto` never fetches weights on its own.
        ready = backend.model_availability(model, allow_fetch=origin is not Origin.AUTO, request=request)
        if not ready.available:
            raise ModelNotAvailableError(backend.name, model, ready.reason, fix=ready.fix)
        return Candidate(backend, model, license, estimate, adapters)

    def _adapters(
        self, backend: Backend, model: str, license: License, request: GenerationRequest, *, allow_fetch: bool
    ) -> tuple[License, tuple[AdapterFiles, ...]]:
        """The request's adapters: each one's licence from its card or your declaration, added to the model's and
        checked by the policy before any adapter file is read or fetched; then their files, found and hashed."""
        assert request.adapters
        settings = self.config.provider_settings(backend.name)
        policy = self.config.policy
        parts = [
            (
                a.source,
                self.registry.adapter_component(
                    a.source, adapter_card(a, settings, allow_fetch=allow_fetch), self.config.adapters.get(a.source)
                ),
            )
            for a in request.adapters
        ]
        combined = license.with_components([component for _, component in parts])
        decision = policy.check(backend.name, model, combined)
        if not decision.allowed:
            refused = [
                source
                for source, component in parts
                if not policy.check(backend.name, model, license.with_components([component])).allowed
            ] or [parts[0][0]]
            clause = f"the adapter {', '.join(refused)} brings that licence: {decision.clause}"
            error = LicensePolicyError(backend.name, model, combined.id, clause, self.passing_policy(request))
            error.hint = (
                "pick an adapter whose licence the policy accepts, "
                f'or, if you know its terms, declare them: [adapters."{refused[0]}"] license = "<SPDX id>" and '
                f'reason = "..." in the config, or LicenseRegistry.declare_adapter("{refused[0]}", "<SPDX id>", '
                'reason="...")'
            )
            raise error
        found = tuple(
            adapter_files(a, settings, allow_fetch=allow_fetch, provider=backend.name) for a in request.adapters
        )
        return combined, found

    def _check_policy(self, provider: str, model: str, license: License, request: GenerationRequest) -> None:
        decision = self.config.policy.check(provider, model, license)
        if not decision.allowed:
            error = LicensePolicyError(provider, model, license.id, decision.clause, self.passing_policy(request))
            elsewhere = self.passing_policy(request, set_up=False)
            if elsewhere:
                error.hint = f"{error.hint}; allowed too once set up here: {', '.join(elsewhere)}"
            raise error

    def _check_planned(self, spec: ProviderSpec, request: GenerationRequest) -> None:
        """A provider soundforge names but cannot run (planned, no public API) is still checked by the policy."""
        planned = PLANNED.get(spec.provider)
        if planned is None:
            return
        model = spec.model or planned.default_model
        license = self._planned_license(spec.provider, model)
        if license is not None:
            self._check_policy(spec.provider, model, license, request)

    def _planned_license(self, name: str, model: str) -> License | None:
        """The recorded licence of a provider that cannot be made here (planned, or its backend failed to load)."""
        planned = PLANNED.get(name)
        plan = self.config.provider_settings(name).get("plan")
        try:
            return self.registry.license_for(planned.license_key if planned else name, model, plan=plan)
        except SoundforgeError:
            return None

    def status(self, name: str) -> ProviderStatus:
        """One provider as `Client.providers()` lists it: can it run here (default model's weights included,
        without fetching), its models, its licence and the policy's verdict. Never loads a model."""
        try:
            backend = self.get_backend(name)
        except ProviderUnavailableError as exc:
            planned = PLANNED.get(name)
            model = planned.default_model if planned else ""
            license = self._planned_license(name, model)
            decision = self.config.policy.check(name, model, license) if license else None
            return ProviderStatus(
                name=name,
                description=planned.description if planned else "",
                available=False,
                reason=exc.reason,
                fix=exc.fix,
                default_model=model,
                models=[model] if model else [],
                license=license,
                local=bool(planned and planned.local),
                policy_allows=bool(decision and decision.allowed),
                policy_clause=decision.clause if decision else "no licence record",
            )
        model = self.model_for(backend)
        available = backend.availability()
        if available.available:
            available = backend.model_availability(model, allow_fetch=False)
        license = self.license_for(backend, model)
        decision = self.config.policy.check(name, model, license)
        return ProviderStatus(
            name=name,
            description=backend.description,
            available=available.available,
            reason=available.reason,
            fix=available.fix,
            default_model=model,
            models=[m.id for m in backend.models()],
            license=license,
            local=backend.local,
            policy_allows=decision.allowed,
            policy_clause=decision.clause,
            capabilities=backend.capabilities(model),
        )

    def plan(
        self, request: GenerationRequest, spec: str | None, *, streaming: bool = False
    ) -> tuple[list[Candidate], list[Attempt]]:
        """The candidates to try in order, and the attempts already skipped while choosing them (with
        `streaming`, only those that can stream the request).

        An explicit provider that is wrong for the request raises at once (the user must change the
        request or the provider); only configured fallbacks are tried after it.
        """
        wanted = parse_spec(spec or self.config.default_provider, self.config.aliases)
        skipped: list[Attempt] = []
        refusals: list[SoundforgeError] = []  # the errors behind `skipped`, in the same order
        candidates: list[Candidate] = []
        if wanted.provider == AUTO:
            for name in self.config.auto_order:
                choice = ProviderSpec(name, wanted.model)
                self._try_add(choice, request, candidates, skipped, Origin.AUTO, streaming, refusals)
            candidates = self._ordered(candidates)
        else:
            self._try_add(wanted, request, candidates, skipped, Origin.EXPLICIT, streaming, refusals)
        for fallback in self.config.fallbacks:
            fb = parse_spec(fallback, self.config.aliases)
            if fb.provider in (AUTO, *(c.backend.name for c in candidates)):
                continue
            self._try_add(fb, request, candidates, skipped, Origin.FALLBACK, streaming, refusals)
        if not candidates:
            raise _nothing_fits(wanted, skipped, refusals)
        return candidates, skipped

    def _ordered(self, candidates: list[Candidate]) -> list[Candidate]:
        """`auto`'s candidates in the configured strategy's order (stable: ties keep `auto_order`)."""
        strategy = self.config.strategy
        if strategy == "cheapest":
            return sorted(candidates, key=lambda c: (c.estimate.amount is None, c.estimate.amount or 0.0))
        if strategy == "fastest":

            def speed(c: Candidate) -> tuple[bool, float]:
                measured = self.health.latency(c.backend.name, c.model)
                return measured is None, measured or 0.0

            return sorted(candidates, key=speed)
        return candidates

    def _try_add(
        self,
        spec: ProviderSpec,
        request: GenerationRequest,
        candidates: list[Candidate],
        skipped: list[Attempt],
        origin: Origin,
        streaming: bool = False,
        refusals: list[SoundforgeError] | None = None,
    ) -> None:
        """Add the spec as a candidate, or record why it was skipped; raise when that ends the routing.

        The provider the caller named ends it with any error about the request or the policy, and with an
        unavailability only when no fallback could step in. `auto`'s choices and fallbacks are skipped instead.
        """
        try:
            candidates.append(self._prepare(spec, request, origin, streaming))
        except ConfigurationError:
            raise  # a mistake in the configuration is reported as itself, whichever provider was asked for
        except SoundforgeError as exc:
            set_up_here = isinstance(exc, (ProviderUnavailableError, ModelNotAvailableError))
            if origin is Origin.EXPLICIT and not (set_up_here and self.config.fallbacks):
                raise
            skipped.append(Attempt(provider=str(spec), outcome="skipped", error=str(exc), error_code=exc.code))
            if refusals is not None:
                refusals.append(exc)


#: Skips that say something about the request itself, not about this machine's set-up.
_ABOUT_THE_REQUEST = ("invalid_request", "unsupported_feature", "license_policy", "budget_exceeded")


def _nothing_fits(wanted: ProviderSpec, skipped: list[Attempt], refusals: list[SoundforgeError]) -> SoundforgeError:
    """One short error when no provider can take the request: the cause that applies to the request first, then
    the providers grouped by why they were passed over (not every provider's full message on one line)."""
    groups: dict[str, list[str]] = {}
    for attempt in skipped:
        groups.setdefault(_WHY.get(attempt.error_code or "", "failed"), []).append(attempt.provider)
    summary = "; ".join(f"{why}: {', '.join(names)}" for why, names in groups.items())
    about_request = [a for a in skipped if a.error_code in _ABOUT_THE_REQUEST]
    if about_request:
        lead = about_request[0]
        if lead.error_code == "license_policy":
            # The policy's own error (exit code 4, as documented), its hint naming what passes, set up or not.
            refusal = next(e for e in refusals if e.code == "license_policy")
            return refusal.with_message(f"no provider fits the licence policy: {refusal.message}")
        if lead.error_code == "budget_exceeded":
            return BudgetExceededError(f"no provider fits the cost limit: {lead.error}", hint=summary)
        return InvalidRequestError(f"no provider can make this request: {lead.provider}: {lead.error}", hint=summary)
    return ProviderUnavailableError(str(wanted), "no provider that fits this request can run here", fix=summary)


_WHY = {
    "invalid_request": "cannot make this request",
    "unsupported_feature": "cannot make this request",
    "license_policy": "refused by the licence policy",
    "budget_exceeded": "over the cost limit",
    "provider_unavailable": "not set up here",
    "model_not_available": "weights not here",
    "authentication_failed": "no valid key",
}
