"""The audiocraft engine on audiocraft's own random `debug` models: its real generate, continuation and extension
code, through soundforge's request, routing, provenance and licences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundforge import GenerationCancelledError, InvalidRequestError, ModelNotAvailableError, UnsupportedFeatureError
from soundforge.backends import CancelToken
from soundforge.client import Client
from soundforge.config import Config


def client(**settings) -> Client:
    return Client(
        Config.load(user_file=False, providers={"musicgen": {"engine": "audiocraft", **settings}, "audiogen": settings})
    )


@pytest.fixture(scope="module")
def musicgen() -> Client:
    return client()


def test_identical_to_the_direct_audiocraft_call(musicgen) -> None:
    g = musicgen.generate(
        "calm piano with strings", provider="musicgen:debug", duration=1.0, seed=42, top_k=50, guidance=2.0
    )
    net = (
        musicgen.backend("musicgen").engine_named("audiocraft").load("debug").model
    )  # the same weights: a fair comparison
    net.set_generation_params(duration=1.0, top_k=50, cfg_coef=2.0)
    torch.manual_seed(42)
    with torch.inference_mode():
        direct = net.generate(["calm piano with strings"]).numpy()
    assert g.sample_rate == 32000 and g.audio.shape == (1, 32000)
    assert np.array_equal(g.audio[0], direct[0, 0, :32000])
    prov = g.provenance
    assert prov.parameters["engine"] == "audiocraft" and prov.parameters["cfg_coef"] == 2.0 and prov.seed == 42
    assert "audiocraft" in prov.engine and g.license.id == "LicenseRef-Unknown"  # a local folder


def test_seeds_batches_and_progress(musicgen) -> None:
    events = []
    a = musicgen.generate("drums", provider="musicgen:debug", duration=0.5, seed=1, on_progress=events.append)
    b = musicgen.generate("drums", provider="musicgen:debug", duration=0.5, seed=1)
    c = musicgen.generate("drums", provider="musicgen:debug", duration=0.5, seed=2)
    assert np.array_equal(a.audio, b.audio) and not np.array_equal(a.audio, c.audio)
    assert events and events[-1].done == events[-1].total and {e.phase for e in events} == {"decode"}
    three = musicgen.generate("drums", provider="musicgen:debug", duration=0.5, seed=1, num_outputs=3)
    assert len(three.tracks) == 3 and not np.array_equal(three.tracks[0].audio, three.tracks[1].audio)


def test_continuation_and_long_form(musicgen) -> None:
    prompt = musicgen.generate("lofi", provider="musicgen:debug", duration=0.4, seed=3)
    cont = musicgen.generate(
        "lofi", provider="musicgen:debug", duration=1.0, seed=4, audio_prompt=(prompt.audio, prompt.sample_rate)
    )
    assert cont.audio.shape == (1, 32000) and np.isfinite(cont.audio).all()
    with pytest.raises(InvalidRequestError, match="variation"):
        musicgen.generate(
            "x",
            provider="musicgen:debug",
            duration=1.0,
            audio_prompt=(prompt.audio, 32000),
            audio_prompt_mode="variation",
        )
    # Past the 30 s window audiocraft extends by `extend_stride`: the exact length comes back.
    long = musicgen.generate("ambient", provider="musicgen:debug", duration=31.0, seed=5, extra={"extend_stride": 25})
    assert long.audio.shape == (1, 31 * 32000) and long.provenance.parameters["extend_stride"] == 25


def test_cancel_between_steps(musicgen) -> None:
    token = CancelToken()

    def stop_at_five(event) -> None:
        if event.done >= 5:
            token.cancel()

    with pytest.raises(GenerationCancelledError):
        musicgen.generate("x", provider="musicgen:debug", duration=2.0, seed=1, on_progress=stop_at_five, cancel=token)


def test_the_audiocraft_engine_does_not_stream_and_says_which_engine_does(musicgen) -> None:
    with pytest.raises(UnsupportedFeatureError, match="audiocraft engine makes whole tracks only") as refused:
        musicgen.stream("x", provider="musicgen:debug", duration=1.0)
    assert refused.value.field == "streaming"
    whole = musicgen.stream("x", provider="musicgen:debug", duration=1.0, seed=3, whole=True).result()
    assert whole.audio.shape == (1, 32000)


def test_audiogen_provider() -> None:
    c = client()
    g = c.generate("door creaking in an old house", provider="audiogen:debug", duration=1.0, seed=7)
    assert g.sample_rate == 16000 and g.audio.shape == (1, 16000) and g.provenance.provider == "audiogen"
    assert g.license.id == "LicenseRef-Unknown" and g.provenance.parameters["engine"] == "audiocraft"
    with pytest.raises(ModelNotAvailableError, match="hf download facebook/audiogen-medium"):
        c.generate("x", provider="audiogen:facebook/audiogen-medium", duration=1.0)
    with pytest.raises(InvalidRequestError, match="window"):
        c.generate("x", provider="audiogen:debug", duration=1.0, extra={"window": 10})


def test_engines_are_chosen_per_request(musicgen, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="unknown musicgen engine"):
        musicgen.generate("x", provider="musicgen:debug", duration=0.5, extra={"engine": "jax"})
    folder = tmp_path / "not-a-checkpoint"
    folder.mkdir()
    with pytest.raises(ModelNotAvailableError, match=r"state_dict\.bin"):
        musicgen.generate("x", provider=f"musicgen:{folder}", duration=0.5)


@pytest.mark.parametrize("family", ["musicgen", "audiogen"])
def test_released_checkpoint_folders_load_through_get_pretrained(tmp_path, family) -> None:
    """Folders in audiocraft's export format (state_dict.bin + compression_state_dict.bin with their configs)."""
    from soundforge.testing.audiocraft import build_audiocraft

    folder = build_audiocraft(tmp_path / family, family)
    c = client()
    spec = f"{family}:{folder}"
    a = c.generate("rain on a tin roof", provider=spec, duration=1.5, seed=11)
    b = c.generate("rain on a tin roof", provider=spec, duration=1.5, seed=11)
    rate = 32000 if family == "musicgen" else 16000
    assert a.sample_rate == rate and a.audio.shape == (1, int(1.5 * rate)) and np.array_equal(a.audio, b.audio)
    assert np.abs(a.audio).max() > 0 and a.provenance.model == str(folder)
    [entry] = [m for m in c.loaded_models() if m.model == str(folder)]
    assert entry.nbytes > 0  # the loaded model is in the client's memory ledger


