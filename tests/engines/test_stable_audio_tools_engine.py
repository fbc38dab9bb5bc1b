"""The stable-audio-tools engine on a tiny random diffusion_cond model: stable-audio-tools' own loader and
`generate_diffusion_cond`, through soundforge's request, routing, provenance and licences."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from soundforge import GenerationCancelledError, InvalidRequestError, ModelNotAvailableError
from soundforge.backends import CancelToken
from soundforge.client import Client
from soundforge.config import Config
from soundforge.testing.stable_audio import build_stable_audio_tools

from .t5_stand_in import fabricate_t5_base


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    fabricate_t5_base(Path(os.environ["HF_HOME"]), tmp_path_factory.mktemp("t5"))
    return str(build_stable_audio_tools(tmp_path_factory.mktemp("sat") / "tiny"))


def client(**settings) -> Client:
    return Client(
        Config.load(user_file=False, providers={"stable-audio": {"engine": "stable-audio-tools", **settings}})
    )


@pytest.fixture(scope="module")
def sat() -> Client:
    return client()


def test_identical_to_the_direct_stable_audio_tools_call(sat, folder) -> None:
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    g = sat.generate(
        "rain on a tin roof",
        provider=f"stable-audio:{folder}",
        duration=0.75,
        seed=5,
        steps=4,
        guidance=5.0,
        negative_prompt="low quality",
    )
    model = (
        sat.backend("stable-audio").engine_named("stable-audio-tools").load(folder).model
    )  # the same weights: a fair comparison
    conditioning = [{"prompt": "rain on a tin roof", "seconds_start": 0, "seconds_total": 0.75}]
    negative = [{"prompt": "low quality", "seconds_start": 0, "seconds_total": 0.75}]
    with contextlib.redirect_stdout(io.StringIO()), torch.inference_mode():
        direct = generate_diffusion_cond(
            model,
            steps=4,
            cfg_scale=5.0,
            conditioning=conditioning,
            negative_conditioning=negative,
            sample_size=8192,
            seed=5,
            device="cpu",
            sampler_type="dpmpp-3m-sde",
            sigma_min=0.3,
            sigma_max=500.0,
        )
    assert g.sample_rate == 8000 and g.audio.shape == (2, 6000)
    assert np.array_equal(g.audio, direct[0, :, :6000].float().numpy())
    prov = g.provenance
    assert prov.parameters["engine"] == "stable-audio-tools" and prov.parameters["steps"] == 4
    assert "stable-audio-tools" in prov.engine and g.license.id == "LicenseRef-Unknown"  # a local folder


def test_seeds_batches_progress_and_cancel(sat, folder) -> None:
    spec = f"stable-audio:{folder}"
    events = []
    a = sat.generate("drums", provider=spec, duration=0.5, seed=1, steps=3, on_progress=events.append)
    b = sat.generate("drums", provider=spec, duration=0.5, seed=1, steps=3)
    c = sat.generate("drums", provider=spec, duration=0.5, seed=2, steps=3)
    assert np.array_equal(a.audio, b.audio) and not np.array_equal(a.audio, c.audio)
    assert [e.done for e in events] == [1, 2, 3] and {e.phase for e in events} == {"denoise"}
    two = sat.generate("drums", provider=spec, duration=0.5, seed=1, steps=3, num_outputs=2)
    assert len(two.tracks) == 2 and not np.array_equal(two.tracks[0].audio, two.tracks[1].audio)
    token = CancelToken()

    def stop(event) -> None:
        token.cancel()

    with pytest.raises(GenerationCancelledError):
        sat.generate("drums", provider=spec, duration=0.5, seed=1, steps=5, on_progress=stop, cancel=token)


def test_variation_of_an_input_clip(sat, folder) -> None:
    spec = f"stable-audio:{folder}"
    clip = sat.generate("pads", provider=spec, duration=1.0, seed=3, steps=3)
    varied = sat.generate(
        "pads",
        provider=spec,
        duration=1.0,
        seed=4,
        steps=3,
        audio_prompt=(clip.audio, clip.sample_rate),
        extra={"init_noise_level": 0.5},
    )
    assert varied.audio.shape == (2, 8000) and np.isfinite(varied.audio).all()
    assert varied.provenance.parameters["init_noise_level"] == 0.5
    with pytest.raises(InvalidRequestError, match="'continuation' is not among its audio_prompt modes: variation"):
        sat.generate(
            "x", provider=spec, duration=1.0, audio_prompt=(clip.audio, 8000), audio_prompt_mode="continuation"
        )


def test_window_extras_and_missing_weights(sat, folder, tmp_path) -> None:
    spec = f"stable-audio:{folder}"
    with pytest.raises(InvalidRequestError, match="window"):
        sat.generate("x", provider=spec, duration=1.5)  # the tiny model's window is 8192 / 8000 s
    with pytest.raises(InvalidRequestError, match="sampler_type"):
        sat.generate("x", provider=spec, duration=0.5, extra={"sampler_type": "euler-magic"})
    with pytest.raises(InvalidRequestError, match="unknown stable-audio engine"):
        sat.generate("x", provider=spec, duration=0.5, extra={"engine": "onnx"})
    with pytest.raises(ModelNotAvailableError, match=r"model\.safetensors"):
        sat.generate("x", provider=f"stable-audio:{tmp_path}", duration=0.5)
    # Stable Audio Open Small exists for stable-audio-tools only: this engine names it, and says how to get it.
    with pytest.raises(ModelNotAvailableError, match=r"hf download stabilityai/stable-audio-open-small"):
        sat.generate("x", provider="stable-audio:stabilityai/stable-audio-open-small", duration=5)
