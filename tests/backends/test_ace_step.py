"""ACE-Step 1.5 through diffusers on tiny random pipelines built in the test (every component, text encoder and
tokenizer included): the real code path, compared with the direct `AceStepPipeline` call bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

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
from soundforge.testing.ace_step import build_ace_step  # noqa: E402

SR = 800  # the tiny VAE's rate (hop 8: 100 latent frames a second)
SECONDS = 10.0  # ACE-Step's shortest song


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return str(build_ace_step(tmp_path_factory.mktemp("ace") / "tiny"))


@pytest.fixture(scope="module")
def turbo(tmp_path_factory) -> str:
    return str(build_ace_step(tmp_path_factory.mktemp("ace-turbo") / "tiny-turbo", turbo=True, seed=1))


@pytest.fixture(scope="module")
def pipe(folder):
    from diffusers import AceStepPipeline

    pipeline = AceStepPipeline.from_pretrained(folder, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def client(**settings) -> Client:
    return Client(Config.load(user_file=False, providers={"ace-step": settings}))


def direct(pipe, seed: int, **kwargs) -> np.ndarray:
    """The direct call as a user of diffusers writes it, the global generator seeded for the VAE's posterior."""
    torch.manual_seed(seed)
    with torch.inference_mode():
        return pipe(generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).audios


