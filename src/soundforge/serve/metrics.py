"""`/metrics` for Prometheus: jobs by state and provider, queue depth, generation seconds and cost.

Uses the official `prometheus_client` (optional: `soundforge[metrics]`); without it `/metrics` answers 404 saying
what to install. Each app has its own registry, so two services in one process never share counters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ServeMetrics:
    """The service's metrics, updated by the job manager as jobs start and end."""

    def __init__(self, queue_depth: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "soundforge_jobs", "Jobs that ended, by state and provider", ["state", "provider"], registry=self.registry
        )
        self.running = Gauge("soundforge_jobs_running", "Jobs running now", registry=self.registry)
        depth = Gauge("soundforge_queue_depth", "Jobs waiting in the queue", registry=self.registry)
        depth.set_function(queue_depth)
        self.seconds = Histogram(
            "soundforge_generation_seconds",
            "Wall seconds from a job's start to its end, by provider",
            ["provider"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.cost = Counter(
            "soundforge_cost_usd",
            "What finished jobs cost, by provider (known prices only)",
            ["provider"],
            registry=self.registry,
        )

    def started(self) -> None:
        self.running.inc()

    def ended(self, state: str, provenance: dict[str, Any] | None, seconds: float, requested: str | None) -> None:
        self.running.dec()
        provider = str((provenance or {}).get("provider") or (requested or "auto").partition(":")[0])
        self.jobs.labels(state, provider).inc()
        self.seconds.labels(provider).observe(seconds)
        cost = (provenance or {}).get("cost") or {}
        if isinstance(cost.get("amount"), (int, float)):
            self.cost.labels(provider).inc(float(cost["amount"]))

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def make_metrics(queue_depth: Callable[[], int]) -> ServeMetrics | None:
    """The metrics, or None when prometheus_client is not installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return None
    return ServeMetrics(queue_depth)
