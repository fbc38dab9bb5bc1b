"""MiniMax Music 3 through diffusers' modular pipeline on tiny random pipelines built in the test (every component,
the Qwen3 language model and its tokenizer included): the real code path, compared with the direct
`ModularPipeline.from_pretrained(...)` call bit for bit."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("diffusers.modular_pipelines.minimax_music3")

from soundforge import (  # noqa: E402
    CancelToken,
    GenerationCancelledError,
    InvalidRequestError,
    LicensePolicy,
    LicensePolicyError,
    ModelNotAvailableError,
    UnsupportedFeatureError,
)
from soundforge.backends.minimax_music_3 import INSTRUMENTAL_CAPTION, INSTRUMENTAL_LYRICS, RELEASE  # noqa: E402
from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.testing.minimax_music3 import SAMPLE_RATE, build_minimax_music3  # noqa: E402

LYRICS = "[verse]\nwalking home in the rain\n[chorus]\nsing it again"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return str(build_minimax_music3(tmp_path_factory.mktemp("mm3") / "tiny"))


@pytest.fixture(scope="module")
def pipe(folder):
    from diffusers import ModularPipeline

    pipeline = ModularPipeline.from_pretrained(folder, local_files_only=True)
    pipeline.load_components(local_files_only=True)
    return pipeline


def client(**settings) -> Client:
    return Client(Config.load(user_file=False, providers={"minimax-music-3": settings}))


def direct(pipe, seed: int, **kwargs) -> np.ndarray:
    """The direct call as diffusers' documentation writes it (PR #14456): one CPU generator."""
    with torch.inference_mode():
        return pipe(generator=torch.Generator().manual_seed(seed), output="audios", **kwargs)


def test_a_song_with_lyrics_is_the_direct_call(folder, pipe) -> None:
    g = client().generate(
        "warm indie folk, male vocal",
        provider=f"minimax-music-3:{folder}",
        duration=1.0,
        seed=5,
        steps=3,
        lyrics=LYRICS,
    )
    expected = direct(
        pipe, 5, prompt="warm indie folk, male vocal", lyrics=LYRICS, audio_duration=1.0, num_inference_steps=3
    )
    assert g.audio.shape == (2, SAMPLE_RATE) and g.sample_rate == SAMPLE_RATE
    assert np.array_equal(g.audio, expected[0])
    parameters = g.provenance.parameters
    assert parameters["num_inference_steps"] == 3 and parameters["song_seconds"] == [1.0]
    assert g.provenance.request["lyrics"] == LYRICS and g.provenance.seed == 5


def test_tempo_key_instrumental_and_outputs_map_onto_the_description(folder, pipe) -> None:
    g = client().generate(
        "cinematic strings",
        provider=f"minimax-music-3:{folder}",
        duration=1.0,
        seed=7,
        steps=2,
        instrumental=True,
        bpm=96,
        key="a minor",
        num_outputs=2,
    )
    caption = f"cinematic strings. BPM: 96. Key: A minor. {INSTRUMENTAL_CAPTION}"
    for row, track in enumerate(g.tracks):  # output i is seeded seed + i
        expected = direct(
            pipe, 7 + row, prompt=caption, lyrics=INSTRUMENTAL_LYRICS, audio_duration=1.0, num_inference_steps=2
        )
        assert np.array_equal(track.audio, expected[0])
    assert "instrumental_by" in g.provenance.parameters


def test_what_it_cannot_do_is_refused_before_loading(folder) -> None:
    spec, c = f"minimax-music-3:{folder}", client()
    with pytest.raises(InvalidRequestError, match="lyrics") as info:
        c.generate("a ballad", provider=spec, duration=1.0)
    assert info.value.field == "lyrics" and "instrumental=True" in (info.value.hint or "")
    with pytest.raises(InvalidRequestError, match="maximum"):
        c.generate("a ballad", provider=spec, duration=400.0, lyrics=LYRICS)
    for field, value in (("guidance", 3.0), ("negative_prompt", "drums"), ("time_signature", "3/4")):
        with pytest.raises(UnsupportedFeatureError) as refused:
            c.generate("a ballad", provider=spec, duration=1.0, lyrics=LYRICS, **{field: value})
        assert refused.value.field == field
    with pytest.raises(InvalidRequestError, match="temperature"):
        c.generate("a ballad", provider=spec, duration=1.0, lyrics=LYRICS, extra={"temperature": 1.0})
    assert c.loaded_models() == []  # none of that loaded the model
    # A folder that is not there is said plainly, after the request was found valid.
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        c.generate("a ballad", provider="minimax-music-3:/no/such/folder", duration=1.0, lyrics=LYRICS)


