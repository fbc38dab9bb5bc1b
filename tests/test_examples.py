"""The examples run as a user would run them, from a clean folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_plugin_example_follows_the_guide_and_passes_the_contract(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "plugin_backend.py")], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "4.0 s at 96 BPM, licence CC0-1.0" in out.stdout
    data, rate = sf.read(tmp_path / "click.wav")
    assert rate == 22050 and data.shape == (4 * 22050,)


def test_the_plugin_backend_keeps_the_backend_contract() -> None:
    import importlib.util

    import numpy as np
    import pytest

    from soundforge import CancelToken, GenerationCancelledError, InvalidRequestError, UnsupportedFeatureError
    from soundforge.client import Client
    from soundforge.config import Config

    spec = importlib.util.spec_from_file_location("plugin_backend", EXAMPLES / "plugin_backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = Client(Config.load(user_file=False), backends={"click": module.ClickTrackBackend})
    a = client.generate("click 140 bpm", provider="click", duration=1.7, seed=2)
    b = client.generate("click 140 bpm", provider="click", duration=1.7, seed=2)
    assert a.audio.shape == (1, round(1.7 * 22050)) and np.array_equal(a.audio, b.audio)
    with pytest.raises(UnsupportedFeatureError, match="temperature"):
        client.generate("x", provider="click", duration=1, temperature=0.5)
    with pytest.raises(InvalidRequestError, match="accent"):
        client.generate("x", provider="click", duration=1, extra={"accent": 3})
    token = CancelToken()
    token.cancel()
    with pytest.raises(GenerationCancelledError):
        client.generate("x", provider="click", duration=1, cancel=token)


def test_the_quickstart_and_the_provider_swap_examples_run(tmp_path) -> None:
    for name, expected in (("quickstart.py", "licence: CC0-1.0"), ("swap_providers.py", "made by synth")):
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, cwd=tmp_path, timeout=300
        )
        assert out.returncode == 0, (name, out.stderr)
        assert expected in out.stdout, (name, out.stdout)


def test_the_adapters_example_shows_a_commercial_policy_at_work(tmp_path) -> None:
    import pytest

    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "adapters.py")], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "with an MIT adapter: MIT (commercial use: allowed)"
    assert sum(line.startswith("refused before loading") for line in lines) == 2
    assert "NonCommercial" in out.stdout and "unknown" in out.stdout
    assert lines[-1] == "declared MIT, scale 0.6: MIT (commercial use: allowed)"
