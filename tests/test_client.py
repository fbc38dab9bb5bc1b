import asyncio

import pytest

from soundforge import (
    AllProvidersFailedError,
    CancelToken,
    GenerationCancelledError,
    InvalidRequestError,
    LicensePolicy,
    LicensePolicyError,
    ProviderError,
    ProviderNotFoundError,
    ProviderUnavailableError,
    UnsupportedFeatureError,
)
from soundforge.audio import pcm_sha256
from soundforge.client import Client, build_request
from soundforge.config import Config

from .helpers import FlakyBackend, NonCommercialBackend


def make(**overrides) -> Client:
    return Client(Config.load(user_file=False, **overrides))


def test_auto_picks_synth_on_a_bare_machine(client: Client) -> None:
    g = client.generate("calm piano", duration=2, seed=1)
    prov = g.provenance
    assert prov.provider == "synth" and prov.ai_generated is True
    skipped = [a.provider for a in prov.attempts if a.outcome == "skipped"]
    assert "musicgen" in skipped and prov.attempts[-1].outcome == "ok"
    assert g.license.id == "CC0-1.0"


def test_provenance_records_everything(client: Client) -> None:
    g = client.generate("calm piano", provider="synth", duration=2, seed=4)
    p = g.provenance
    assert p.seed == 4 and p.request["prompt"] == "calm piano" and p.request["seed"] == 4
    assert p.parameters["tempo_bpm"] > 0 and p.engine["numpy"]
    assert p.sample_rate == 44100 and p.channels == 2 and len(p.pcm_sha256) == 64
    assert p.soundforge_version and p.timings.total > 0 and p.created_at.tzinfo is not None


def test_unknown_and_planned_providers(client: Client) -> None:
    with pytest.raises(ProviderNotFoundError, match="known providers"):
        client.generate("x", provider="nope")
    with pytest.raises(ProviderUnavailableError, match="project"):
        client.generate("x", provider="lyria:lyria-002")
    with pytest.raises(ProviderUnavailableError, match="no official public API"):
        client.generate("x", provider="suno")


def test_unsupported_field_names_backend_and_alternatives(client: Client, test_backends) -> None:
    with pytest.raises(UnsupportedFeatureError) as info:
        client.generate("x", provider="synth", temperature=0.7)
    err = info.value
    assert err.field == "temperature" and "synth" in str(err)
    with pytest.raises(UnsupportedFeatureError, match="guidance"):
        client.generate("x", provider="synth", guidance=3.0)
    with pytest.raises(InvalidRequestError, match="maximum"):
        client.generate("x", provider="nc", duration=31)


