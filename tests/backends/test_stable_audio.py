"""Stable Audio Open through diffusers on a tiny random pipeline built in the test: real code path, no weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("torchsde")

from soundforge import (  # noqa: E402
    CancelToken,
    GenerationCancelledError,
    InvalidRequestError,
    LicensePolicy,
    LicensePolicyError,
    ModelNotAvailableError,
    UnsupportedFeatureError,
)
from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.licences.licensing import LicenseRegistry  # noqa: E402
from soundforge.testing.stable_audio import build_stable_audio  # noqa: E402

SR = 800  # the tiny VAE's rate; window 1024 latents x hop 2 = 2.56 s


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return str(build_stable_audio(tmp_path_factory.mktemp("sao") / "tiny"))


def client(**settings) -> Client:
    return Client(Config.load(user_file=False, providers={"stable-audio": settings}))


def test_identical_to_direct_pipeline_call(folder) -> None:
    from diffusers import StableAudioPipeline

    g = client().generate(
        "calm piano",
        provider=f"stable-audio:{folder}",
        duration=1.5,
        seed=3,
        steps=4,
        guidance=7.0,
        negative_prompt="drums",
    )
    pipe = StableAudioPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "calm piano",
        audio_end_in_s=1.5,
        num_inference_steps=4,
        guidance_scale=7.0,
        negative_prompt="drums",
        generator=torch.Generator().manual_seed(3),
        output_type="np",
    ).audios
    assert g.audio.shape == (2, 1200) and g.sample_rate == SR
    assert np.array_equal(g.audio, expected[0])
    assert g.license.id == "LicenseRef-Unknown"  # a folder: unknown unless declared (test_policy_conditional_licence)
    assert g.provenance.parameters["num_inference_steps"] == 4 and g.provenance.engine["diffusers"]


def test_determinism_seed_negative_prompt_and_duration(folder) -> None:
    spec, c = f"stable-audio:{folder}", client()
    a = c.generate("ambient", provider=spec, duration=1.0, seed=1, steps=3)
    b = c.generate("ambient", provider=spec, duration=1.0, seed=1, steps=3)
    other_seed = c.generate("ambient", provider=spec, duration=1.0, seed=2, steps=3)
    negative = c.generate("ambient", provider=spec, duration=1.0, seed=1, steps=3, negative_prompt="bass")
    assert a.audio.tobytes() == b.audio.tobytes()
    assert not np.array_equal(a.audio, other_seed.audio) and not np.array_equal(a.audio, negative.audio)
    odd = c.generate("ambient", provider=spec, duration=1.237, seed=1, steps=2)
    assert odd.audio.shape == (2, round(1.237 * SR))
    many = c.generate("ambient", provider=spec, duration=0.5, seed=1, steps=2, num_outputs=2)
    assert len(many.tracks) == 2 and not np.array_equal(many.tracks[0].audio, many.tracks[1].audio)
    with pytest.raises(InvalidRequestError, match="window"):
        c.generate("ambient", provider=spec, duration=2.5, steps=2, extra={"audio_start": 0.5})
    with pytest.raises(InvalidRequestError, match="maximum"):
        c.generate("ambient", provider=spec, duration=3.0)


def test_audio_to_audio_variation(folder) -> None:
    spec, c = f"stable-audio:{folder}", client()
    t = np.arange(SR * 2) / SR
    clip = (0.5 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    plain = c.generate("rock", provider=spec, duration=1.0, seed=4, steps=3)
    varied = c.generate(
        "rock", provider=spec, duration=1.0, seed=4, steps=3, audio_prompt=(clip, SR), audio_prompt_mode="variation"
    )
    assert varied.audio.shape == plain.audio.shape and not np.array_equal(varied.audio, plain.audio)
    assert "audio_prompt" in varied.provenance.request
    with pytest.raises(UnsupportedFeatureError, match="strength"):
        c.generate("rock", provider=spec, duration=1.0, audio_prompt=(clip, SR), strength=0.5)
    with pytest.raises(UnsupportedFeatureError, match="'continuation' is not among its audio_prompt modes: variation"):
        c.generate("rock", provider=spec, duration=1.0, audio_prompt=(clip, SR), audio_prompt_mode="continuation")


def test_scheduler_settings_through_extra(folder) -> None:
    spec, c = f"stable-audio:{folder}", client()
    base = c.generate("jazz", provider=spec, duration=0.5, seed=1, steps=3)
    tuned = c.generate("jazz", provider=spec, duration=0.5, seed=1, steps=3, extra={"scheduler": {"sigma_max": 50.0}})
    assert not np.array_equal(base.audio, tuned.audio)
    again = c.generate("jazz", provider=spec, duration=0.5, seed=1, steps=3)
    assert again.audio.tobytes() == base.audio.tobytes()  # the pipeline's own scheduler was restored
    with pytest.raises(InvalidRequestError, match="scheduler setting"):
        c.generate("jazz", provider=spec, duration=0.5, extra={"scheduler": {"warp": 1}})
    with pytest.raises(InvalidRequestError, match="unknown stable-audio extra"):
        c.generate("jazz", provider=spec, duration=0.5, extra={"cfg": 1})


def test_progress_and_cancellation(folder) -> None:
    spec = f"stable-audio:{folder}"
    events = []
    client().generate("x", provider=spec, duration=0.5, seed=1, steps=4, on_progress=events.append)
    assert [(e.phase, e.done, e.total) for e in events] == [("denoise", i, 4) for i in range(1, 5)]
    token = CancelToken()

    def stop_after_two(event) -> None:
        if event.done == 2:
            token.cancel()

    with pytest.raises(GenerationCancelledError):
        client().generate("x", provider=spec, duration=0.5, steps=6, on_progress=stop_after_two, cancel=token)


def test_missing_weights_mention_the_gate() -> None:
    with pytest.raises(ModelNotAvailableError) as info:
        client().generate("x", provider="stable-audio", duration=5)
    text = str(info.value)
    assert "accept its licence" in text and "hf download stabilityai/stable-audio-open-1.0" in text
    with pytest.raises(ModelNotAvailableError, match="stable-audio-tools"):
        client().generate("x", provider="stable-audio:stabilityai/stable-audio-open-small", duration=5)


def test_policy_conditional_licence(folder) -> None:
    spec = f"stable-audio:{folder}"
    undeclared = Client(
        Config.load(user_file=False),
        policy=LicensePolicy.commercial(annual_revenue_usd=250_000, attestations=frozenset({"stability_registered"})),
    )
    with pytest.raises(LicensePolicyError, match="unknown"):
        undeclared.generate("x", provider=spec, duration=0.5, steps=2)
    # The user declares the folder holds Stable Audio Open 1.0: its Community License applies, conditions and all.
    registry = LicenseRegistry.default().declare(
        "stable-audio", folder, same_as="stabilityai/stable-audio-open-1.0", reason="a copy of the published weights"
    )
    refused = Client(Config.load(user_file=False), policy=LicensePolicy.commercial(), registry=registry)
    with pytest.raises(LicensePolicyError, match="1,000,000"):
        refused.generate("x", provider=spec, duration=0.5, steps=2)
    allowed = Client(
        Config.load(user_file=False),
        policy=LicensePolicy.commercial(annual_revenue_usd=250_000, attestations=frozenset({"stability_registered"})),
        registry=registry,
    )
    made = allowed.generate("x", provider=spec, duration=0.5, steps=2, seed=1)
    assert made.license.commercial_use.value == "conditional" and made.license.attribution == "Powered by Stability AI"


def test_concurrent_requests_share_one_pipeline_call(folder) -> None:
    """Compatible concurrent requests are batched; each output row's noise comes from its own seeded generator."""
    import asyncio

    from diffusers import StableAudioPipeline

    c = client(batch_window=0.5, batching=True)  # on a CPU batching is off unless asked for
    spec = f"stable-audio:{folder}"
    prompts = ["rain", "wind in trees", "distant thunder"]

    async def together():
        return await asyncio.gather(
            *(c.agenerate(p, provider=spec, duration=1.0, seed=10 * i, steps=3) for i, p in enumerate(prompts))
        )

    batched = asyncio.run(together())
    assert [g.provenance.parameters["batched_requests"] for g in batched] == [3, 3, 3]
    assert [g.provenance.parameters["batch_offset"] for g in batched] == [0, 1, 2]
    pipe = StableAudioPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompts,
        audio_end_in_s=1.0,
        num_inference_steps=3,
        output_type="np",
        generator=[torch.Generator().manual_seed(10 * i) for i in range(3)],
    ).audios
    for i, g in enumerate(batched):
        assert np.array_equal(g.audio, expected[i, :, : g.audio.shape[1]]), i
    # Different settings never share a call; a request alone is exactly the unbatched call (seeded once).
    other_steps = asyncio.run(asyncio.wait_for(c.agenerate("rain", provider=spec, duration=1.0, seed=0, steps=2), 60))
    assert other_steps.provenance.parameters["batched_requests"] == 1
    alone = client(batching=False).generate("rain", provider=spec, duration=1.0, seed=0, steps=3)
    assert np.array_equal(alone.audio, c.generate("rain", provider=spec, duration=1.0, seed=0, steps=3).audio)


def test_batching_is_off_on_a_cpu_by_default_and_checked(folder) -> None:
    """`batching = "auto"` (the default) batches on CUDA only: on a CPU batched calls gave no throughput."""
    import asyncio

    from soundforge import ConfigurationError

    spec = f"stable-audio:{folder}"

    async def together(c):
        return await asyncio.gather(
            *(c.agenerate(p, provider=spec, duration=1.0, seed=1, steps=2) for p in ("rain", "wind"))
        )

    default = asyncio.run(together(client(batch_window=0.5)))
    assert all("batched_requests" not in g.provenance.parameters for g in default)
    with pytest.raises(ConfigurationError, match="batching must be true, false or"):
        client(batching="yes").generate("rain", provider=spec, duration=1.0, seed=1, steps=2)
