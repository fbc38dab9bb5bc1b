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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigurationError
from .model_card import ModelCard


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

    kind: `revenue_at_most` (fact `annual_revenue_usd` <= `limit`: the Community License ends only at "more than"
    US$1,000,000), `attestation` (fact `fact` is true, e.g. registered with the vendor), or `plan_in` (the
    configured plan is one of `plans`).
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


class LicenseFields(BaseModel):
    """One licence as `data/licenses.json` records it under its id, with the source of every fact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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


class LicenseTerms(LicenseFields):
    """One licence of the registry, with its id."""

    id: str = Field(description="SPDX identifier or a LicenseRef- name")


#: Who a component's licence binds: the user, or the host that runs the weights (a cloud service's customer holds no
#: licence to the weights it never runs: the Community License binds the licensee that operates "a hosted service").
Binds = Literal["user", "host"]


class LicenseComponent(BaseModel):
    """A part of a generation pipeline (weights, codec, service...) and its licence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str
    name: str
    license: LicenseTerms
    source: str | None = Field(None, description="where this model's licence is stated (its card, its LICENSE)")
    quote: str | None = Field(None, description="the line of `source` that applies the licence to this model")
    checked_on: date | None = None
    binds: Binds = Field(
        "user",
        description="who the licence binds: `user` (you), or `host` (the service that runs the weights for you: "
        "shown for information, its conditions and duties are the host's, not yours)",
    )


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
    card_note: str | None = Field(
        None, description="what the card of the weights in use says about their licence, when it was read"
    )
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

    def with_components(self, extra: list[LicenseComponent]) -> License:
        """This licence with more components (a request's adapters): the effective terms worked out again."""
        if not extra:
            return self
        return License.effective(
            [*self.components, *extra], plan=self.plan, plan_note=self.plan_note, card_note=self.card_note
        )

    @classmethod
    def effective(
        cls,
        components: list[LicenseComponent],
        *,
        plan: str | None = None,
        plan_note: str | None = None,
        card_note: str | None = None,
    ) -> License:
        """Combine component licences: the strictest commercial status wins, duties and restrictions add up.

        Components that bind a host (the weights a cloud service runs) are listed but decide nothing: their
        conditions and duties are the host's.
        """
        binding = [c for c in components if c.binds == "user"]
        if not binding:
            raise ValueError("a licence needs at least one component that binds the user")
        strictest = max(binding, key=lambda c: _STRICTNESS.index(c.license.commercial_use)).license
        attributions = _unique(c.license.attribution for c in binding if c.license.attribution_required)
        restrictions = _unique(r for c in binding for r in c.license.restrictions)
        conditions = _unique_models(cond for c in binding for cond in c.license.conditions)
        condition_texts = _unique(c.license.condition for c in binding if c.license.condition)
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
            checked_on=min(c.license.checked_on for c in binding),
            plan=plan,
            plan_note=plan_note,
            card_note=card_note,
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
    binds: Binds = "user"
    #: A licence the model's own card may confirm at run time, when the card could not be read for the registry: the
    #: component keeps `license` (unknown) unless the card of the weights in use names this one (see `ModelCard`).
    card_confirms: str | None = None


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


class RegistryFile(BaseModel):
    """The shape of `data/licenses.json`, the hand-edited source of every licence fact (no script writes it).

    `data/licenses.schema.json` is this model's JSON Schema, for editors; a test keeps the two equal and the file
    in its canonical layout (`json.dumps(..., indent=1)`), so every change is a readable diff.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    about: str = Field(alias="_about", description="what the file is and the rules it follows")
    licenses: dict[str, LicenseFields] = Field(description="every licence, by SPDX id or LicenseRef- name")
    card_tags: dict[str, str] = Field(
        default_factory=dict,
        description="a model card's licence tag (`license:`, or `license_name:` of `license: other`) -> licence id",
    )
    models: list[ModelLicenseRecord] = Field(description="which licences apply to which provider:model")


#: The licence of a model no record names.
UNKNOWN_LICENSE = "LicenseRef-Unknown"


class AdapterLicense(BaseModel):
    """Your declaration of an adapter's licence (`[adapters."<source>"]` in the config, or
    `LicenseRegistry.declare_adapter`): for an adapter whose card names none, or that has no card."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    license: str = Field(description="the registry's id of its licence (`soundforge licenses` lists them)")
    reason: str = Field(min_length=1, description="why you know: where its terms are stated")