def test_unsupported_feature_lists_providers_that_can(test_backends, tmp_path) -> None:
    import numpy as np

    client = make()
    melody = (np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(UnsupportedFeatureError) as info:
        client.generate("x", provider="synth", melody=melody)
    # Every provider that can is named, installed here or not, with what the others need.
    assert {"flaky", "flaky2", "nc", "replicate"} <= set(info.value.supported_by)
    assert "synth" not in info.value.supported_by
    assert "not set up here: replicate: export REPLICATE_API_TOKEN" in str(info.value)


def test_fallback_on_provider_failure_records_attempts(test_backends) -> None:
    client = make(fallbacks=["synth"])
    g = client.generate("x", provider="flaky", duration=2, seed=1)
    assert g.provenance.provider == "synth"
    outcomes = [(a.provider, a.outcome) for a in g.provenance.attempts]
    assert outcomes == [("flaky", "failed"), ("synth", "ok")]
    assert "service unavailable" in (g.provenance.attempts[0].error or "") and FlakyBackend.calls == 1


def test_no_fallback_when_the_request_is_wrong(test_backends) -> None:
    client = make(fallbacks=["synth"])
    with pytest.raises(InvalidRequestError):
        client.generate("x", provider="nc", duration=31)
    assert NonCommercialBackend.calls == 0


def test_failure_without_fallback_raises_provider_error(test_backends) -> None:
    with pytest.raises(ProviderError) as info:
        make().generate("x", provider="flaky", duration=1)
    assert info.value.status == 503 and info.value.request_id == "req-1"
    with pytest.raises(AllProvidersFailedError) as group:
        make(fallbacks=["flaky2"]).generate("x", provider="flaky", duration=1)
    assert [spec for spec, _ in group.value.errors] == ["flaky:tiny", "flaky2:tiny"]
    assert all(isinstance(err, ProviderError) for _, err in group.value.errors)


def test_policy_refuses_before_compute(test_backends) -> None:
    client = Client(Config.load(user_file=False), policy=LicensePolicy.commercial())
    with pytest.raises(LicensePolicyError) as info:
        client.generate("x", provider="nc", duration=1)
    err = info.value
    assert NonCommercialBackend.calls == 0
    assert err.license_id == "CC-BY-NC-4.0" and "commercial" in err.clause
    assert "synth" in err.allowed_providers and "nc" not in err.allowed_providers


def test_auto_and_fallbacks_skip_noncompliant(test_backends) -> None:
    client = make(auto_order=["nc", "synth"], policy={"require_commercial_use": True})
    g = client.generate("x", duration=1, seed=2)
    assert g.provenance.provider == "synth"
    skipped = [a for a in g.provenance.attempts if a.outcome == "skipped"]
    assert skipped[0].provider == "nc" and skipped[0].error_code == "license_policy"
    assert NonCommercialBackend.calls == 0


def test_progress_and_cancellation(test_backends) -> None:
    events = []
    make().generate("x", provider="nc", duration=1, on_progress=events.append)
    assert [(e.phase, e.done, e.total) for e in events] == [("decode", 1, 1)]
    token = CancelToken()
    token.cancel()
    with pytest.raises(GenerationCancelledError):
        make().generate("x", provider="nc", duration=1, cancel=token)


def test_async_generate_matches_sync(client: Client) -> None:
    async def run():
        async with make() as c:
            return await asyncio.gather(
                *(c.agenerate("house 124 BPM", provider="synth", duration=2, seed=s) for s in (1, 2))
            )

    a, b = asyncio.run(run())
    sync = client.generate("house 124 BPM", provider="synth", duration=2, seed=1)
    assert a.audio.tobytes() == sync.audio.tobytes()
    assert b.audio.tobytes() != a.audio.tobytes()


def test_async_generate_builds_long_results_off_the_event_loop(client: Client, monkeypatch) -> None:
    import threading

    import soundforge.run.attempts as client_module

    hashed_on = []

    def recording_hash(audio):
        hashed_on.append((audio.shape[1], threading.current_thread() is threading.main_thread()))
        return pcm_sha256(audio)

    monkeypatch.setattr(client_module, "pcm_sha256", recording_hash)

    async def run():
        await client.agenerate("house", provider="synth", duration=1, seed=1)
        return await client.agenerate("house", provider="synth", duration=15, seed=1)

    long = asyncio.run(run())
    assert hashed_on == [(44100, True), (15 * 44100, False)]  # the loop runs on the main thread here
    assert long.provenance.pcm_sha256 == pcm_sha256(long.audio)
    assert long.audio.tobytes() == client.generate("house", provider="synth", duration=15, seed=1).audio.tobytes()


def test_request_object_with_overrides(client: Client) -> None:
    from soundforge import GenerationRequest

    req = GenerationRequest(prompt="rock", duration=2, seed=3)
    g = client.generate(req, provider="synth", seed=4)
    assert g.provenance.seed == 4 and g.duration == pytest.approx(2)


def test_providers_listing(client: Client) -> None:
    rows = {r.name: r for r in client.providers()}
    assert rows["synth"].available and rows["synth"].license.id == "CC0-1.0"
    for name in ("musicgen", "stable-audio", "stability", "elevenlabs", "replicate", "fal", "lyria", "suno", "udio"):
        assert not rows[name].available and rows[name].reason
    assert rows["musicgen"].license.id == "CC-BY-NC-4.0"
    assert rows["stable-audio"].license.commercial_use.value == "conditional"


def test_generate_front_door(tmp_path) -> None:
    import soundforge

    g = soundforge.generate("lofi", provider="synth", duration=1, seed=1)
    assert g.tracks[0].save(tmp_path / "t.flac").exists()


def test_the_readme_policy_example_refuses_by_licence_even_without_the_engine() -> None:
    # musicgen cannot run in this process's config (no weights); the licence is known all the same.
    client = Client(
        Config.load(user_file=False),
        policy=LicensePolicy.commercial(annual_revenue_usd=200_000, attestations={"stability_registered"}),
    )
    with pytest.raises(LicensePolicyError, match=r"CC-BY-NC-4\.0"):
        client.generate("ambient pad", provider="musicgen")
    # A planned provider (no engine at all) is judged by its licence record too.
    with pytest.raises(LicensePolicyError):
        client.generate("ambient pad", provider="udio")


def test_a_policy_refusal_of_an_explicit_provider_is_never_replaced_by_a_fallback(test_backends) -> None:
    client = make(fallbacks=["synth"], policy={"require_commercial_use": True})
    with pytest.raises(LicensePolicyError):
        client.generate("x", provider="nc", duration=1)
    with pytest.raises(LicensePolicyError):
        client.generate("x", provider="udio", duration=1)
    assert NonCommercialBackend.calls == 0


def test_a_substitution_is_reported_in_the_result(test_backends) -> None:
    client = make(fallbacks=["synth"], aliases={"hq": "musicgen:facebook/musicgen-large", "fast": "synth"})
    g = client.generate("x", provider="hq", duration=1, seed=1)
    assert g.provider == "synth" and g.provenance.requested == "musicgen:facebook/musicgen-large"
    assert g.substitution and g.substitution.startswith("musicgen:facebook/musicgen-large was asked for")
    assert client.generate("x", provider="fast", duration=1).substitution is None
    assert client.generate("x", duration=1).substitution is None  # auto chose: no substitution


def test_every_error_pickles_and_carries_its_status_and_exit_code() -> None:
    import pickle

    from soundforge import errors
    from soundforge.errors import SoundforgeError

    samples = [
        errors.ConfigurationError("bad", hint="fix it"),
        errors.ProviderNotFoundError("nope", ["synth"]),
        errors.ProviderUnavailableError("musicgen", "torch missing", fix="pip install"),
        errors.ModelNotAvailableError("musicgen", "m", "no weights", fix="download"),
        errors.AuthenticationError("no key", provider="stability"),
        errors.InvalidRequestError("bad duration", field="duration"),
        errors.UnsupportedFeatureError("melody", "synth:default", ["musicgen"], detail="no"),
        errors.LicensePolicyError("musicgen", "m", "CC-BY-NC-4.0", "not commercial", ["synth"]),
        errors.ContentRefusedError("refused", provider="stability"),
        errors.BudgetExceededError("too dear", provider="fal", hint="raise it"),
        errors.ProviderError("503", provider="fal", status=503, request_id="r"),
        errors.RateLimitError("slow down", provider="fal", retry_after=2.0),
        errors.GenerationTimeoutError("late"),
        errors.GenerationCancelledError("cancelled"),
        errors.ServiceError("the service failed the job"),
        errors.EngineStoppedError("the engine stopped"),
        errors.EngineError("the engine could not start"),
        errors.StoreError("the record could not be saved"),
        errors.StoreUnavailableError("the store cannot take a new job"),
        errors.ServerStoppingError("the server stopped"),
        errors.InternalError("a bug"),
        errors.AdapterError("owner/lora", "keys match nothing", provider="ace-step", hint="another adapter"),
        errors.PullError("cannot pull", provider="audiogen"),
    ]
    samples.append(errors.AllProvidersFailedError([("a", samples[3]), ("b", samples[10])]))
    classes = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, SoundforgeError)}
    assert {type(e) for e in samples} == classes - {SoundforgeError}
    for error in samples:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error) and again.to_dict() == error.to_dict()
    codes = {type(e).__name__: (e.http_status, e.exit_code) for e in samples}
    assert codes["InvalidRequestError"] == codes["UnsupportedFeatureError"] == (422, 2)
    assert codes["LicensePolicyError"] == (403, 4) and codes["ProviderNotFoundError"] == (404, 3)
    assert codes["ProviderUnavailableError"] == (503, 3) and codes["ConfigurationError"] == (500, 3)
    assert codes["BudgetExceededError"] == (402, 4)


