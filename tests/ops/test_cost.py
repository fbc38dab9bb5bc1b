"""Cost on every result, `max_cost` and budgets: estimated before the call, reported after, refused before sending."""

from __future__ import annotations

import asyncio
import json

import pytest

from soundforge import Budget, BudgetExceededError, ConfigurationError, SoundforgeError
from soundforge.client import Client
from soundforge.config import Config
from soundforge.ops.pricing import Cost, PriceRegistry, settle, total

from ..fakes import KEY
from ..helpers import cloud

REGISTRY = PriceRegistry.from_json(
    {
        "prices": [
            {
                "provider": "p",
                "ids": ["gen"],
                "basis": "per_generation",
                "amount": 0.5,
                "source": "s",
                "checked_on": "d",
            },
            {
                "provider": "p",
                "ids": ["sec"],
                "basis": "per_audio_second",
                "amount": 0.01,
                "source": "s",
                "checked_on": "d",
            },
            {
                "provider": "p",
                "ids": ["gpu*"],
                "pattern": True,
                "basis": "per_gpu_second",
                "amount": 0.002,
                "source": "s",
                "checked_on": "d",
            },
            {
                "provider": "p",
                "ids": ["gen"],
                "plan": "pro",
                "basis": "per_generation",
                "credits": 10,
                "credit_price": 0.01,
                "source": "s",
                "checked_on": "d",
                "confirmed": True,
            },
        ]
    }
)


def test_estimates_by_basis_plan_and_pattern() -> None:
    assert REGISTRY.estimate("p", "gen", duration=30, outputs=2).amount == 1.0
    assert REGISTRY.estimate("p", "gen", duration=30, plan="pro").amount == pytest.approx(0.1)  # plan first
    assert REGISTRY.estimate("p", "gen", duration=30, plan="pro").confirmed
    assert REGISTRY.estimate("p", "sec", duration=30).amount == pytest.approx(0.3)
    gpu = REGISTRY.estimate("p", "gpu-large", duration=30)
    assert gpu.amount is None and gpu.rate == 0.002 and "reported after" in gpu.detail  # never guessed
    settled = settle(gpu, {"gpu_seconds": 50.0}, compute_seconds=1.0, device="cloud")
    assert settled.amount == pytest.approx(0.1) and not settled.estimated
    assert settle(gpu, {}, compute_seconds=1.0, device="cloud").amount is None
    unknown = REGISTRY.estimate("p", "other", duration=30)
    assert unknown.amount is None and unknown.basis == "unknown" and "no price record" in unknown.describe()
    local = settle(REGISTRY.estimate("x", "y", duration=1, local=True), {}, compute_seconds=2.5, device="cpu")
    assert local.amount == 0 and local.compute_seconds == 2.5 and "no charge" in local.describe()
    assert total([Cost(amount=0.1, basis="per_generation"), Cost(amount=0.2, basis="per_generation")]) == pytest.approx(
        0.3
    )
    assert total([Cost(amount=0.1, basis="per_generation"), unknown]) is None  # never hides an unknown
    with pytest.raises(ConfigurationError, match="basis"):
        PriceRegistry.from_json(
            {
                "prices": [
                    {"provider": "p", "ids": ["m"], "basis": "per_vibe", "amount": 1, "source": "s", "checked_on": "d"}
                ]
            }
        )


def test_every_result_carries_its_cost(stability, replicate, fal, minimax, downloads, tmp_path) -> None:
    g = cloud("stability", stability, downloads).generate("x", provider="stability", duration=2)
    assert g.cost.amount == pytest.approx(0.2) and g.cost.estimated and g.cost.basis == "per_generation"
    saved = g.tracks[0].save(tmp_path / "a.wav")
    sidecar = json.loads(saved.with_suffix(".wav.json").read_text())
    assert sidecar["provenance"]["cost"]["amount"] == pytest.approx(0.2)
    from soundforge.output.tags import read_tags

    tags = read_tags(saved)  # in the file itself too
    assert tags["COST"] == "0.2000 USD" and tags["COST_BASIS"] == "per_generation (estimated)"
    sa25 = cloud("fal", fal, downloads).generate("x", provider="fal:fal-ai/stable-audio-25/text-to-audio", duration=2)
    assert sa25.cost.amount == 0.2 and sa25.cost.confirmed
    # Replicate reports the seconds it billed (metrics.predict_time): the cost after the call is that, not a guess.
    rep = cloud("replicate", replicate, downloads, prefer_wait=0).generate(
        "x", provider="replicate:meta/musicgen", duration=1
    )
    assert not rep.cost.estimated and rep.cost.amount == pytest.approx(replicate.job_seconds * 0.0014)
    local = Client(Config.load(user_file=False)).generate("x", provider="synth", duration=1)
    assert local.cost.basis == "local_compute" and local.cost.amount == 0 and local.cost.device == "cpu"
    assert local.cost.compute_seconds is not None and local.cost.compute_seconds > 0
    unknown = cloud("minimax", minimax, downloads).generate("x", provider="minimax", duration=2, instrumental=True)
    assert unknown.cost.amount is None and unknown.cost.basis == "unknown"