def song(seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    left = 0.4 * np.sin(2 * np.pi * 110 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([left, np.roll(left, 40)]).astype(np.float32)


def song_file(tmp_path, seconds: float = SECONDS, seed: int = 0):
    """A song on disk (16-bit WAV, as a user has one) and the float32 samples a reader gets from it."""
    import soundfile as sf

    path = tmp_path / f"source-{seed}-{seconds:g}.wav"
    sf.write(path, song(seconds, seed).T, SR, subtype="PCM_16")
    samples, _ = sf.read(path, dtype="float32", always_2d=True)
    return path, np.ascontiguousarray(samples.T)


LYRICS = "[verse]\nwalking home in the rain\n[chorus]\nsing it again"


def test_text_to_music_with_lyrics_and_metadata_is_the_direct_call(folder, pipe) -> None:
    g = client().generate(
        "bright indie pop",
        provider=f"ace-step:{folder}",
        duration=SECONDS,
        seed=5,
        steps=3,
        guidance=3.0,
        lyrics=LYRICS,
        vocal_language="en",
        bpm=120,
        key="a minor",
        time_signature="3/4",
        extra={"shift": 2.0},
    )
    expected = direct(
        pipe,
        5,
        prompt="bright indie pop",
        lyrics=LYRICS,
        vocal_language="en",
        audio_duration=SECONDS,
        num_inference_steps=3,
        guidance_scale=3.0,
        shift=2.0,
        bpm=120,
        keyscale="A minor",
        timesignature="3",
    )
    assert g.audio.shape == (2, round(SECONDS * SR)) and g.sample_rate == SR
    assert np.array_equal(g.audio, expected[0])
    assert g.provenance.request["key"] == "A minor" and g.provenance.request["time_signature"] == "3/4"
    assert g.provenance.parameters["bpm"] == 120 and g.provenance.parameters["task_type"] == "text2music"
    # Each of the song fields reaches the model: changing it changes the audio.
    base = dict(provider=f"ace-step:{folder}", duration=SECONDS, seed=5, steps=2, lyrics=LYRICS, bpm=120)
    c = client()
    reference = c.generate("bright indie pop", **base).audio
    for change in ({"lyrics": "[verse]\nsomething else"}, {"bpm": 90}, {"key": "F# major"}, {"time_signature": "6/8"}):
        assert not np.array_equal(c.generate("bright indie pop", **{**base, **change}).audio, reference), change


@pytest.mark.parametrize(
    ("params", "pipeline_args"),
    [
        (
            {"audio_prompt_mode": "repaint", "region": (2.0, 6.5)},
            {"task_type": "repaint", "repainting_start": 2.0, "repainting_end": 6.5},
        ),
        ({"audio_prompt_mode": "cover", "strength": 0.6}, {"task_type": "cover", "audio_cover_strength": 0.6}),
        ({"audio_prompt_mode": "cover"}, {"task_type": "cover"}),
        ({"audio_prompt_mode": "extract", "stem": "vocals"}, {"task_type": "extract", "track_name": "vocals"}),
    ],
    ids=["repaint", "cover-strength", "cover", "extract"],
)
def test_operations_on_an_audio_prompt_are_the_direct_call(folder, pipe, params, pipeline_args, tmp_path) -> None:
    path, source = song_file(tmp_path)
    c = client()
    g = c.generate(
        "lo-fi remix",
        provider=f"ace-step:{folder}",
        duration=SECONDS,
        seed=9,
        steps=2,
        audio_prompt=path,
        **params,
    )
    expected = direct(
        pipe,
        9,
        prompt="lo-fi remix",
        audio_duration=SECONDS,
        num_inference_steps=2,
        src_audio=torch.from_numpy(source),
        **pipeline_args,
    )
    assert np.array_equal(g.audio, expected[0])
    # The input matters, and the caller's global random state is left alone (the model is loaded already: loading
    # initialises weights from that state, as diffusers does).
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    other = c.generate(
        "lo-fi remix",
        provider=f"ace-step:{folder}",
        duration=SECONDS,
        seed=9,
        steps=2,
        audio_prompt=(song(seed=1) * 0.5, SR),
        **params,
    )
    assert torch.equal(torch.random.get_rng_state(), before)
    assert not np.array_equal(other.audio, g.audio)


def test_an_extracted_stem_is_a_named_track_saved_under_its_role(folder, tmp_path) -> None:
    g = client().generate(
        "full band",
        provider=f"ace-step:{folder}",
        duration=SECONDS,
        seed=2,
        steps=2,
        audio_prompt=(song(), SR),
        audio_prompt_mode="extract",
        stem="drums",
        num_outputs=2,
    )
    assert [t.role for t in g.tracks] == ["drums", "drums"]
    paths = g.save(tmp_path / "mix.wav")  # two takes of one stem: numbered
    assert [p.name for p in paths] == ["mix-1.wav", "mix-2.wav"]
    single = client().generate(
        "full band",
        provider=f"ace-step:{folder}",
        duration=SECONDS,
        seed=2,
        steps=2,
        audio_prompt=(song(), SR),
        audio_prompt_mode="extract",
        stem="bass",
    )
    (path,) = single.save(tmp_path / "song.wav")
    assert path.name == "song.bass.wav" and path.with_name("song.bass.wav.json").is_file()
    from soundforge.output.tags import read_tags

    assert read_tags(path)["ROLE"] == "bass"


def test_continuation_duration_seed_and_outputs(folder) -> None:
    spec, c = f"ace-step:{folder}", client()
    extended = c.generate(
        "keep going",
        provider=spec,
        duration=12.0,
        seed=1,
        steps=2,
        audio_prompt=(song(4.0), SR),
        audio_prompt_mode="continuation",
    )
    assert extended.audio.shape == (2, 12 * SR) and extended.provenance.parameters["repainting_start"] == 4.0
    with pytest.raises(InvalidRequestError, match="not shorter"):
        c.generate(
            "x", provider=spec, duration=SECONDS, audio_prompt=(song(11.0), SR), audio_prompt_mode="continuation"
        )
    odd = c.generate("x", provider=spec, duration=10.37, seed=1, steps=2)
    assert odd.audio.shape == (2, round(10.37 * SR))
    a = c.generate("x", provider=spec, duration=SECONDS, seed=4, steps=2)
    b = c.generate("x", provider=spec, duration=SECONDS, seed=4, steps=2)
    other = c.generate("x", provider=spec, duration=SECONDS, seed=5, steps=2)
    assert a.audio.tobytes() == b.audio.tobytes() and not np.array_equal(a.audio, other.audio)
    two = c.generate("x", provider=spec, duration=SECONDS, seed=4, steps=2, num_outputs=2)
    assert len(two.tracks) == 2 and not np.array_equal(two.tracks[0].audio, two.tracks[1].audio)
    assert two.provenance.parameters["seed_scope"] == "output"


def test_what_ace_step_cannot_do_is_refused_before_loading(folder, turbo) -> None:
    spec, c = f"ace-step:{folder}", client()
    refusals = [
        ({"bpm": 120.5}, "whole BPM"),
        ({"bpm": 310}, "30 to 300"),
        ({"time_signature": "5/4"}, "2/4, 3/4, 4/4, 6/8"),
        ({"vocal_language": "xx"}, "does not sing in 'xx'"),
        ({"duration": 5.0}, "minimum"),
        ({"audio_prompt": (song(), SR)}, "audio_prompt_mode"),
        ({"audio_prompt": (song(), SR), "audio_prompt_mode": "repaint", "region": (2.0, 11.0)}, "after the"),
        ({"extra": {"temperature": 1.0}}, "temperature"),
    ]
    for params, message in refusals:
        with pytest.raises(InvalidRequestError, match=message):
            c.generate("x", provider=spec, **{"duration": SECONDS, **params})
    assert c.loaded_models() == []  # none of that loaded the model
    # A turbo model has guidance distilled in and was not trained to extract stems: refused by name.
    with pytest.raises(UnsupportedFeatureError, match="guidance"):
        c.generate("x", provider=f"ace-step:{turbo}", duration=SECONDS, guidance=3.0)
    with pytest.raises(UnsupportedFeatureError) as info:
        c.generate(
            "x",
            provider=f"ace-step:{turbo}",
            duration=SECONDS,
            audio_prompt=(song(), SR),
            audio_prompt_mode="extract",
            stem="vocals",
        )
    assert info.value.field == "audio_prompt_mode" and "cover" in str(info.value)
    assert c.generate("x", provider=f"ace-step:{turbo}", duration=SECONDS, seed=1, steps=2).audio.shape[1] == 8000


def test_other_backends_refuse_song_fields_naming_those_that_can(folder) -> None:
    c = client()
    with pytest.raises(UnsupportedFeatureError) as info:
        c.generate("x", provider="synth", lyrics=LYRICS)
    assert "ace-step" in info.value.supported_by and "synth" not in info.value.supported_by
    with pytest.raises(UnsupportedFeatureError) as info:
        c.generate("x", provider="musicgen", bpm=120)
    assert info.value.field == "bpm" and {"ace-step", "synth"} <= set(info.value.supported_by)
    with pytest.raises(UnsupportedFeatureError) as info:
        c.generate(
            "x",
            provider="stable-audio",
            duration=5,
            audio_prompt=(song(), SR),
            audio_prompt_mode="repaint",
            region=(1.0, 2.0),
        )
    assert info.value.field == "audio_prompt_mode" and "ace-step" in info.value.supported_by
    assert "variation" in str(info.value)


def test_a_commercial_policy_picks_ace_step_for_a_song_with_lyrics(folder, tmp_path, monkeypatch) -> None:
    from soundforge.backends.ace_step import XL_TURBO
    from soundforge.testing.hub import install_in_hub_cache
    from soundforge.testing.musicgen import build_musicgen

    musicgen = build_musicgen(tmp_path / "mg")
    hub = tmp_path / "hub"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))  # read at each call
    config = Config.load(
        user_file=False,
        auto_order=["musicgen", "ace-step", "synth"],
        providers={"musicgen": {"model": str(musicgen)}},
    )
    commercial = Client(config, policy=LicensePolicy.commercial())
    # The default checkpoint's licence is its own card's: without the card, it is unknown and refused, saying so.
    install_in_hub_cache(folder, XL_TURBO, hub)
    with pytest.raises(LicensePolicyError, match="unknown"):
        commercial.generate("a ballad", provider="ace-step", duration=SECONDS, lyrics=LYRICS)
    # The weights in the cache with their card (license: mit, as the ACE-Step release's card): a commercial product
    # gets a local model that sings, by `auto` too, MusicGen (non-commercial) passed over.
    install_in_hub_cache(folder, XL_TURBO, hub, card="---\nlicense: mit\nlibrary_name: diffusers\n---\n# ACE-Step\n")
    g = commercial.generate("a ballad", duration=SECONDS, lyrics=LYRICS, seed=1, steps=2)
    assert g.provider == "ace-step" and g.provenance.model == XL_TURBO
    assert g.license.id == "MIT" and g.license.commercial_use.value == "allowed"
    assert any((c.source or "").endswith("README.md") for c in g.license.components)
    skipped = {a.provider: a.error_code for a in g.provenance.attempts if a.outcome == "skipped"}
    assert skipped["musicgen"] in ("license_policy", "unsupported_feature")
    # A folder of one's own has no record: unknown, refused, until declared.
    with pytest.raises(LicensePolicyError, match="unknown"):
        commercial.generate("a ballad", provider=f"ace-step:{folder}", duration=SECONDS, lyrics=LYRICS)


