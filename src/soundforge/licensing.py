"""Licences of models and providers, read from the sourced registry shipped in `data/licenses.json`.

A generation is made of components (weights, codec, text encoder, hosted service), each under its own
licence; the licence the user must honour is the most restrictive of them (`License.effective`).
Terms that depend on the user's plan (Suno, ElevenLabs) are chosen from the plan set in config; with no
plan, the strictest reading applies and the licence says so.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from datetime import date
from enum import Enum
from functools import lru_cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigurationError


class CommercialUse(str, Enum):
    """Whether outputs may be used in a commercial product."""

    ALLOWED = "allowed"
    CONDITIONAL = "conditional"
    NOT_ALLOWED = "not_allowed"
    UNKNOWN = "unknown"


#: Order used to pick the most restrictive component: later is stricter.
_STRICTNESS = [CommercialUse.ALLOWED, CommercialUse.CONDITIONAL, CommercialUse.UNKNOWN, CommercialUse.NOT_ALLOWED]


class Condition(BaseModel):
    """A machine-checkable condition of conditional commercial use.

    kind: `revenue_below` (fact `annual_revenue_usd` < `limit`), `attestation` (fact `fact` is true,
    e.g. registered with the vendor), or `plan_in` (the configured plan is one of `plans`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    text: str
    fact: str | None = None
    limit: float | None = None
    plans: list[str] = Field(default_factory=list)
    #: "commercial": a condition of commercial use; "any_use": the licence itself ends when it is not met
    #: (the Stability AI Community License terminates above US$1M revenue), so every policy checks it.
    scope: str = "commercial"


class LicenseTerms(BaseModel):
    """One licence as the registry records it, with the source of every fact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="SPDX identifier or a LicenseRef- name")
    name: str
    url: str
    commercial_use: CommercialUse
    condition: str | None = Field(None, description="the condition of commercial use, in words")
    conditions: list[Condition] = Field(default_factory=list)
    attribution_required: bool = False
    attribution: str | None = None
    output_ownership: str = "unspecified"
    restrictions: list[str] = Field(default_factory=list)
    source: str
    quote: str | None = Field(None, description="a short quote of the clause the record relies on, from `source`")
    checked_on: date
    notes: str | None = None


class LicenseComponent(BaseModel):
    """A part of a generation pipeline (weights, codec, service...) and its licence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str
    name: str
    license: LicenseTerms
    source: str | None = Field(None, description="where this model's licence is stated (its card, its LICENSE)")
    quote: str | None = Field(None, description="the line of `source` that applies the licence to this model")
    checked_on: date | None = None


class License(BaseModel):
    """The licence of one result: the effective (most restrictive) terms plus each component's terms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    url: str
    commercial_use: CommercialUse
    condition: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    attribution_required: bool
    attribution: str | None = None
    output_ownership: str
    restrictions: list[str] = Field(default_factory=list)
    source: str
    checked_on: date
    plan: str | None = None
    plan_note: str | None = None
    components: list[LicenseComponent] = Field(default_factory=list)

    @property
    def spdx(self) -> str:
        """The SPDX identifier (or LicenseRef- name) of the effective licence."""
        return self.id

    @property
    def commercial(self) -> bool:
        """True only when commercial use is allowed without conditions."""
        return self.commercial_use is CommercialUse.ALLOWED

    def summary(self) -> str:
        """One line for tables and tags: id and commercial status."""
        text = f"{self.id} (commercial use: {self.commercial_use.value.replace('_', ' ')}"
        if self.condition:
            text += f": {self.condition}"
        return text + ")"

    @classmethod
    def effective(
        cls, components: list[LicenseComponent], *, plan: str | None = None, plan_note: str | None = None
    ) -> License:
        """Combine component licences: the strictest commercial status wins, duties and restrictions add up."""
        if not components:
            raise ValueError("a licence needs at least one component")
        strictest = max(components, key=lambda c: _STRICTNESS.index(c.license.commercial_use)).license
        attributions = _unique(c.license.attribution for c in components if c.license.attribution_required)
        restrictions = _unique(r for c in components for r in c.license.restrictions)
        conditions = _unique_models(cond for c in components for cond in c.license.conditions)
        condition_texts = _unique(c.license.condition for c in components if c.license.condition)
        return cls(
            id=strictest.id,
            name=strictest.name,
            url=strictest.url,
            commercial_use=strictest.commercial_use,
            condition="; ".join(condition_texts) or None,
            # Every component's conditions, whatever else is stricter: an unknown host must not hide the revenue
            # cap of the weights it runs.
            conditions=conditions,
            attribution_required=bool(attributions),
            attribution=" / ".join(attributions) or None,
            output_ownership=strictest.output_ownership,
            restrictions=restrictions,
            source=strictest.source,
            checked_on=min(c.license.checked_on for c in components),
            plan=plan,
            plan_note=plan_note,
            components=list(components),
        )


def _unique(items: Any) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen


def _unique_models(items: Any) -> list[Condition]:
    seen: list[Condition] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


class ComponentRecord(BaseModel):
    """One component of a model record: its role, its licence and where that licence is stated for this model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str
    name: str
    license: str
    source: str
    quote: str
    checked_on: date


class LicenseHistory(BaseModel):
    """An earlier licence of the same model id (revisions published before `until`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    until: str
    license: str
    note: str


class ModelLicenseRecord(BaseModel):
    """Registry entry: the model ids of one provider it covers (or an explicit pattern, with the reason it is safe),
    and their components, or per-plan components."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    ids: list[str] = Field(default_factory=list)
    pattern: str | None = None
    pattern_reason: str | None = None
    components: list[ComponentRecord] = Field(default_factory=list)
    plans: dict[str, list[ComponentRecord]] = Field(default_factory=dict)
    strictest_plan: str | None = None
    inherits: bool = False
    history: list[LicenseHistory] = Field(default_factory=list)
    notes: str | None = None

    @property
    def key(self) -> str:
        """How the record is named in docs: `provider:id, id…` or `provider:pattern`."""
        return f"{self.provider}:{', '.join(self.ids) if self.ids else self.pattern}"

    def covers(self, provider: str, model: str) -> bool:
        """Whether the record applies to `provider:model`: a named id, or a match of its pattern."""
        if provider != self.provider:
            return False
        if model in self.ids:
            return True
        return self.pattern is not None and fnmatch.fnmatchcase(model, self.pattern)

    def all_components(self) -> list[ComponentRecord]:
        """Every component the record names, in its plans too."""
        return [*self.components, *(c for cs in self.plans.values() for c in cs)]


#: The licence of a model no record names.
UNKNOWN_LICENSE = "LicenseRef-Unknown"


class LicenseRegistry:
    """The licence facts shipped with soundforge: licences by id, and model records naming the ids they cover."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.licenses = {key: LicenseTerms(id=key, **value) for key, value in data["licenses"].items()}
        self.models = [ModelLicenseRecord(**value) for value in data["models"]]
        for record in self.models:
            if record.pattern is not None and not record.pattern_reason:
                raise ConfigurationError(f"licence registry: {record.key} has a pattern without pattern_reason")
            if not record.ids and record.pattern is None:
                raise ConfigurationError(f"licence registry: a {record.provider} record names no model ids")
            names = [c.license for c in record.all_components()] + [h.license for h in record.history]
            for name in names:
                if name not in self.licenses:
                    raise ConfigurationError(f"licence registry: {record.key} names unknown licence {name!r}")
        if UNKNOWN_LICENSE not in self.licenses:
            raise ConfigurationError(f"licence registry: {UNKNOWN_LICENSE} is missing")

    @classmethod
    @lru_cache(maxsize=1)
    def default(cls) -> LicenseRegistry:
        """The registry shipped in the package (read once)."""
        text = resources.files("soundforge").joinpath("data/licenses.json").read_text("utf-8")
        return cls(json.loads(text))

    def declare(self, provider: str, model: str, *, same_as: str, reason: str) -> LicenseRegistry:
        """A registry that also licenses `provider:model` like `provider:same_as`, on your word.

        For weights you hold in a folder (or under another name) that are a published model: soundforge cannot
        tell a folder's licence, so without this it is unknown. The record notes who said so and why.
        """
        source = self.record_for(provider, same_as)
        if source is None:
            raise ConfigurationError(f"no licence record names {provider}:{same_as} to declare {model!r} like it")
        declared = source.model_copy(
            update={
                "ids": [model],
                "pattern": None,
                "pattern_reason": None,
                "notes": f"declared by the user to be {same_as}: {reason}",
            }
        )
        registry = copy.copy(self)
        registry.models = [declared, *self.models]
        return registry

    def record_for(self, provider: str, model: str) -> ModelLicenseRecord | None:
        """The record that names `model` among its ids, else one whose explicit pattern matches; None otherwise."""
        for record in self.models:
            if record.provider == provider and model in record.ids:
                return record
        for record in self.models:
            if record.pattern is not None and record.covers(provider, model):
                return record
        return None

    def license_for(self, provider: str, model: str, *, plan: str | None = None) -> License:
        """The licence of outputs of `model` run by `provider`, for the given plan (strictest when None).

        A model no record names gets `LicenseRef-Unknown`: never the terms of a sibling (a fine-tune, a local
        folder or a newer release may be licensed differently).
        """
        record = self.record_for(provider, model)
        if record is None:
            return License.effective(
                [
                    LicenseComponent(
                        role="model",
                        name=f"{provider}:{model} (no licence record names it)",
                        license=self.licenses[UNKNOWN_LICENSE],
                    )
                ]
            )
        plan_note = None
        comps = record.components
        if record.plans:
            if plan is None or plan not in record.plans:
                chosen = record.strictest_plan or next(iter(record.plans))
                plan_note = (
                    f"no plan configured for {provider}; the strictest reading ({chosen!r} plan) applies"
                    if plan is None
                    else f"unknown plan {plan!r} for {provider}; the strictest reading ({chosen!r}) applies"
                )
                plan = None
            else:
                chosen = plan
            comps = record.plans[chosen]
        components = [
            LicenseComponent(
                role=c.role,
                name=c.name,
                license=self.licenses[c.license],
                source=c.source,
                quote=c.quote,
                checked_on=c.checked_on,
            )
            for c in comps
        ]
        return License.effective(components, plan=plan, plan_note=plan_note)
