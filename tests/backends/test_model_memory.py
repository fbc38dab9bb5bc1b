"""The client's model memory budget: shared by every local backend, least recently used evicted, never reloaded."""

from __future__ import annotations

import pytest

from soundforge import ConfigurationError
from soundforge.backends._memory import GIB, ModelMemory, weights_on_disk
from soundforge.client import Client
from soundforge.config import Config
from soundforge.testing.musicgen import build_musicgen
from soundforge.testing.stable_audio import build_stable_audio


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {
        "mono": str(build_musicgen(root / "mono")),
        "stereo": str(build_musicgen(root / "stereo", stereo=True)),
        "sao": str(build_stable_audio(root / "sao")),
    }


def client(budget: float | str) -> Client:
    many = {"max_loaded_models": 8}  # the count limit out of the way: only the byte budget evicts
    return Client(
        Config.load(user_file=False, model_memory_gb=budget, providers={"musicgen": many, "stable-audio": many})
    )


def generate(c: Client, spec: str) -> None:
    if spec.startswith("stable-audio"):
        c.generate("rain", provider=spec, duration=0.5, seed=1, steps=2)
    else:
        c.generate("piano", provider=spec, duration=0.02, seed=1)


def test_budget_evicts_least_recently_used_across_backends(tiny) -> None:
    # Measure each model alone first: the ledger records parameters and buffers, not a guess.
    sizes = {}
    for kind, spec in (
        ("mono", f"musicgen:{tiny['mono']}"),
        ("stereo", f"musicgen:{tiny['stereo']}"),
        ("sao", f"stable-audio:{tiny['sao']}"),
    ):
        c = client("off")
        generate(c, spec)
        [entry] = c.loaded_models()
        assert entry.device == "cpu" and entry.nbytes > 0
        sizes[kind] = entry.nbytes
        c.close()
    # A budget that holds the two MusicGen models, or one of them with Stable Audio, but not all three.
    budget = max(sizes["mono"] + sizes["stereo"], max(sizes["mono"], sizes["stereo"]) + sizes["sao"]) + 1024
    assert budget < sum(sizes.values())
    c = client(budget / GIB)
    generate(c, f"musicgen:{tiny['mono']}")
    generate(c, f"musicgen:{tiny['stereo']}")
    assert [m.model for m in c.loaded_models()] == [tiny["mono"], tiny["stereo"]]
    generate(c, f"musicgen:{tiny['mono']}")  # now the stereo one is least recently used
    generate(c, f"stable-audio:{tiny['sao']}")  # another backend: the LRU model of any backend makes room
    assert [(m.provider, m.model) for m in c.loaded_models()] == [
        ("musicgen", tiny["mono"]),
        ("stable-audio", tiny["sao"]),
    ]
    assert c.memory.used("cpu") <= budget
    backend = c.backend("musicgen")
    assert tiny["stereo"] not in backend.strategy().cache and tiny["mono"] in backend.strategy().cache
    # A second request for a loaded model never reloads it (the same object serves it).
    before = backend.strategy().load(tiny["mono"])
    generate(c, f"musicgen:{tiny['mono']}")
    assert backend.strategy().load(tiny["mono"]) is before
    # Explicit unload: one model, then everything.
    c.unload("stable-audio")
    assert [m.provider for m in c.loaded_models()] == ["musicgen"]
    c.unload()
    assert c.loaded_models() == [] and c.memory.used("cpu") == 0
    c.close()


def test_model_larger_than_the_budget_is_refused_before_loading(tiny) -> None:
    c = client(weights_on_disk(tiny["mono"]) / 2 / GIB)
    with pytest.raises(ConfigurationError, match="model_memory_gb"):
        generate(c, f"musicgen:{tiny['mono']}")
    assert c.loaded_models() == []


def test_budget_setting_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="model_memory_gb"):
        Config.load(user_file=False, model_memory_gb=-1)
    assert Config.load(user_file=False, env={"SOUNDFORGE_MODEL_MEMORY_GB": "6"}).model_memory_gb == 6
    assert ModelMemory("auto").budget("cpu") > 0 and ModelMemory("off").budget("cpu") is None
