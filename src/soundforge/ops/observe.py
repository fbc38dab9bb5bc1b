"""Observing generations: callbacks for users' own logging, and OpenTelemetry spans when it is installed.

A callback gets a `GenerationEvent` when a provider attempt starts, reports progress, succeeds or fails: the request
(as its record: audio inputs by their hash, never the audio), the provider and model, the seconds so far, and on
success the cost and the licence id; on failure the error's code and (redacted) message. A callback that raises is
logged and ignored: watching a generation never breaks it.

With `opentelemetry-api` installed (`soundforge[otel]`), every generation is a span (`soundforge.generate`) and every
provider attempt a child span (`soundforge.attempt`), with GenAI-style attributes; skipped providers and failed
attempts are events on the generation span. Without it the spans cost nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .pricing import Cost

log = logging.getLogger("soundforge")

EventKind = Literal["start", "progress", "success", "failure"]


@dataclass(frozen=True)
class GenerationEvent:
    """One moment of one provider attempt, for callbacks (no audio, no secret)."""

    kind: EventKind
    provider: str
    model: str
    request: dict[str, Any]
    attempt: int
    seconds: float = 0.0
    phase: str | None = None
    done: int | None = None
    total: int | None = None
    cost: Cost | None = None
    license_id: str | None = None
    error_code: str | None = None
    error: str | None = None


Callback = Callable[[GenerationEvent], None]


def notify(callbacks: list[Callback], event: GenerationEvent, raised: set[int] | None = None) -> None:
    """Give the event to every callback; one that raises is logged, not allowed to stop the generation. With
    `raised` (the ids of callbacks that raised before, kept by the caller), a callback's traceback is logged once
    and its later failures in one line each: a broken logger does not fill the log with the same traceback."""
    for callback in callbacks:
        try:
            callback(event)
        except Exception as exc:  # a user's logging failed: the generation goes on
            if raised is not None and id(callback) in raised:
                log.warning(
                    "a soundforge callback raised again on a %s event; ignored: %s: %s",
                    event.kind,
                    type(exc).__name__,
                    exc,
                )
                continue
            if raised is not None:
                raised.add(id(callback))
            log.warning("a soundforge callback raised on a %s event; ignored", event.kind, exc_info=True)


@functools.lru_cache(maxsize=1)
def _tracer() -> Any:
    """OpenTelemetry's tracer for soundforge, or None: looked up once (a failed import is not retried per call)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    from .._version import __version__

    return trace.get_tracer("soundforge", __version__)


@contextlib.contextmanager
def generation_span(request: dict[str, Any], spec: str | None) -> Iterator[Any]:
    """A span around one whole generation (None when OpenTelemetry is not installed)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    attributes = {
        "gen_ai.operation.name": "generate_audio",
        "soundforge.requested_provider": spec or "default",
        "soundforge.request.duration_s": float(request.get("duration", 0.0)),
    }
    if request.get("seed") is not None:
        attributes["soundforge.request.seed"] = int(request["seed"])
    with tracer.start_as_current_span("soundforge.generate", attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def attempt_span(provider: str, model: str, attempt: int) -> Iterator[Any]:
    """A child span around one provider attempt (None when OpenTelemetry is not installed)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    attributes = {"gen_ai.provider.name": provider, "gen_ai.request.model": model, "soundforge.attempt": attempt}
    with tracer.start_as_current_span("soundforge.attempt", attributes=attributes) as span:
        yield span


def end_attempt(
    span: Any,
    *,
    outcome: str,
    cost: Cost | None = None,
    license_id: str | None = None,
    delivered: float | None = None,
    error_code: str | None = None,
) -> None:
    """Record how an attempt ended on its span."""
    if span is None:
        return
    span.set_attribute("soundforge.outcome", outcome)
    if delivered is not None:
        span.set_attribute("soundforge.delivered.duration_s", delivered)
    if license_id is not None:
        span.set_attribute("soundforge.license", license_id)
    if cost is not None and cost.amount is not None:
        span.set_attribute("soundforge.cost.amount", cost.amount)
        span.set_attribute("soundforge.cost.currency", cost.currency or "")
        span.set_attribute("soundforge.cost.estimated", cost.estimated)
    if error_code is not None:
        span.set_attribute("error.type", error_code)
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error_code))


def add_event(span: Any, name: str, attributes: dict[str, Any]) -> None:
    """An event (a skipped provider, a failed attempt, a fallback) on the generation span."""
    if span is not None:
        span.add_event(name, {k: v for k, v in attributes.items() if v is not None})
