"""The licence policy: which models a product may use, decided before any compute or network call.

A policy says what the product needs (commercial use), what it accepts (conditional terms,
attribution duties) and the facts that conditional licences ask about (annual revenue,
registration with a vendor). `LicensePolicy.check` returns a decision with the clause that decided it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .licensing import CommercialUse, Condition, License


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome of checking one licence: `allowed`, and the clause that decided it when refused."""

    allowed: bool
    clause: str = ""


class LicensePolicy(BaseModel):
    """What a product may use. The default policy allows everything (and still records every licence).

    Args:
        require_commercial_use: refuse models whose outputs may not be used commercially.
        allow_conditional: with `require_commercial_use`, accept conditional terms whose conditions the
            declared facts meet (e.g. the Stability AI Community License under US$1M revenue).
        allow_attribution: accept licences that oblige you to show an attribution.
        allow_unknown: accept licences whose commercial status the registry cannot tell.
        annual_revenue_usd: your (and your affiliates') annual revenue, for revenue-capped licences.
        attestations: facts you declare true, e.g. `stability_registered`, `elevenlabs_use_within_plan`.
        allow: provider/model patterns (`"synth"`, `"stable-audio:*"`); when non-empty only these pass.
        deny: provider/model patterns that never pass.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    require_commercial_use: bool = False
    allow_conditional: bool = True
    allow_attribution: bool = True
    allow_unknown: bool = False
    annual_revenue_usd: float | None = Field(None, ge=0)
    attestations: frozenset[str] = frozenset()
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @classmethod
    def commercial(cls, **kwargs: Any) -> LicensePolicy:
        """A policy for a commercial product: outputs must be usable commercially."""
        return cls(require_commercial_use=True, **kwargs)

    def check(self, provider: str, model: str, license: License) -> PolicyDecision:
        """Decide whether `provider:model` under `license` may be used."""
        spec = f"{provider}:{model}"
        for pattern in self.deny:
            if _matches(pattern, provider, spec):
                return PolicyDecision(False, f"denied by the policy's deny list ({pattern!r})")
        if self.allow and not any(_matches(p, provider, spec) for p in self.allow):
            return PolicyDecision(False, f"not in the policy's allow list ({', '.join(self.allow)})")
        if license.attribution_required and not self.allow_attribution:
            return PolicyDecision(
                False,
                f"requires attribution ({license.attribution!r}) and the policy does not accept attribution duties",
            )
        # A licence that ends when a fact is not met (the Stability AI Community License above US$1M revenue)
        # allows nothing, commercial or not, to whoever declared that fact.
        for condition in license.conditions:
            if condition.scope == "any_use" and self._declared(condition) and not self._meets(condition, license.plan):
                return PolicyDecision(
                    False, f"the licence's grants terminate: {condition.text} [{_how_to_declare(condition, provider)}]"
                )
        if not self.require_commercial_use:
            return PolicyDecision(True)
        status = license.commercial_use
        if status is CommercialUse.NOT_ALLOWED:
            why = license.restrictions[0] if license.restrictions else license.output_ownership
            return PolicyDecision(False, f"commercial use is not allowed under {license.name} ({why})")
        if status is CommercialUse.UNKNOWN and not self.allow_unknown:
            return PolicyDecision(
                False,
                "the commercial status of this licence is unknown (set allow_unknown to accept it at your own risk)",
            )
        # Conditions of every component are checked, whatever else is unknown: allow_unknown accepts the unknown
        # part, never the conditions of the parts that are known.
        if license.conditions and not self.allow_conditional:
            return PolicyDecision(
                False,
                f"commercial use is conditional ({license.condition}) and the policy does not accept conditional terms",
            )
        unmet = self.unmet_conditions(license)
        if unmet:
            texts = "; ".join(f"{c.text} [{_how_to_declare(c, provider)}]" for c in unmet)
            return PolicyDecision(
                False, f"commercial use is conditional and these conditions are not declared met: {texts}"
            )
        return PolicyDecision(True)

    def unmet_conditions(self, license: License) -> list[Condition]:
        """The conditions of `license` that the facts this policy declares do not meet."""
        return [c for c in license.conditions if not self._meets(c, license.plan)]

    def _declared(self, condition: Condition) -> bool:
        """Whether the policy states the fact a condition is about (revenue, an attestation)."""
        if condition.kind == "revenue_at_most":
            return self.annual_revenue_usd is not None
        return True

    def _meets(self, condition: Condition, plan: str | None) -> bool:
        if condition.kind == "revenue_at_most":
            return (
                self.annual_revenue_usd is not None
                and condition.limit is not None
                and self.annual_revenue_usd <= condition.limit
            )
        if condition.kind == "attestation":
            return condition.fact in self.attestations
        if condition.kind == "plan_in":
            return plan in condition.plans
        return False


def _how_to_declare(condition: Condition, provider: str) -> str:
    """What a user sets to declare a condition met: the policy field or attestation, by name."""
    if condition.kind == "revenue_at_most":
        limit = f" (at most US${condition.limit:,.0f})" if condition.limit is not None else ""
        return (
            f"declare annual_revenue_usd{limit}: LicensePolicy(annual_revenue_usd=...) or [policy] annual_revenue_usd"
        )
    if condition.kind == "attestation":
        return (
            f"declare the attestation {condition.fact!r}: LicensePolicy(attestations={{{condition.fact!r}}}) "
            f"or [policy] attestations = [{condition.fact!r}]"
        )
    if condition.kind == "plan_in":
        return f"set [providers.{provider}] plan to one of: {', '.join(condition.plans)}"
    return "no declaration meets this condition"


def _matches(pattern: str, provider: str, spec: str) -> bool:
    return fnmatch.fnmatchcase(spec, pattern) or fnmatch.fnmatchcase(provider, pattern)
