"""Router strategies for `auto`: cheapest, fastest (measured), and cool-downs for a provider that keeps failing."""

from __future__ import annotations

import json

import pytest

from soundforge import ProviderError
from soundforge.client import Client
from soundforge.config import Config
from soundforge.ops.health import ProviderHealth
from soundforge.testing import FunctionBackend

from .fakes import KEY


def _config(stability, downloads, **more):
    settings = {"base_url": stability.url, "api_key": KEY, "download_dir": str(downloads)}
    return Config.load(user_file=False, providers={"stability": settings}, **more)


def test_cheapest_puts_free_first_and_unknown_last(stability, eleven, downloads) -> None:
    ordered = Client(_config(stability, downloads, auto_order=["stability", "synth"]))
    assert ordered.generate("x", provider="auto", duration=2).provider == "stability"  # auto_order as given
    cheap = Client(_config(stability, downloads, auto_order=["stability", "synth"], strategy="cheapest"))
    assert cheap.generate("x", provider="auto", duration=2).provider == "synth"
    settings = {"base_url": eleven.url, "api_key": KEY, "download_dir": str(downloads)}
    both = Config.load(
        user_file=False,
        providers={"elevenlabs": settings, "stability": {**settings, "base_url": stability.url}},
        auto_order=["elevenlabs", "stability"],
        strategy="cheapest",
    )
    assert Client(both).generate("x", provider="auto", duration=3).provider == "stability"  # elevenlabs: unknown


def test_fastest_follows_measured_speed(stability, downloads, tmp_path) -> None:
    store = tmp_path / "latency.json"
    store.write_text(json.dumps({"synth:default": 0.5, "stability:stable-audio-2.5": 0.1}))
    config = _config(stability, downloads, auto_order=["synth", "stability"], strategy="fastest")
    client = Client(config)
    client.router.health = ProviderHealth(store)
    assert client.generate("x", provider="auto", duration=2).provider == "stability"
    measured = json.loads(store.read_text())  # and what it measured is folded into the store
    assert measured["stability:stable-audio-2.5"] != 0.1
    unmeasured = Client(config)
    unmeasured.router.health = ProviderHealth(tmp_path / "none.json")
    assert unmeasured.generate("x", provider="auto", duration=2).provider == "synth"  # nothing measured: auto_order


def test_a_provider_that_keeps_failing_cools_down() -> None:
    calls = []

    def flaky(request, context):
        calls.append(1)
        raise ProviderError("503 from upstream", provider="flaky")

    config = Config.load(user_file=False, auto_order=["flaky", "synth"], cooldown_after=3, cooldown_seconds=3600)
    client = Client(config, backends={"flaky": FunctionBackend(flaky, name="flaky")})
    for _ in range(3):
        assert client.generate("x", provider="auto", duration=1).provider == "synth"
    assert len(calls) == 3
    g = client.generate("x", provider="auto", duration=1)
    assert len(calls) == 3  # skipped: not tried a fourth time
    skip = next(a for a in g.provenance.attempts if a.provider.startswith("flaky"))
    assert skip.outcome == "skipped" and "cooling down" in skip.error and "503 from upstream" in skip.error
    named = Client(config, backends={"flaky": FunctionBackend(flaky, name="flaky")})
    named.router.health = client.router.health
    with pytest.raises(ProviderError):
        named.generate("x", provider="flaky", duration=1)
    assert len(calls) == 4  # a provider named explicitly is still tried
