"""What a generation costs: a sourced price registry, the estimate before a call and the cost after it.

Prices live in `data/prices.json` beside the licence registry: per provider and model (and plan where it matters),
a basis (per generation, per second of audio, per GPU-second, per credit with the credit's price), the currency,
the source and the date it was checked, and whether the source is the vendor's own (`confirmed`). A model with no
record has an unknown price: `Cost.amount` is None, never a guess. Local engines cost compute-seconds on a device,
no money.

`docs/prices.md` is generated from the registry (`python -m soundforge.ops._prices_doc`).
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import ConfigurationError
from ..licences.provenance import Basis, Cost

__all__ = ["BASES", "Basis", "Cost", "Price", "PriceRegistry", "settle", "total", "total_amount"]

BASES = ("per_generation", "per_audio_second", "per_started_minute", "per_gpu_second")


@dataclass(frozen=True)
class Price:
    """One registry record."""

    provider: str
    ids: tuple[str, ...]
    basis: str
    amount: float
    currency: str
    source: str
    checked_on: str
    confirmed: bool
    plan: str | None = None
    credits: float | None = None
    credit_price: float | None = None
    quote: str = ""
    notes: str = ""
    pattern: bool = False

    def matches(self, provider: str, model: str, plan: str | None) -> bool:
        if provider != self.provider or (self.plan is not None and plan != self.plan):
            return False
        return any(fnmatch.fnmatchcase(model, i) if self.pattern else model == i for i in self.ids)


class PriceRegistry:
    """Prices by provider, model and plan, from `data/prices.json` (or another file in that shape)."""

    def __init__(self, records: list[Price]) -> None:
        self.records = records

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PriceRegistry:
        records = []
        for raw in data.get("prices", []):
            try:
                basis = raw["basis"]
                if basis not in BASES:
                    raise ValueError(f"basis {basis!r} is not one of {', '.join(BASES)}")
                credits, credit_price = raw.get("credits"), raw.get("credit_price")
                amount = raw.get("amount")
                if amount is None and credits is not None and credit_price is not None:
                    amount = float(credits) * float(credit_price)
                records.append(
                    Price(
                        provider=raw["provider"],
                        ids=tuple(raw["ids"]),
                        basis=basis,
                        amount=float(amount),
                        currency=raw.get("currency", "USD"),
                        source=raw["source"],
                        checked_on=raw["checked_on"],
                        confirmed=bool(raw.get("confirmed", False)),
                        plan=raw.get("plan"),
                        credits=credits,
                        credit_price=credit_price,
                        quote=raw.get("quote", ""),
                        notes=raw.get("notes", ""),
                        pattern=bool(raw.get("pattern", False)),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigurationError(f"bad price record {raw!r}: {exc}") from None
        return cls(records)

    @classmethod
    def default(cls) -> PriceRegistry:
        """The registry shipped with soundforge."""
        return _default_registry()

    def price_for(self, provider: str, model: str, plan: str | None = None) -> Price | None:
        """The record for a provider's model (plan-specific first), or None when the price is unknown."""
        matching = [r for r in self.records if r.matches(provider, model, plan)]
        matching.sort(key=lambda r: (r.plan is None, r.pattern))
        return matching[0] if matching else None

    def estimate(
        self,
        provider: str,
        model: str,
        *,
        duration: float,
        outputs: int = 1,
        local: bool = False,
        plan: str | None = None,
    ) -> Cost:
        """The cost of a call before it is made. GPU-second prices cannot be estimated before the vendor reports the
        seconds, unless the record says how many GPU-seconds a second of audio takes (it never guesses)."""
        if local:
            return Cost(amount=0.0, currency=None, basis="local_compute", estimated=True, detail="local engine")
        price = self.price_for(provider, model, plan)
        if price is None:
            return Cost(amount=None, basis="unknown", detail=f"no price record for {provider}:{model}")
        common = {
            "currency": price.currency,
            "confirmed": price.confirmed,
            "source": price.source,
            "rate": price.amount,
        }
        if price.basis == "per_generation":
            return Cost(amount=price.amount * outputs, basis="per_generation", **common)
        if price.basis == "per_audio_second":
            return Cost(amount=price.amount * duration * outputs, basis="per_audio_second", **common)
        if price.basis == "per_started_minute":  # fal's "rounded up to the closest minute": 30 s bills a minute
            minutes = math.ceil(duration / 60 - 1e-9)
            return Cost(amount=price.amount * minutes * outputs, basis="per_started_minute", **common)
        return Cost(
            amount=None, basis="per_gpu_second", detail="billed per GPU-second, reported after the call", **common
        )


def settle(estimate: Cost, usage: dict[str, float], *, compute_seconds: float, device: str) -> Cost:
    """The cost after the call: what the vendor reported (`usage["gpu_seconds"]` at the registry's rate), else
    the estimate, still marked estimated; local engines record their compute-seconds and device."""
    if estimate.basis == "local_compute":
        return estimate.model_copy(update={"compute_seconds": round(compute_seconds, 3), "device": device})
    if estimate.basis == "per_gpu_second" and "gpu_seconds" in usage and estimate.rate is not None:
        seconds = float(usage["gpu_seconds"])
        detail = f"{seconds:.2f} GPU-seconds reported"
        return estimate.model_copy(update={"amount": estimate.rate * seconds, "estimated": False, "detail": detail})
    return estimate


@lru_cache(maxsize=1)
def _default_registry() -> PriceRegistry:
    text = resources.files("soundforge").joinpath("data/prices.json").read_text("utf-8")
    return PriceRegistry.from_json(json.loads(text))


def total(costs: list[Cost]) -> float | None:
    """The money of several costs, or None if any is unknown (a sum that hides an unknown would lie)."""
    return total_amount([c.amount for c in costs])


def total_amount(amounts: list[float | None]) -> float | None:
    """A sum of amounts that stays None when any of them is unknown."""
    if any(a is None for a in amounts):
        return None
    return math.fsum(a for a in amounts if a is not None)