def test_an_app_injects_its_own_backend_and_tests_with_a_function() -> None:
    import numpy as np

    from soundforge.testing import FunctionBackend

    def tone(request, context):
        context.progress("render", 1, 1)
        t = np.arange(int(request.duration * 8000)) / 8000
        return [np.sin(2 * np.pi * 220 * (i + 1) * t) * 0.5 for i in range(request.num_outputs)]

    fake = FunctionBackend(tone, name="fake", sample_rate=8000, license="CC0-1.0")
    client = Client(Config.load(user_file=False, auto_order=["fake", "synth"]), backends={"fake": fake})
    events = []
    g = client.generate("a tone", provider="fake", duration=1.5, num_outputs=2, seed=4, on_progress=events.append)
    assert fake.calls == 1 and len(g.tracks) == 2 and g.audio.shape == (1, 12000) and g.sample_rate == 8000
    assert g.license.id == "CC0-1.0" and g.provenance.provider == "fake" and events[0].phase == "render"
    assert client.generate("a tone", duration=1).provider == "fake"  # joins auto through auto_order
    assert "fake" in {row.name for row in client.providers()}
    refused = Client(
        Config.load(user_file=False),
        policy=LicensePolicy.commercial(),
        backends={"nc": FunctionBackend(tone, name="nc", sample_rate=8000, license="CC-BY-NC-4.0")},
    )
    with pytest.raises(LicensePolicyError):
        refused.generate("x", provider="nc", duration=1)
    # A class works too, built with the provider's settings; and an injected backend replaces a built-in.
    assert (
        Client(
            Config.load(user_file=False),
            backends={"synth": FunctionBackend(tone, name="synth", sample_rate=8000, license="CC0-1.0")},
        )
        .generate("x", provider="synth")
        .sample_rate
        == 8000
    )


