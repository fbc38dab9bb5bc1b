"""MAGNeT through audiocraft's own code on a tiny random checkpoint in its release format (`get_pretrained` on a
folder), on this CPU: the masked attention answered by PyTorch (soundforge.backends.audiocraft.attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundforge import CancelToken, GenerationCancelledError, InvalidRequestError, UnsupportedFeatureError
from soundforge.backends.audiocraft.attention import masked_attention
from soundforge.client import Client
from soundforge.config import Config
from soundforge.testing.audiocraft import build_audiocraft

WINDOW = 2  # seconds: 50 frames of the tiny 25 Hz codec


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("magnet")
    return {
        "music": str(build_audiocraft(root / "music", "magnet", segment_duration=WINDOW)),
        "sound": str(build_audiocraft(root / "sound", "audio-magnet", segment_duration=WINDOW)),
    }


@pytest.fixture(scope="module")
def magnet() -> Client:
    return Client(Config.load(user_file=False))


def direct(folder: str, prompt: str, seed: int, **params) -> np.ndarray:
    """What a user writes with audiocraft (on a CPU: inside `masked_attention`, which is what makes it run)."""
    from audiocraft.models import MAGNeT

    net = MAGNeT.get_pretrained(folder, device="cpu")
    net.set_generation_params(**params)
    with masked_attention("cpu"):
        torch.manual_seed(seed)
        with torch.inference_mode():
            return net.generate([prompt]).numpy()


def test_identical_to_the_direct_audiocraft_call_and_cut_to_the_duration(folders, magnet) -> None:
    spec = f"magnet:{folders['music']}"
    g = magnet.generate("calm piano", provider=spec, duration=1.5, seed=42, temperature=2.0, guidance=4.0, top_p=0.8)
    expected = direct(folders["music"], "calm piano", 42, temperature=2.0, max_cfg_coef=4.0, top_p=0.8)
    # MAGNeT makes its whole window, cut to whole 3-frame spans (50 frames -> 48: 1.92 s of the 2 s)...
    assert expected.shape == (1, 1, 48 * 1280)
    assert g.audio.shape == (1, 48000) and g.sample_rate == 32000  # ...and soundforge cuts it to the duration
    assert np.array_equal(g.audio[0], expected[0, 0, :48000])
    prov = g.provenance
    assert prov.parameters["max_cfg_coef"] == 4.0 and prov.parameters["attention"] == "sdpa"
    assert prov.parameters["window_seconds"] == WINDOW and "audiocraft" in prov.engine
    assert g.license.id == "LicenseRef-Unknown"  # a folder: the registry does not know what it holds
    whole = magnet.generate("calm piano", provider=spec, duration=WINDOW, seed=42)
    assert whole.audio.shape == (1, 64000) and not whole.audio[0, 61440:].any()  # the spans' remainder: silence
    assert whole.provenance.parameters["padded_seconds"] == pytest.approx(0.08)


def test_seeds_decoding_steps_spans_and_the_sound_models(folders, magnet) -> None:
    spec = f"magnet:{folders['music']}"
    a = magnet.generate("drums", provider=spec, duration=1, seed=7)
    b = magnet.generate("drums", provider=spec, duration=1, seed=7)
    c = magnet.generate("drums", provider=spec, duration=1, seed=8)
    assert np.array_equal(a.audio, b.audio) and not np.array_equal(a.audio, c.audio)
    extra = {"decoding_steps": [4, 2, 2, 2], "span_arrangement": "stride1", "anneal_temperature": False}
    fast = magnet.generate("drums", provider=spec, duration=1, seed=7, extra=extra)
    assert not np.array_equal(fast.audio, a.audio)
    assert fast.provenance.parameters["decoding_steps"] == [4, 2, 2, 2]
    assert fast.provenance.parameters["anneal_temp"] is False
    sound = magnet.generate("a door slams", provider=f"magnet:{folders['sound']}", duration=1, seed=1)
    assert sound.sample_rate == 16000 and sound.audio.shape == (1, 16000)


def test_progress_and_cancel_at_every_decoding_step(folders, magnet) -> None:
    spec = f"magnet:{folders['music']}"
    events = []
    magnet.generate("x", provider=spec, duration=1, seed=1, on_progress=events.append)
    assert [e.total for e in events][-1] == 50 and events[-1].done == 50  # 20 + 10 + 10 + 10 steps
    token = CancelToken()

    def stop_at_three(event) -> None:
        if event.done >= 3:
            token.cancel()

    seen = []
    with pytest.raises(GenerationCancelledError):
        magnet.generate(
            "x",
            provider=spec,
            duration=1,
            seed=1,
            cancel=token,
            on_progress=lambda e: (seen.append(e), stop_at_three(e)),
        )
    assert max(e.done for e in seen) <= 4


def test_refusals_before_compute(folders, magnet) -> None:
    spec = f"magnet:{folders['music']}"
    with pytest.raises(InvalidRequestError, match="one count per codebook"):
        magnet.generate("x", provider=spec, duration=1, extra={"decoding_steps": [10, 10]})
    with pytest.raises(InvalidRequestError, match="positive integers"):
        magnet.generate("x", provider=spec, duration=1, extra={"decoding_steps": [10, 0, 1, 1]})
    with pytest.raises(InvalidRequestError, match="span_arrangement"):
        magnet.generate("x", provider=spec, duration=1, extra={"span_arrangement": "random"})
    with pytest.raises(InvalidRequestError, match="2 s windows"):
        magnet.generate("x", provider=spec, duration=3)
    with pytest.raises(InvalidRequestError, match="10 s maximum"):
        magnet.generate("x", provider="magnet:facebook/magnet-small-10secs", duration=12)
    with pytest.raises(UnsupportedFeatureError) as prompt:
        magnet.generate("x", provider=spec, duration=1, audio_prompt=(np.zeros((1, 32000), np.float32), 32000))
    assert "musicgen" in prompt.value.supported_by


def test_loading_magnet_leaves_the_other_audiocraft_models_their_attention(folders) -> None:
    from audiocraft.modules import transformer

    before = transformer._efficient_attention_backend
    Client(Config.load(user_file=False)).generate("x", provider=f"magnet:{folders['music']}", duration=0.5, seed=1)
    assert transformer._efficient_attention_backend == before  # audiocraft's loader had set "xformers"
    musicgen = Client(Config.load(user_file=False, providers={"musicgen": {"engine": "audiocraft"}}))
    assert musicgen.generate("x", provider="musicgen:debug", duration=0.5, seed=1).audio.shape == (1, 16000)


def test_what_audiocraft_own_torch_path_does_differently(folders) -> None:
    """Without the masked path, audiocraft's "torch" backend drops MAGNeT's restricted-context mask and attends
    causally instead (audiocraft #407): the tokens of every codebook after the first come out different."""
    from audiocraft.models import MAGNeT
    from audiocraft.modules import transformer

    net = MAGNeT.get_pretrained(folders["music"], device="cpu")
    net.set_generation_params(use_sampling=False, decoding_steps=[2, 2, 2, 2])
    tokens = {}
    for path in ("masked", "torch"):
        torch.manual_seed(3)
        with torch.inference_mode():
            if path == "masked":
                with masked_attention("cpu"):
                    tokens[path] = net.generate(["x"], return_tokens=True)[1]
            else:
                transformer.set_efficient_attention_backend("torch")
                tokens[path] = net.generate(["x"], return_tokens=True)[1]
    assert torch.equal(tokens["masked"][:, 0], tokens["torch"][:, 0])  # the first codebook attends fully in both
    assert not torch.equal(tokens["masked"][:, 1:], tokens["torch"][:, 1:])
