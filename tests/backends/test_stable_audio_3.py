"""Stable Audio 3 through diffusers' three SA3 pipelines on tiny random models built in the test (text encoder
and tokenizer included): the real code path, compared with the direct pipeline calls bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

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
from soundforge.testing.stable_audio_3 import build_stable_audio_3  # noqa: E402

SR = 800  # the tiny SAME autoencoder's rate (8 samples a latent frame)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return str(build_stable_audio_3(tmp_path_factory.mktemp("sa3") / "tiny"))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    return str(build_stable_audio_3(tmp_path_factory.mktemp("sa3-base") / "tiny-base", distilled=False, seed=2))


@pytest.fixture(scope="module")
def pipes(folder):
    from diffusers import StableAudio3AudioToAudioPipeline, StableAudio3InpaintPipeline, StableAudio3Pipeline

    text = StableAudio3Pipeline.from_pretrained(folder, local_files_only=True)
    made = {
        "text": text,
        "a2a": StableAudio3AudioToAudioPipeline(**text.components),
        "inpaint": StableAudio3InpaintPipeline(**text.components),
    }
    for pipe in made.values():
        pipe.set_progress_bar_config(disable=True)
    return made


def client(**settings) -> Client:
    return Client(Config.load(user_file=False, providers={"stable-audio-3": settings}))


def direct(pipe, seed: int | list[int], **kwargs) -> np.ndarray:
    seeds = seed if isinstance(seed, list) else [seed]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    with torch.inference_mode():
        return pipe(
            generator=generators if isinstance(seed, list) else generators[0], output_type="np", **kwargs
        ).audios


def clip_file(tmp_path, seconds: float = 2.0, seed: int = 0):
    """A clip on disk (16-bit WAV) and the float32 samples a reader gets from it."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    left = 0.4 * np.sin(2 * np.pi * 60 * t) + 0.05 * rng.standard_normal(t.size)
    path = tmp_path / f"clip-{seed}-{seconds:g}.wav"
    sf.write(path, np.stack([left, np.roll(left, 9)]).T, SR, subtype="PCM_16")
    samples, _ = sf.read(path, dtype="float32", always_2d=True)
    return path, torch.from_numpy(np.ascontiguousarray(samples.T))[None]


def test_text_to_audio_is_the_direct_call(folder, pipes) -> None:
    c = client()
    g = c.generate("rain on a tin roof", provider=f"stable-audio-3:{folder}", duration=2.0, seed=3, steps=4)
    expected = direct(pipes["text"], 3, prompt="rain on a tin roof", duration=2.0, num_inference_steps=4)
    assert g.audio.shape == (2, 2 * SR) and g.sample_rate == SR
    assert np.array_equal(g.audio, expected[0])
    assert g.provenance.parameters["pipeline"] == "text-to-audio"
    # Several outputs: one generator per row, seeded seed + i, as a diffusers user would pass them.
    two = c.generate("rain", provider=f"stable-audio-3:{folder}", duration=2.0, seed=3, steps=2, num_outputs=2)
    expected = direct(
        pipes["text"], [3, 4], prompt="rain", duration=2.0, num_inference_steps=2, num_waveforms_per_prompt=2
    )
    assert all(np.array_equal(t.audio, e) for t, e in zip(two.tracks, expected, strict=True))
    odd = c.generate("rain", provider=f"stable-audio-3:{folder}", duration=1.237, seed=3, steps=2)
    assert odd.audio.shape == (2, round(1.237 * SR))


def test_variation_repaint_and_continuation_are_the_direct_calls(folder, pipes, tmp_path) -> None:
    path, samples = clip_file(tmp_path)
    c, spec = client(), f"stable-audio-3:{folder}"
    varied = c.generate("rain", provider=spec, duration=2.0, seed=5, steps=3, audio_prompt=path, strength=0.6)
    expected = direct(
        pipes["a2a"], 5, prompt="rain", duration=2.0, num_inference_steps=3, audio=samples, init_noise_level=0.6
    )
    assert np.array_equal(varied.audio, expected[0]) and varied.provenance.parameters["pipeline"] == "audio-to-audio"
    repainted = c.generate(
        "thunder",
        provider=spec,
        duration=2.0,
        seed=5,
        steps=3,
        audio_prompt=path,
        audio_prompt_mode="repaint",
        region=(0.5, 1.25),
    )
    expected = direct(
        pipes["inpaint"],
        5,
        prompt="thunder",
        duration=2.0,
        num_inference_steps=3,
        audio=samples,
        mask_start_seconds=0.5,
        mask_end_seconds=1.25,
    )
    assert np.array_equal(repainted.audio, expected[0])
    short, short_samples = clip_file(tmp_path, seconds=1.0, seed=1)
    extended = c.generate(
        "rain", provider=spec, duration=3.0, seed=5, steps=3, audio_prompt=short, audio_prompt_mode="continuation"
    )
    expected = direct(
        pipes["inpaint"],
        5,
        prompt="rain",
        duration=3.0,
        num_inference_steps=3,
        audio=short_samples,
        mask_start_seconds=1.0,
        mask_end_seconds=3.0,
    )
    assert np.array_equal(extended.audio, expected[0]) and extended.audio.shape == (2, 3 * SR)
    # The inputs reach the model: another clip, another region, another strength give other audio.
    other, _ = clip_file(tmp_path, seed=2)
    assert not np.array_equal(
        c.generate(
            "thunder",
            provider=spec,
            duration=2.0,
            seed=5,
            steps=3,
            audio_prompt=path,
            audio_prompt_mode="repaint",
            region=(0.1, 0.6),
        ).audio,
        repainted.audio,
    )
    assert not np.array_equal(
        c.generate("rain", provider=spec, duration=2.0, seed=5, steps=3, audio_prompt=other, strength=0.6).audio,
        varied.audio,
    )


