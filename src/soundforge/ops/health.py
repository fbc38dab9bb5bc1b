"""What routing remembers about providers: how fast each has been, and which keep failing (cool-downs).

Latency is kept per provider and model as seconds of wall time per second of audio (an exponentially weighted
average); with `persist` (the router sets it for `strategy = "fastest"`, the only reader) it is also kept in a small
JSON file in the user data dir so the strategy learns across runs (best effort: a file that cannot be read or
written is ignored), and no other generation pays for that write. Failures are counted in memory: after
`cooldown_after` failures in a row a provider is skipped for `cooldown_seconds`, with the reason; a success clears
the count.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

#: Weight of the newest measurement in the average.
ALPHA = 0.3


@dataclass
class _Failures:
    count: int = 0
    until: float = 0.0
    last: str = ""


class ProviderHealth:
    """Latency per provider:model and cool-downs per provider, shared by a client's router."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        cooldown_after: int = 3,
        cooldown_seconds: float = 60.0,
        persist: bool = True,
    ) -> None:
        if path is None:
            from platformdirs import user_data_dir

            path = Path(user_data_dir("soundforge")) / "latency.json"
        self.path = Path(path)
        self.cooldown_after = cooldown_after
        self.cooldown_seconds = cooldown_seconds
        self.persist = persist
        self._lock = threading.Lock()
        self._failures: dict[str, _Failures] = {}
        self._latency: dict[str, float] | None = None

    # --- latency ---
    def _load(self) -> dict[str, float]:
        if self._latency is None:
            try:
                data = json.loads(self.path.read_text("utf-8"))
                self._latency = {str(k): float(v) for k, v in data.items()}
            except (OSError, ValueError, AttributeError):
                self._latency = {}
        return self._latency

    def latency(self, provider: str, model: str) -> float | None:
        """Measured wall seconds per second of audio, or None when never measured."""
        with self._lock:
            return self._load().get(f"{provider}:{model}")

    def succeeded(self, provider: str, model: str, seconds: float, audio_seconds: float) -> None:
        """A call worked: clear the provider's failures and fold its speed into the average."""
        with self._lock:
            self._failures.pop(provider, None)
            if audio_seconds <= 0:
                return
            table = self._load()
            key = f"{provider}:{model}"
            measured = seconds / audio_seconds
            table[key] = measured if key not in table else (1 - ALPHA) * table[key] + ALPHA * measured
            if not self.persist:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
                temp.write_text(json.dumps(table, sort_keys=True), "utf-8")
                temp.replace(self.path)
            except OSError:
                pass  # speed is a hint; a read-only home must not fail a generation

    # --- cool-downs ---
    def failed(self, provider: str, reason: str) -> None:
        """A call failed with an error a fallback may answer: count it; enough in a row start a cool-down."""
        with self._lock:
            state = self._failures.setdefault(provider, _Failures())
            state.count += 1
            state.last = reason
            if self.cooldown_seconds > 0 and state.count >= self.cooldown_after:
                state.until = time.monotonic() + self.cooldown_seconds

    def cooling(self, provider: str) -> str | None:
        """Why the provider is being skipped now, or None."""
        with self._lock:
            state = self._failures.get(provider)
            if state is None or state.until <= time.monotonic():
                return None
            left = state.until - time.monotonic()
            return f"cooling down for {left:.0f} s after {state.count} failures in a row (last: {state.last[:120]})"