def test_multiband_diffusion_decoder(tmp_path) -> None:
    """The same tokens decoded by MultiBand Diffusion instead of EnCodec; equal to audiocraft's own call.
    (0.48 s: a whole number of the debug codec's 25 Hz frames.)"""
    from soundforge.testing.audiocraft import build_multiband_diffusion

    mbd_folder = build_multiband_diffusion(tmp_path / "mbd")
    c = client(mbd_model=str(mbd_folder))
    extra = {"decoder": "multiband-diffusion"}
    a = c.generate("calm piano", provider="musicgen:debug", duration=0.48, seed=9, extra=extra)
    b = c.generate("calm piano", provider="musicgen:debug", duration=0.48, seed=9, extra=extra)
    plain = c.generate("calm piano", provider="musicgen:debug", duration=0.48, seed=9)
    assert a.audio.shape == plain.audio.shape == (1, 15360) and np.array_equal(a.audio, b.audio)
    assert not np.allclose(a.audio, plain.audio) and a.provenance.parameters["decoder"] == "multiband-diffusion"
    engine = c.backend("musicgen").engine_named("audiocraft")
    net = engine.load("debug").model
    diffusion = engine.multiband_diffusion("debug", engine.load("debug"))
    net.set_generation_params(duration=0.48)
    torch.manual_seed(9)
    with torch.inference_mode():
        _, tokens = net.generate(["calm piano"], return_tokens=True)
        direct = diffusion.tokens_to_wav(tokens)
    assert np.array_equal(a.audio[0], direct[0, 0, :15360].numpy())
    with pytest.raises(InvalidRequestError, match="decoder"):
        c.generate("x", provider="musicgen:debug", duration=0.5, extra={"decoder": "vocos"})
    with pytest.raises(InvalidRequestError, match="32 kHz"):
        c.generate("x", provider="audiogen:debug", duration=0.5, extra=extra)
    with pytest.raises(ModelNotAvailableError, match="mbd_musicgen_32khz"):
        client(mbd_model=str(tmp_path / "empty")).generate("x", provider="musicgen:debug", duration=0.5, extra=extra)