def test_a_base_model_takes_guidance_and_a_negative_prompt(folder, base) -> None:
    from diffusers import StableAudio3Pipeline

    pipe = StableAudio3Pipeline.from_pretrained(base, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    g = client().generate(
        "birdsong",
        provider=f"stable-audio-3:{base}",
        duration=2.0,
        seed=1,
        steps=5,
        guidance=3.0,
        negative_prompt="traffic",
    )
    expected = direct(
        pipe, 1, prompt="birdsong", duration=2.0, num_inference_steps=5, guidance_scale=3.0, negative_prompt="traffic"
    )
    assert np.array_equal(g.audio, expected[0])
    # The distilled (released) models have guidance trained in; a negative prompt needs guidance above 1.
    with pytest.raises(UnsupportedFeatureError, match="guidance"):
        client().generate("x", provider=f"stable-audio-3:{folder}", duration=2.0, guidance=3.0)
    with pytest.raises(InvalidRequestError, match="guidance above 1"):
        client().generate("x", provider=f"stable-audio-3:{base}", duration=2.0, negative_prompt="traffic")


def test_refusals_come_before_loading(folder, tmp_path) -> None:
    path, _ = clip_file(tmp_path)
    c, spec = client(), f"stable-audio-3:{folder}"
    for params, message in [
        ({"audio_prompt": path}, "strength"),
        ({"audio_prompt": path, "audio_prompt_mode": "repaint", "region": (1.0, 3.0)}, "after the"),
        ({"duration": 400.0}, "maximum"),
        ({"extra": {"sigma_max": 1.0}}, "sigma_max"),
        ({"lyrics": "la la"}, "lyrics"),
        ({"audio_prompt": path, "audio_prompt_mode": "extract", "stem": "drums"}, "audio_prompt_mode"),
    ]:
        with pytest.raises(InvalidRequestError, match=message):
            c.generate("x", provider=spec, **{"duration": 2.0, **params})
    assert c.loaded_models() == []
    with pytest.raises(ModelNotAvailableError) as info:
        c.generate("x", provider="stable-audio-3", duration=5)
    text = str(info.value)
    assert "convert_stable_audio_3_to_diffusers.py" in text and "stable-audio-3-small-music" in text
    assert "accept its licence" in text


def test_progress_cancellation_and_auto_prefers_it(folder, tmp_path) -> None:
    spec = f"stable-audio-3:{folder}"
    events = []
    client().generate("x", provider=spec, duration=1.0, seed=1, steps=3, on_progress=events.append)
    assert [(e.phase, e.done, e.total) for e in events] == [("denoise", i, 3) for i in range(1, 4)]
    token = CancelToken()
    with pytest.raises(GenerationCancelledError):
        client().generate(
            "x",
            provider=spec,
            duration=1.0,
            steps=6,
            cancel=token,
            on_progress=lambda e: token.cancel() if e.done == 2 else None,
        )
    from soundforge.testing.stable_audio import build_stable_audio

    open_folder = build_stable_audio(tmp_path / "sao")
    config = Config.load(
        user_file=False, providers={"stable-audio-3": {"model": folder}, "stable-audio": {"model": str(open_folder)}}
    )
    assert Client(config).generate("rain", duration=1.0, seed=1, steps=2).provider == "stable-audio-3"


def test_licence_components_and_policy() -> None:
    from soundforge.licences.licensing import LicenseRegistry

    license = LicenseRegistry.default().license_for("stable-audio-3", "stabilityai/stable-audio-3-small-sfx")
    roles = {c.license.id for c in license.components}
    assert roles == {"LicenseRef-Stability-AI-Community", "LicenseRef-Gemma-Terms"}
    assert license.commercial_use.value == "conditional"  # the Community License's; Gemma's terms allow
    small = LicensePolicy.commercial(annual_revenue_usd=200_000, attestations=("stability_registered",))
    assert small.check("stable-audio-3", "x", license).allowed
    big = LicensePolicy.commercial(allow_unknown=True, annual_revenue_usd=5_000_000)
    assert not big.check("stable-audio-3", "x", license).allowed
    # The provider runs folders: one keeps the Community License's end above US$1M (it was allowed before).
    folder = LicenseRegistry.default().license_for("stable-audio-3", "/models/sa3-small-sfx")
    assert not big.check("stable-audio-3", "/models/sa3-small-sfx", folder).allowed
    with pytest.raises(LicensePolicyError, match="terminate"):
        Client(Config.load(user_file=False), policy=big).generate(
            "x", provider="stable-audio-3:/models/sa3-small-sfx", duration=5
        )
    with pytest.raises(LicensePolicyError):
        Client(Config.load(user_file=False), policy=LicensePolicy.commercial()).generate(
            "x", provider="stable-audio-3", duration=5
        )