def test_max_cost_is_refused_before_anything_is_sent(stability, eleven, downloads) -> None:
    client = cloud("stability", stability, downloads)
    with pytest.raises(BudgetExceededError, match=r"over max_cost 0\.1") as caught:
        client.generate("x", provider="stability", duration=2, max_cost=0.1)
    assert caught.value.http_status == 402 and stability.requests == 0
    assert client.generate("x", provider="stability", duration=2, max_cost=0.25).cost.amount == pytest.approx(0.2)
    with pytest.raises(BudgetExceededError, match="price is unknown"):
        cloud("elevenlabs", eleven, downloads).generate("x", provider="elevenlabs", duration=3, max_cost=5)
    assert eleven.requests == 0
    free = Client(Config.load(user_file=False)).generate("x", provider="synth", duration=1, max_cost=0)
    assert free.cost.amount == 0


def test_a_client_budget_refuses_the_call_that_would_pass_it(stability, downloads) -> None:
    settings = {"base_url": stability.url, "api_key": KEY, "download_dir": str(downloads), "backoff_initial": 0.01}
    config = Config.load(user_file=False, providers={"stability": settings}, auto_order=["stability", "synth"])
    budget = Budget(0.5)
    client = Client(config, budget=budget)
    for _ in range(2):
        client.generate("x", provider="stability", duration=2)
    assert budget.spent == pytest.approx(0.4) and budget.left == pytest.approx(0.1)
    with pytest.raises(BudgetExceededError, match=r"0\.1000 USD left of the 0\.5 USD budget"):
        client.generate("x", provider="stability", duration=2)
    assert stability.requests == 2
    # auto skips the provider over budget and says so; the free local one makes it.
    g = client.generate("x", provider="auto", duration=1)
    assert g.provider == "synth"
    assert any(a.error_code == "budget_exceeded" and a.provider.startswith("stability") for a in g.provenance.attempts)
    strict = Client(Config.load(user_file=False), budget=Budget(10))
    with pytest.raises(BudgetExceededError, match="cannot be checked"):
        strict.generate("x", provider="lyria", duration=5)  # no price record: a limit that cannot be checked


def test_concurrent_calls_cannot_overspend_together(stability, downloads) -> None:
    settings = {"base_url": stability.url, "api_key": KEY, "download_dir": str(downloads)}
    budget = Budget(0.45)
    client = Client(Config.load(user_file=False, providers={"stability": settings}), budget=budget)
    stability.latency = 0.2  # every call is in flight while the others start

    async def run():
        return await asyncio.gather(
            *(client.agenerate("x", provider="stability", duration=2, seed=i) for i in range(5)), return_exceptions=True
        )

    results = asyncio.run(run())
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(refused) == 3 and stability.requests == 2  # each call held its estimate while it ran
    assert budget.spent == pytest.approx(0.4) and budget.reserved == 0
    failed = Budget(1.0)
    stability.faults.append("invalid")  # a refused call costs nothing and gives its reservation back
    with pytest.raises(SoundforgeError):
        Client(Config.load(user_file=False, providers={"stability": settings}), budget=failed).generate(
            "x", provider="stability", duration=2
        )
    assert failed.spent == 0 and failed.reserved == 0


def test_a_batch_estimates_its_cost_and_keeps_to_its_budget(stability, downloads, tmp_path) -> None:
    from soundforge import batch

    settings = {"base_url": stability.url, "api_key": KEY, "download_dir": str(downloads)}
    client = Client(Config.load(user_file=False, providers={"stability": settings}))
    manifest = tmp_path / "cues.jsonl"
    rows = [{"name": f"cue{i}", "prompt": "x", "duration": 2, "seed": i, "provider": "stability"} for i in range(3)]
    rows.append({"name": "free", "prompt": "y", "duration": 1, "provider": "synth"})
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dry = batch(manifest, tmp_path / "dry", client=client, dry_run=True)
    assert dry.estimates == {"stability": pytest.approx(0.6), "synth": 0.0} and dry.estimated_total == pytest.approx(
        0.6
    )
    with pytest.raises(BudgetExceededError, match=r"about 0\.6000 USD .* over its 0\.5 USD budget"):
        batch(manifest, tmp_path / "tight", client=client, budget=0.5)
    assert stability.requests == 0 and not (tmp_path / "tight").exists()  # refused before any row ran
    report = batch(manifest, tmp_path / "out", client=client, budget=1.0)
    assert len(report.done) == 4 and report.spent == pytest.approx(0.6) and report.unpriced == []
    again = batch(manifest, tmp_path / "out", client=client, budget=1.0, resume=True)
    assert again.spent == 0 and len(again.skipped) == 4  # nothing paid twice


def test_the_cli_dry_run_prints_the_estimate(tmp_path) -> None:
    from click.testing import CliRunner

    from soundforge.cli import cli

    manifest = tmp_path / "cues.jsonl"
    manifest.write_text('{"name": "a", "prompt": "x", "duration": 1, "provider": "synth"}\n')
    result = CliRunner().invoke(cli, ["batch", str(manifest), "-o", str(tmp_path / "o"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (
        "estimated cost:" in result.output and "synth: $0.0000" in result.output and "total: $0.0000" in result.output
    )
