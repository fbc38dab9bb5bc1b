"""Callbacks and OpenTelemetry spans: what a team's logging and tracing see of every generation."""

from __future__ import annotations

import json

import pytest

from soundforge import AuthenticationError, ProviderError
from soundforge.client import Client
from soundforge.config import Config
from soundforge.ops.observe import GenerationEvent
from soundforge.testing import FunctionBackend

from ..helpers import cloud


def _failing(request, context):
    raise ProviderError("the GPU caught fire", provider="flaky")


def test_callbacks_see_start_progress_success_and_failure() -> None:
    events: list[GenerationEvent] = []

    def broken(event: GenerationEvent) -> None:
        raise RuntimeError("a logging bug")  # never stops the generation

    config = Config.load(user_file=False, fallbacks=["synth"])
    client = Client(
        config, backends={"flaky": FunctionBackend(_failing, name="flaky")}, callbacks=[events.append, broken]
    )
    g = client.generate("lofi", provider="flaky", duration=1, seed=2)
    assert g.provider == "synth"
    kinds = [(e.kind, e.provider) for e in events if e.kind != "progress"]
    assert kinds == [("start", "flaky"), ("failure", "flaky"), ("start", "synth"), ("success", "synth")]
    failure = next(e for e in events if e.kind == "failure")
    assert failure.error_code == "provider_error" and "fire" in failure.error and failure.attempt == 1
    success = events[-1]
    assert success.attempt == 2 and success.license_id == "CC0-1.0" and success.cost.basis == "local_compute"
    assert success.request["prompt"] == "lofi" and success.request["seed"] == 2 and success.seconds > 0
    assert any(e.kind == "progress" and e.provider == "synth" and e.total for e in events)
    assert all(json.dumps(e.request) for e in events)  # plain JSON: no audio arrays, no bytes


def test_a_raising_callback_logs_its_traceback_once(caplog: pytest.LogCaptureFixture) -> None:
    """One generation tells a callback several events; a callback that raises on each has its traceback logged once,
    then one line per later failure (it logged four tracebacks for one generation)."""

    def broken(event: GenerationEvent) -> None:
        raise RuntimeError("a logging bug")

    client = Client(Config.load(user_file=False), callbacks=[broken])
    with caplog.at_level("WARNING", logger="soundforge"):
        client.generate("lofi", provider="synth", duration=1, seed=2)
        client.generate("lofi", provider="synth", duration=1, seed=3)
    failures = [r for r in caplog.records if "callback raised" in r.getMessage()]
    assert len(failures) >= 4  # start, progress, success, for each of two generations
    assert [r.exc_info is not None for r in failures] == [True] + [False] * (len(failures) - 1)
    assert all("RuntimeError: a logging bug" in r.getMessage() for r in failures[1:])


def test_callback_events_carry_no_secret(stability, downloads) -> None:
    events: list[GenerationEvent] = []
    client = cloud("stability", stability, downloads, api_key="sk-very-secret-000")
    client.callbacks.append(events.append)
    with pytest.raises(AuthenticationError):
        client.generate("x", provider="stability", duration=2)  # the fake rejects this key: 401
    assert events and all("sk-very-secret-000" not in repr(e) for e in events)


def test_spans_for_every_generation_and_attempt() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    from soundforge.ops import observe

    original = observe._tracer
    observe._tracer = lambda: tracer  # the global provider can be set once per process; use this one
    try:
        config = Config.load(user_file=False, fallbacks=["synth"])
        client = Client(config, backends={"flaky": FunctionBackend(_failing, name="flaky")})
        client.generate("lofi", provider="flaky", duration=1, seed=5)
    finally:
        observe._tracer = original
    spans = {s.name: s for s in exporter.get_finished_spans()}
    attempts = [s for s in exporter.get_finished_spans() if s.name == "soundforge.attempt"]
    generation = spans["soundforge.generate"]
    assert generation.attributes["gen_ai.operation.name"] == "generate_audio"
    assert generation.attributes["soundforge.request.seed"] == 5
    assert [e.name for e in generation.events] == ["soundforge.attempt_failed"]
    failed, ok = attempts
    assert failed.attributes["gen_ai.provider.name"] == "flaky" and failed.attributes["error.type"] == "provider_error"
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert ok.attributes["gen_ai.provider.name"] == "synth" and ok.attributes["soundforge.outcome"] == "ok"
    assert ok.attributes["soundforge.license"] == "CC0-1.0" and ok.attributes["soundforge.delivered.duration_s"] == 1.0
    assert all(s.parent.span_id == generation.context.span_id for s in attempts)