def test_dependencies_are_passed_in_and_alternatives_come_from_the_router() -> None:
    from soundforge.testing import FunctionBackend

    seen = {}

    class Recording(FunctionBackend):
        def __init__(self, settings=None, *, memory=None) -> None:
            seen["memory"] = memory  # given at construction, never patched in afterwards
            super().__init__(lambda r, c: [], name="rec", sample_rate=8000, license="CC0-1.0", memory=memory)

    client = Client(Config.load(user_file=False), backends={"rec": Recording})
    assert client.backend("rec").memory is client.memory and seen["memory"] is client.memory
    # A backend on its own names no alternatives (it does not know the others); the router adds them.
    synth = client.backend("synth")
    request = build_request("x", {"temperature": 0.7})
    with pytest.raises(UnsupportedFeatureError) as alone:
        synth.check(request, synth.default_model)
    assert alone.value.supported_by == [] and "none of the known providers" in str(alone.value)
    with pytest.raises(UnsupportedFeatureError) as routed:
        client.generate(request, provider="synth")
    assert "musicgen" in routed.value.supported_by and "musicgen" in str(routed.value)
    # One status method: the listing is the router's rows, planned providers included with their licence.
    assert [row.to_dict() for row in client.providers()] == [
        client.router.status(name).to_dict() for name in client.provider_names()
    ]
    suno = client.router.status("suno")
    assert not suno.available and suno.license is not None and not suno.local