class LicenseRegistry:
    """The licence facts shipped with soundforge: licences by id, and model records naming the ids they cover."""

    def __init__(self, data: dict[str, Any]) -> None:
        parsed = RegistryFile.model_validate(data)
        self.licenses = {key: LicenseTerms(id=key, **value.model_dump()) for key, value in parsed.licenses.items()}
        self.models = list(parsed.models)
        #: Adapter licences the user declared, by adapter source (`declare_adapter`).
        self.adapter_licenses: dict[str, AdapterLicense] = {}
        #: `license_for`'s answers (a pure function of its arguments and the records; License and ModelCard are
        #: frozen): a batch plans every row, 10 000 rows asked it 10 000 times. A copy gets its own (`declare`).
        self._answers: dict[tuple[str, str, str | None, ModelCard | None], License] = {}
        #: A model card's licence tag (`mit`, or the `license_name` of `license: other`) -> the registry's licence id.
        self.card_tags: dict[str, str] = dict(parsed.card_tags)
        for tag, name in self.card_tags.items():
            if name not in self.licenses:
                raise ConfigurationError(f"licence registry: card tag {tag!r} names unknown licence {name!r}")
        for record in self.models:
            if record.pattern is not None and not record.pattern_reason:
                raise ConfigurationError(f"licence registry: {record.key} has a pattern without pattern_reason")
            if not record.ids and record.pattern is None:
                raise ConfigurationError(f"licence registry: a {record.provider} record names no model ids")
            if all(c.binds == "host" for c in record.components) and record.components:
                raise ConfigurationError(f"licence registry: {record.key} has no component that binds the user")
            names = [c.license for c in record.all_components()] + [h.license for h in record.history]
            names += [c.card_confirms for c in record.all_components() if c.card_confirms]
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
        registry._answers = {}
        return registry

    def declare_adapter(self, source: str, license_id: str, *, reason: str) -> LicenseRegistry:
        """A registry that also knows the licence of the adapter at `source` (as a request names it), on your word.

        For an adapter whose card names no licence, or that has none: without a declaration its licence is unknown,
        which a commercial policy refuses before the adapter is loaded. A card that names a stricter licence still
        wins; the declaration and its reason are kept in every result's licence.
        """
        self.check_adapter_license(source, AdapterLicense(license=license_id, reason=reason))
        registry = copy.copy(self)
        registry.adapter_licenses = {**self.adapter_licenses, source: AdapterLicense(license=license_id, reason=reason)}
        return registry

    def check_adapter_license(self, source: str, declared: AdapterLicense) -> None:
        """Refuse a declaration naming a licence the registry does not know."""
        if declared.license not in self.licenses:
            known = ", ".join(sorted(k for k in self.licenses if not k.startswith("LicenseRef-")))
            raise ConfigurationError(
                f"adapter {source!r} is declared under {declared.license!r}, a licence soundforge has no record of "
                f"(SPDX ids it knows: {known})"
            )

    def adapter_component(
        self, source: str, card: ModelCard | None, declared: AdapterLicense | None = None
    ) -> LicenseComponent:
        """The licence component of one adapter: what its card names (mapped to a registry id), or what the user
        declared, the stricter when both speak; unknown when neither does. A card naming a licence soundforge has
        no record of is unknown too."""
        declared = declared or self.adapter_licenses.get(source)
        options: list[LicenseComponent] = []
        if card is not None and card.tag is not None:
            named = self.card_tags.get(card.tag, UNKNOWN_LICENSE)
            options.append(
                LicenseComponent(
                    role="adapter",
                    name=f"adapter {source}",
                    license=self.licenses[named],
                    source=card.path,
                    quote=f"{card.describe()} (the adapter's card)",
                    checked_on=date.today(),
                )
            )
        if declared is not None:
            self.check_adapter_license(source, declared)
            options.append(
                LicenseComponent(
                    role="adapter",
                    name=f"adapter {source}",
                    license=self.licenses[declared.license],
                    source="declared by the user",
                    quote=declared.reason,
                    checked_on=date.today(),
                )
            )
        if not options:
            why = "its card names no licence" if card is not None else "it has no card here"
            return LicenseComponent(
                role="adapter",
                name=f"adapter {source} ({why}, and no licence is declared for it)",
                license=self.licenses[UNKNOWN_LICENSE],
            )
        return max(options, key=lambda c: _STRICTNESS.index(c.license.commercial_use))

    def record_for(self, provider: str, model: str) -> ModelLicenseRecord | None:
        """The record that names `model` among its ids, else one whose explicit pattern matches; None otherwise."""
        for record in self.models:
            if record.provider == provider and model in record.ids:
                return record
        for record in self.models:
            if record.pattern is not None and record.covers(provider, model):
                return record
        return None

    def license_for(
        self, provider: str, model: str, *, plan: str | None = None, card: ModelCard | None = None
    ) -> License:
        """The licence of outputs of `model` run by `provider`, for the given plan (strictest when None).

        A model no record names gets `LicenseRef-Unknown`: never the terms of a sibling (a fine-tune, a local
        folder or a newer release may be licensed differently). `card` is the card of the weights in use (read
        from their snapshot or folder): where it names a stricter licence than the record, the stricter applies
        and `card_note` says why; where a record waits on the card (`card_confirms`), the card decides that
        component. A card never loosens a record on its own.
        """
        key = (provider, model, plan, card)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self._license_for(provider, model, plan, card)
        return answer

    def _license_for(self, provider: str, model: str, plan: str | None, card: ModelCard | None) -> License:
        record = self.record_for(provider, model)
        if record is None:
            components = [
                LicenseComponent(
                    role="model",
                    name=f"{provider}:{model} (no licence record names it)",
                    license=self.licenses[UNKNOWN_LICENSE],
                )
            ]
            components, card_note = self._hold_to_card(components, [], card)
            return License.effective(components, card_note=card_note)
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
                binds=c.binds,
            )
            for c in comps
        ]
        components, card_note = self._hold_to_card(components, comps, card)
        return License.effective(components, plan=plan, plan_note=plan_note, card_note=card_note)

    def _hold_to_card(
        self, components: list[LicenseComponent], records: list[ComponentRecord], card: ModelCard | None
    ) -> tuple[list[LicenseComponent], str | None]:
        """Apply the card of the weights in use: confirm the components that wait on it, or add the card's licence
        as a component when it is stricter than the record (an older revision, a re-licensed copy)."""
        if card is None or card.tag is None:
            return components, None
        named = self.card_tags.get(card.tag)
        quote = f"{card.describe()} (the card of the weights in use, read from {card.path})"
        if named is not None and any(r.card_confirms == named for r in records):
            confirmed = {
                "license": self.licenses[named],
                "source": card.path,
                "quote": quote,
                "checked_on": date.today(),
            }
            components = [
                c.model_copy(update=confirmed) if r.card_confirms == named else c
                for c, r in zip(components, records, strict=True)
            ]
            return components, f"the card of the weights in use names {card.tag}, which this record waits on"
        binding = [c for c in components if c.binds == "user"]
        current = max(_STRICTNESS.index(c.license.commercial_use) for c in binding)
        held = {c.license.id for c in binding}
        if named is None:
            terms = self.licenses[UNKNOWN_LICENSE]
            why = f"the card of the weights in use names {card.tag!r}, a licence soundforge has no record of"
        elif named in held:
            return components, f"the card of the weights in use names {card.tag} ({named}), as the record does"
        else:
            terms = self.licenses[named]
            why = f"the card of the weights in use names {card.tag} ({named}), not the record's licence"
        if _STRICTNESS.index(terms.commercial_use) <= current:
            return components, f"{why}; the record is as strict or stricter, and applies"
        card_component = LicenseComponent(
            role="card",
            name=f"the licence named by the card at {card.path}",
            license=terms,
            source=card.path,
            quote=quote,
            checked_on=date.today(),
        )
        return [*components, card_component], f"{why}; the stricter of the two applies"
