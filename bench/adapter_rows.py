"""Style adapters (#41) on real-size architectures (random weights), on this machine:

    python bench/adapter_rows.py            # ACE-Step 1.5 (turbo shapes) and MusicGen-small
    python bench/adapter_rows.py --musicgen # MusicGen-small only (a few minutes less)

For each engine: the time to load one rank-16 LoRA on the attention projections and unload it again (what every
request with an adapter pays, as soundforge loads adapters per call so the shared model stays the base model), the
median of 5 with its spread; then the SDK's call with the adapter against the same call without, alternated with
the order swapped each round (the ratio of medians and its per-round spread). The pipeline or model is built in
memory and put in the engine's model cache, so both sides run the same object.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def _alternated(plain: Callable[[], Any], styled: Callable[[], Any], rounds: int) -> tuple[list[float], list[float]]:
    times: dict[str, list[float]] = {"plain": [], "styled": []}
    for round_ in range(rounds):
        for side in ("plain", "styled") if round_ % 2 == 0 else ("styled", "plain"):
            start = time.perf_counter()
            (plain if side == "plain" else styled)()
            times[side].append(time.perf_counter() - start)
    return times["plain"], times["styled"]


def _ratio_rows(label: str, plain: list[float], styled: list[float]) -> list[tuple[str, str, str]]:
    per_round = [s / p for p, s in zip(plain, styled, strict=True)]
    return [
        (label, "plain call", _spread(plain)),
        (label, "with one adapter", _spread(styled)),
        (
            label,
            "with / without (ratio of medians)",
            f"{statistics.median(styled) / statistics.median(plain):.3f} "
            f"(per round {min(per_round):.3f}-{max(per_round):.3f})",
        ),
    ]


def _load_times(adapters: Callable[[], Any], rounds: int = 5) -> list[float]:
    """Seconds to load the adapters and unload them again (entering and leaving the loader's block), on the engine's
    compute thread, `rounds` times."""

    def load_and_unload() -> None:
        with adapters():
            pass

    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        _on_engine_thread(load_and_unload)
        times.append(time.perf_counter() - start)
    return times


def _on_engine_thread(fn: Callable[[], Any]) -> Any:
    from soundforge.backends.runtime import run_on_device_thread

    return run_on_device_thread("cpu", fn)


def ace_step_rows(seconds: float = 10.0, steps: int = 2, rounds: int = 4) -> list[tuple[str, str, str]]:
    """ACE-Step 1.5's turbo shapes (about 3B parameters with the text encoder): a diffusers LoRA of rank 16 on
    the DiT's q/k/v projections."""
    import numpy as np

    from soundforge.backends.ace_step import LoadedAceStep
    from soundforge.backends.adapters import adapter_files
    from soundforge.backends.diffusion import lora_adapters
    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.request import Adapter
    from soundforge.testing.ace_step import build_pipeline
    from soundforge.testing.adapters import build_pipeline_lora

    pipe = _on_engine_thread(lambda: build_pipeline(full_size=True, turbo=True))
    lora = build_pipeline_lora(pipe, Path(tempfile.mkdtemp(prefix="sf-bench-lora-")) / "ace", rank=16)
    size = sum(p.stat().st_size for p in lora.glob("*.safetensors"))
    found = adapter_files(Adapter(source=str(lora)), {}, allow_fetch=False, provider="ace-step")
    model = "bench/ace-step-1.5-turbo-random"
    client = Client(Config.load(user_file=False, providers={"ace-step": {"device": "cpu", "batching": False}}))
    engine = client.backend("ace-step").strategy()
    loaded = LoadedAceStep(pipe, int(pipe.sample_rate), True, "cpu", None, threading.Lock())
    engine.cache.get(model, lambda: loaded, device="cpu", estimate=lambda: 0)

    loads = _load_times(lambda: lora_adapters(pipe, (found,), provider="ace-step"))

    def call(adapters: list[str] | None) -> np.ndarray:
        extra = {"adapters": adapters} if adapters else {}
        return client.generate(
            "bright indie pop", provider=f"ace-step:{model}", duration=seconds, steps=steps, seed=5, **extra
        ).audio

    plain, styled = _alternated(lambda: call(None), lambda: call([str(lora)]), rounds)
    label = f"ACE-Step 1.5 turbo shapes, {seconds:g} s, {steps} steps"
    return [
        (label, f"LoRA rank 16 ({size / 2**20:.1f} MiB): load + unload", _spread(loads)),
        *_ratio_rows(label, plain, styled),
    ]


def musicgen_rows(seconds: float = 1.0, rounds: int = 4) -> list[tuple[str, str, str]]:
    """MusicGen-small's shapes (300M decoder, T5-base, EnCodec 32 kHz): a PEFT LoRA of rank 16 on the decoder's
    q/k/v/out projections."""
    from transformers import MusicgenForConditionalGeneration

    from soundforge.backends.adapters import adapter_files, peft_adapters
    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.request import Adapter
    from soundforge.testing.adapters import build_peft_lora
    from soundforge.testing.musicgen import build_musicgen

    root = Path(tempfile.mkdtemp(prefix="sf-bench-mg-"))
    folder = _on_engine_thread(lambda: build_musicgen(root / "small", full_size=True))
    lora = build_peft_lora(MusicgenForConditionalGeneration.from_pretrained(folder), root / "lora", rank=16)
    size = sum(p.stat().st_size for p in lora.glob("*.safetensors"))
    client = Client(Config.load(user_file=False, providers={"musicgen": {"device": "cpu", "batching": False}}))
    spec = f"musicgen:{folder}"
    client.generate("warm up", provider=spec, duration=0.2, seed=1)  # the load, outside the timing
    found = adapter_files(Adapter(source=str(lora)), {}, allow_fetch=False, provider="musicgen")
    model = client.backend("musicgen").strategy().load(str(folder)).model

    loads = _load_times(lambda: peft_adapters(model, (found,), provider="musicgen"))

    def call(adapters: list[str] | None) -> Any:
        extra = {"adapters": adapters} if adapters else {}
        return client.generate("calm piano", provider=spec, duration=seconds, seed=5, **extra)

    plain, styled = _alternated(lambda: call(None), lambda: call([str(lora)]), rounds)
    label = f"MusicGen-small shapes, {seconds:g} s"
    return [
        (label, f"LoRA rank 16 ({size / 2**20:.1f} MiB): load + unload", _spread(loads)),
        *_ratio_rows(label, plain, styled),
    ]


def main() -> None:
    rows = musicgen_rows()
    if "--musicgen" not in sys.argv:
        rows += ace_step_rows()
    for row in rows:
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main()
