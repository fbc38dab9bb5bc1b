"""The quality gate: each check fails on the signal it is for, real synth takes pass, bad takes are retried."""

from __future__ import annotations

import numpy as np
import pytest

from soundforge.audio.quality import check
from soundforge.client import Client
from soundforge.config import Config
from soundforge.testing import FunctionBackend

RATE = 44100
T = np.arange(RATE * 5) / RATE
TONE = np.stack([0.5 * np.sin(2 * np.pi * 440 * T)] * 2).astype(np.float32)
NOISE = np.random.default_rng(0).uniform(-0.5, 0.5, (2, RATE * 5)).astype(np.float32)


@pytest.mark.parametrize(
    "name, audio, duration",
    [
        ("silence", np.zeros((2, RATE * 5), np.float32), 5),
        ("noise", NOISE, 5),
        ("degenerate", TONE, 5),  # one cycle forever: a stuck loop, a collapsed spectrum
        ("clipping", np.clip(TONE * 4, -1, 1), 5),
        ("dc_offset", (TONE * 0.5 + 0.2).astype(np.float32), 5),
    ],
)
def test_each_check_fails_on_its_signal(name, audio, duration) -> None:
    report = check(audio, RATE, duration)
    assert name in report.failures and not report.passed
    failed = next(c for c in report.checks if c.name == name)
    assert not failed.passed and failed.limit > 0


def test_a_take_that_stops_early_is_short_and_real_takes_pass() -> None:
    client = Client(Config.load(user_file=False))
    for prompt in ("upbeat house at 124 BPM in A minor", "calm ambient pad", "jazz trio", "epic orchestral"):
        for seed, duration in ((1, 2), (2, 10), (3, 30)):
            g = client.generate(prompt, provider="synth", duration=duration, seed=seed)
            report = check(g.audio, g.sample_rate, duration)
            assert report.passed, (prompt, seed, duration, report.failures)
    take = client.generate("house", provider="synth", duration=8, seed=1).audio.copy()
    take[:, 5 * RATE :] = 0  # 3 of 8 s silent at the end
    assert check(take, RATE, 8).failures == ["short"]


def test_report_records_and_retry_makes_fresh_takes() -> None:
    seeds: list[int] = []
    synth = Client(Config.load(user_file=False))

    def sometimes_silent(request, context):
        seeds.append(request.seed)
        if len(seeds) < 3:  # the first two takes come out silent
            return np.zeros((2, round(request.duration * RATE)), np.float32)
        return synth.generate("house", provider="synth", duration=request.duration, seed=request.seed).audio

    def fresh() -> Client:
        seeds.clear()
        flaky = FunctionBackend(sometimes_silent, name="flaky", sample_rate=RATE)
        return Client(Config.load(user_file=False), backends={"flaky": flaky})

    reported = fresh().generate("x", provider="flaky", duration=2, seed=5, quality="report")
    verdict = reported.provenance.quality
    assert verdict["passed"] is False and "silence" in [c["name"] for c in verdict["checks"] if not c["passed"]]
    assert verdict["rejected"] == [] and seeds == [5]  # report only: no retry
    retried = fresh().generate("x", provider="flaky", duration=2, seed=5, quality="retry", quality_retries=3)
    assert len(seeds) == 3 and seeds[0] == 5 and len(set(seeds)) == 3  # a new seed each time
    verdict = retried.provenance.quality
    assert [r["seed"] for r in verdict["rejected"]] == seeds[:2]
    assert all("silence" in r["failures"] for r in verdict["rejected"]) and retried.provenance.seed == seeds[2]
    assert "silence" not in [c["name"] for c in verdict["checks"] if not c["passed"]]
    capped = fresh().generate("x", provider="flaky", duration=2, seed=5, quality="retry", quality_retries=1)
    assert len(seeds) == 2 and capped.provenance.quality["passed"] is False  # gave up: the last take is returned
    plain = fresh().generate("x", provider="flaky", duration=2, seed=5)
    assert plain.provenance.quality is None and len(seeds) == 1  # off by default
