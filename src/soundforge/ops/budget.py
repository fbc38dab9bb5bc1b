"""Spending limits: a running budget for a client (or a batch), checked before every paid call.

A call first reserves its estimate; when it ends the reservation becomes the real cost (or is released if the call
failed), so concurrent calls cannot overspend together. A call whose price is unknown is refused unless the budget
allows unknown prices: a limit that cannot be checked is not a limit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..errors import BudgetExceededError
from .pricing import Cost


@dataclass
class Budget:
    """At most `limit` (in `currency`) over the life of a client or a batch.

    Args:
        limit: the most that may be spent.
        currency: what `limit` is counted in; prices in another currency are refused.
        allow_unknown: let calls whose price is unknown run (they are counted as nothing).
    """

    limit: float
    currency: str = "USD"
    allow_unknown: bool = False
    spent: float = 0.0
    reserved: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def left(self) -> float:
        """What may still be spent (the limit less what is spent and what running calls hold)."""
        with self._lock:
            return self.limit - self.spent - self.reserved

    def carry(self, spent: float) -> None:
        """Count what was spent before this object existed (a service's named token, read back from its job index
        after a restart or from another replica): spending only ever grows."""
        with self._lock:
            self.spent = max(self.spent, spent)

    def check(self, provider: str, estimate: Cost) -> None:
        """Raise `BudgetExceededError` if a call with this estimate would not fit now."""
        self._amount(provider, estimate, reserve=False)

    def reserve(self, provider: str, estimate: Cost) -> float:
        """Hold the estimate for a call that is about to run; returns the amount held (give it to `settle`)."""
        return self._amount(provider, estimate, reserve=True)

    def settle(self, held: float, cost: Cost | None) -> None:
        """A call ended: release what it held and count what it cost (None: it failed and costs nothing here)."""
        with self._lock:
            self.reserved = max(0.0, self.reserved - held)
            if cost is not None and cost.amount is not None and cost.currency in (None, self.currency):
                self.spent += cost.amount

    def _amount(self, provider: str, estimate: Cost, *, reserve: bool) -> float:
        if estimate.basis == "local_compute":
            return 0.0
        if estimate.amount is None:
            if self.allow_unknown:
                return 0.0
            raise BudgetExceededError(
                f"{provider}'s price is unknown ({estimate.detail or 'no price record'}), so the "
                f"{self.limit:g} {self.currency} budget cannot be checked",
                provider=provider,
                hint="use Budget(..., allow_unknown=True) to let unknown prices run, or pick a provider with a price",
            )
        if estimate.currency not in (None, self.currency):
            raise BudgetExceededError(
                f"{provider} is priced in {estimate.currency}, the budget in {self.currency}", provider=provider
            )
        with self._lock:
            left = self.limit - self.spent - self.reserved
            if estimate.amount > left + 1e-12:
                raise BudgetExceededError(
                    f"{provider} would cost {estimate.describe()}, over the {left:.4f} {self.currency} left of the "
                    f"{self.limit:g} {self.currency} budget",
                    provider=provider,
                    hint="raise the budget, or let auto pick a cheaper provider",
                )
            if reserve:
                self.reserved += estimate.amount
            return estimate.amount if reserve else 0.0