def test_progress_and_cancellation_per_frame_and_per_step(folder) -> None:
    spec, c = f"minimax-music-3:{folder}", client()
    events = []
    c.generate("x", provider=spec, duration=1.0, seed=1, steps=3, lyrics=LYRICS, on_progress=events.append)
    semantic = [(e.done, e.total) for e in events if e.phase == "semantic"]
    denoise = [(e.done, e.total) for e in events if e.phase == "denoise"]
    assert semantic[0] == (1, 25) and semantic == sorted(semantic) and semantic[-1][1] == 25
    assert denoise == [(1, 3), (2, 3), (3, 3)] and events[-1].phase == "denoise"
    token = CancelToken()
    seen = []

    def stop_after_two(event) -> None:
        seen.append(event)
        if event.done == 2:
            token.cancel()

    with pytest.raises(GenerationCancelledError):
        c.generate("x", provider=spec, duration=1.0, steps=3, lyrics=LYRICS, cancel=token, on_progress=stop_after_two)
    assert [e.phase for e in seen] == ["semantic", "semantic"]  # it stopped at the next frame
    # The hooks went with the call: the loaded model generates again, and the same seed gives the same song.
    again = c.generate("x", provider=spec, duration=1.0, seed=1, steps=3, lyrics=LYRICS)
    first = c.generate("x", provider=spec, duration=1.0, seed=1, steps=3, lyrics=LYRICS)
    assert np.array_equal(again.audio, first.audio)
    (loaded,) = c.loaded_models()
    assert loaded.provider == "minimax-music-3" and loaded.nbytes > 0  # in the memory ledger


def test_a_moved_folder_loads_and_a_missing_component_is_named(folder, tmp_path) -> None:
    # save_pretrained records absolute paths in modular_model_index.json: a moved folder must still load from itself.
    built, moved = build_minimax_music3(tmp_path / "built"), tmp_path / "moved"  # the same weights as `folder`
    shutil.move(built, moved)
    g = client().generate("x", provider=f"minimax-music-3:{moved}", duration=1.0, seed=2, steps=2, lyrics=LYRICS)
    h = client().generate("x", provider=f"minimax-music-3:{folder}", duration=1.0, seed=2, steps=2, lyrics=LYRICS)
    assert np.array_equal(g.audio, h.audio)
    shutil.rmtree(moved / "vocoder")
    with pytest.raises(ModelNotAvailableError, match="vocoder"):
        client().generate("x", provider=f"minimax-music-3:{moved}", duration=1.0, lyrics=LYRICS)


def test_the_release_licence_is_conditional_with_its_attribution(folder, tmp_path, monkeypatch) -> None:
    from soundforge.testing.hub import install_in_hub_cache

    hub = tmp_path / "hub"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))  # read at each call
    install_in_hub_cache(folder, RELEASE, hub)
    g = client().generate("a ballad", provider="minimax-music-3", duration=1.0, seed=1, steps=2, lyrics=LYRICS)
    assert g.provenance.model == RELEASE
    assert g.license.id == "LicenseRef-MiniMax-Music3-Community"
    assert g.license.commercial_use.value == "conditional" and g.license.attribution == "MiniMax-Music3"
    # A commercial product must say its revenue is under the cap before it may use it; then it may.
    with pytest.raises(LicensePolicyError, match="annual_revenue_usd"):
        Client(Config.load(user_file=False), policy=LicensePolicy.commercial()).generate(
            "a ballad", provider="minimax-music-3", duration=1.0, lyrics=LYRICS
        )
    small = LicensePolicy.commercial(annual_revenue_usd=2_000_000)
    allowed = Client(Config.load(user_file=False), policy=small).generate(
        "a ballad", provider="minimax-music-3", duration=1.0, seed=1, steps=2, lyrics=LYRICS
    )
    assert np.array_equal(allowed.audio, g.audio)