def test_progress_cancellation_and_missing_weights(folder) -> None:
    spec = f"ace-step:{folder}"
    events = []
    client().generate("x", provider=spec, duration=SECONDS, seed=1, steps=3, on_progress=events.append)
    assert [(e.phase, e.done, e.total) for e in events] == [("denoise", i, 3) for i in range(1, 4)]
    token = CancelToken()

    def stop_after_one(event) -> None:
        if event.done == 1:
            token.cancel()

    seen = []
    with pytest.raises(GenerationCancelledError):
        client().generate(
            "x",
            provider=spec,
            duration=SECONDS,
            steps=6,
            cancel=token,
            on_progress=lambda e: (seen.append(e), stop_after_one(e)),
        )
    assert len(seen) == 1
    with pytest.raises(ModelNotAvailableError) as info:
        client().generate("x", provider="ace-step", duration=SECONDS)
    text = str(info.value)
    assert "ACE-Step/acestep-v15-xl-turbo-diffusers" in text and "Hugging Face cache" in text


def test_concurrent_songs_share_one_pipeline_call(folder, pipe) -> None:
    """Compatible concurrent text-to-music requests are batched (it gained 1.10x on a 2-core CPU); each row has its
    own prompt, lyrics and generator, and equals the direct batched call."""
    import asyncio

    c = client(batch_window=0.5)
    spec = f"ace-step:{folder}"
    songs = [("sunny pop", "[verse]\nhello sun"), ("rainy blues", "[verse]\nhello rain")]

    async def together():
        return await asyncio.gather(
            *(
                c.agenerate(prompt, provider=spec, duration=SECONDS, seed=10 * i, steps=2, lyrics=lyrics)
                for i, (prompt, lyrics) in enumerate(songs)
            )
        )

    batched = asyncio.run(together())
    assert [g.provenance.parameters["batched_requests"] for g in batched] == [2, 2]
    with torch.inference_mode():
        expected = pipe(
            [p for p, _ in songs],
            lyrics=[lyr for _, lyr in songs],
            audio_duration=SECONDS,
            num_inference_steps=2,
            generator=[torch.Generator().manual_seed(10 * i) for i in range(2)],
            output_type="np",
        ).audios
    for i, g in enumerate(batched):
        assert np.array_equal(g.audio, expected[i]), i
    alone = client(batching=False).generate("sunny pop", provider=spec, duration=SECONDS, seed=0, steps=2)
    assert np.array_equal(alone.audio, c.generate("sunny pop", provider=spec, duration=SECONDS, seed=0, steps=2).audio)
    with pytest.raises(Exception, match="batching must be true or false"):
        client(batching="auto").generate("x", provider=spec, duration=SECONDS, steps=2)
