"""MiniMax Music 3 on this CPU (`python bench/run.py --only-minimax-music-3`).

1. SDK / direct on a tiny random pipeline: `generate()` against the direct `ModularPipeline` call, alternated for
   `rounds` rounds (the order swapped each round), median and spread of the per-round ratios, identical audio.
2. The release's flow-matching transformer and vocoder at their real sizes (random weights from diffusers' default
   configs: a 2.43B DiT of 36 layers, 2048 wide; the DAC-style vocoder), bf16 on this CPU: one guided step on one
   200-frame window (689 latent frames, both guidance passes), the vocoder on that window, and what a 30 s song's
   denoising would take at 30 steps. The 8.58B language model is not run: in bf16 its weights alone are 17.2 GB of
   this machine's 24 GiB, which leaves no room for the rest; its cost is the GPU's (docs/performance.md).
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from alternated import alternate, sdk_direct_row  # bench/ is on sys.path when this file runs as a script

LYRICS = "[verse]\nwalking home in the rain\n[chorus]\nsing it again"


def _tiny_rows(rounds: int) -> list[tuple[str, str, str]]:
    import numpy as np
    import torch
    from diffusers import ModularPipeline

    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.minimax_music3 import build_minimax_music3

    folder = build_minimax_music3(Path(tempfile.mkdtemp(prefix="soundforge-bench-")) / "mm3-tiny")
    client = Client(Config.load(user_file=False, providers={"minimax-music-3": {"device": "cpu"}}))
    pipe = ModularPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.load_components(local_files_only=True)

    def direct() -> Any:
        with torch.inference_mode():
            return pipe(
                prompt="warm folk",
                lyrics=LYRICS,
                audio_duration=4.0,
                num_inference_steps=8,
                generator=torch.Generator().manual_seed(3),
                output="audios",
            )

    def sdk() -> Any:
        return client.generate(
            "warm folk", provider=f"minimax-music-3:{folder}", duration=4.0, seed=3, steps=8, lyrics=LYRICS
        )

    direct(), sdk()  # warm-up: imports, the load, first-call allocations
    times, results = alternate(direct, sdk, rounds)
    identical = bool(np.array_equal(results["sdk"].audio, results["direct"][0]))
    client.close()
    return [
        sdk_direct_row(
            "minimax-music-3 tiny pipeline, 4 s, 8 steps, SDK / direct ModularPipeline (target <= 1.02)",
            times,
            f"identical audio: {identical}",
        )
    ]


def _real_size_rows() -> list[tuple[str, str, str]]:
    """One of the release DiT's 36 blocks at its real width (2048, 32 heads, feed-forward 8192) on one window's tokens,
    fp32 and bf16, and the real vocoder on one window: the whole step is 36 blocks (the projections around them are
    small), so a block's time x 36 is the step's, measured in minutes rather than hours on this CPU."""
    import torch
    from diffusers import MiniMaxMusic3Transformer1DModel, MiniMaxMusic3Vocoder

    torch.manual_seed(0)
    one_block = MiniMaxMusic3Transformer1DModel(num_layers=1).eval()  # real width, real condition size, one block
    per_block = sum(p.numel() for p in one_block.transformer_blocks[0].parameters())
    parameters = sum(p.numel() for p in one_block.parameters()) + 35 * per_block  # the release's 36 blocks
    latents = 689  # one 200-frame window: 200 frames x 44100 / 24000 x 960 / 512
    times: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        block = one_block.to(dtype)
        x = torch.randn(1, block.config.in_channels, latents, dtype=dtype)
        condition = torch.randn(1, latents, block.config.condition_dim, dtype=dtype)
        t = torch.tensor([0.5], dtype=dtype)

        def guided(block: Any = block, x: Any = x, condition: Any = condition, t: Any = t) -> None:
            with torch.inference_mode():  # the guider's two passes: conditioned, and on zeros
                block(hidden_states=x, timestep=t, encoder_hidden_states=condition, return_dict=False)
                block(hidden_states=x, timestep=t, encoder_hidden_states=torch.zeros_like(condition), return_dict=False)

        guided()  # warm-up
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            guided()
            runs.append(time.perf_counter() - start)
        times[name] = statistics.median(runs)
    vocoder = MiniMaxMusic3Vocoder().eval()
    with torch.inference_mode():
        window = torch.randn(1, vocoder.config.latent_channels, latents)
        vocoder(window[:, :, :16])  # warm-up
        start = time.perf_counter()
        vocoder(window)
        t_vocoder = time.perf_counter() - start
    best = min(times.values())
    per_step = best * 36
    flops = 2 * 2 * parameters * (latents + 1)  # two passes, 2 FLOPs per weight per token
    windows = len(range(0, 750 - 100, 100))  # a 30 s song: 750 frames, a window every 100 (before_denoise.py)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    return [
        (
            "minimax-music-3 real-size DiT (CPU), one guided step on a 200-frame window, from one block x 36",
            f"{per_step:.0f} s",
            f"a block: {times['fp32']:.2f} s fp32, {times['bf16']:.2f} s bf16 (medians of 3); {parameters / 1e9:.2f}B "
            f"parameters, {flops / per_step / 1e12:.2f} TFLOP/s effective; a 30 s song's {windows} windows x 30 steps "
            f"would take {windows * 30 * per_step / 3600:.1f} h here; peak RSS {peak_gb:.1f} GiB",
        ),
        (
            "minimax-music-3 real-size vocoder (fp32, CPU), one window (8.0 s of audio)",
            f"{t_vocoder:.1f} s",
            "the 8.58B language model is not run here: 17.2 GB of bf16 weights in 24 GiB leave no room for the rest",
        ),
    ]


def minimax_music3_rows(rounds: int = 5) -> list[tuple[str, str, str]]:
    """The rows above, the tiny pipeline first."""
    return [*_tiny_rows(rounds), *_real_size_rows()]
