"""Known-bad device/dtype pairs: `auto` avoids them, an explicit setting is refused with its source."""

from __future__ import annotations

import pytest

from soundforge import ConfigurationError
from soundforge.backends.devices import KNOWN_BAD, check_device_dtype, dtype_name


def test_auto_avoids_a_bad_dtype_and_an_explicit_one_is_refused_with_its_source() -> None:
    # MusicGen-Melody in float16 on CUDA (transformers #36546): auto would pick float16 there.
    assert dtype_name("auto", "cuda") == "float16"
    assert (
        check_device_dtype("transformers", "cuda", "auto", "float16", kind="melody", provider="musicgen") == "float32"
    )
    assert check_device_dtype("transformers", "cuda", "auto", "float16", provider="musicgen") == "float16"  # not melody
    with pytest.raises(ConfigurationError, match="36546") as info:
        check_device_dtype("transformers", "cuda:1", "float16", "float16", kind="melody", provider="musicgen")
    assert 'dtype = "float32"' in str(info.value)
    # The Stable Audio VAE in bfloat16 on MPS (ComfyUI #15207).
    with pytest.raises(ConfigurationError, match="15207"):
        check_device_dtype("diffusers", "mps", "bfloat16", "bfloat16", provider="stable-audio")
    # EnCodec on MPS, whatever the dtype (audiocraft #612): the device itself is the problem.
    with pytest.raises(ConfigurationError, match='device = "cpu"'):
        check_device_dtype("audiocraft", "mps", "auto", "float32", provider="musicgen")
    # Everything else passes as asked.
    assert check_device_dtype("diffusers", "cpu", "bfloat16", "bfloat16", provider="stable-audio") == "bfloat16"
    assert all(pair.source.startswith("https://") for pair in KNOWN_BAD)


def test_a_known_bad_pair_is_refused_before_the_model_loads(tmp_path) -> None:
    pytest.importorskip("diffusers")
    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.stable_audio import build_stable_audio

    folder = build_stable_audio(tmp_path / "tiny")
    client = Client(
        Config.load(
            user_file=False, model_memory_gb="off", providers={"stable-audio": {"device": "mps", "dtype": "bfloat16"}}
        )
    )
    with pytest.raises(ConfigurationError, match="15207"):
        client.generate("x", provider=f"stable-audio:{folder}", duration=0.5, steps=2)
    assert not client.loaded_models()
