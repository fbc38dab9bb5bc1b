"""The real-size architectures on one GPU, random weights, nothing downloaded (`bench/gpu.sh` runs this).

    python bench/gpu_rows.py --device cuda --out gpu.md   # on a GPU: the table for docs/performance.md
    python bench/gpu_rows.py --device cpu --tiny          # anywhere: the tiny shapes, to check the script runs

Rows: MusicGen small / medium / large, 30 s (1503 decoder steps, classifier-free guidance, sampling), the engines'
eager `generate` in bfloat16; Stable Audio 3 Small and a Medium-sized DiT (diffusers' default StableAudio3DiTModel
config, 1536 x 24; the SAME-Small autoencoder and T5Gemma-b of the Small builder around it), 30 s at 8 steps; ACE-Step
1.5 turbo, 30 s at 8 steps. Each: seconds, the real-time factor, tokens or steps per second, and peak GPU memory.
MusicGen runs twice: the eager decoder, and `decode = "static"` (transformers' static KV cache, whose step
transformers compiles on CUDA by itself: torch.compile with CUDA graphs), with whether the audio is the same.

It imports the model builders of `soundforge.testing` as plain modules, not the `soundforge` package, so the GPU
machine needs only torch, transformers and diffusers (and tokenizers), not soundforge's own dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: MusicGen decoders by size (transformers' configs of facebook/musicgen-{small,medium,large}): layers, width, heads.
MUSICGEN_SIZES = {"small": (24, 1024, 16), "medium": (48, 1536, 24), "large": (48, 2048, 32)}


def builders(name: str) -> Any:
    """`soundforge.testing.<name>` loaded without running `soundforge/__init__.py` (and its dependencies)."""
    if "sf_testing" not in sys.modules:
        package = types.ModuleType("sf_testing")
        package.__path__ = [str(ROOT / "src" / "soundforge" / "testing")]
        sys.modules["sf_testing"] = package
    return importlib.import_module(f"sf_testing.{name}")


def musicgen_configs(size: str, tiny: bool = False) -> tuple[Any, Any, Any]:
    """transformers' text encoder, EnCodec and decoder configs of MusicGen-`size` (`MUSICGEN_SIZES`), or the tiny
    test shapes."""
    text, audio, decoder = builders("musicgen")._configs(full_size=not tiny, stereo=False)
    if not tiny:
        layers, width, heads = MUSICGEN_SIZES[size]
        decoder.num_hidden_layers, decoder.hidden_size, decoder.num_attention_heads = layers, width, heads
        decoder.ffn_dim = 4 * width
    return text, audio, decoder


class Clock:
    """Wall time of a GPU call: synchronised before and after; peak memory since the start."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.cuda = torch, device.startswith("cuda")

    def run(self, call: Callable[[], Any]) -> tuple[float, float]:
        """(seconds, peak GiB) of one call."""
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with self.torch.inference_mode():
            call()
        if self.cuda:
            self.torch.cuda.synchronize()
        peak = self.torch.cuda.max_memory_allocated() / 2**30 if self.cuda else float("nan")
        return time.perf_counter() - start, peak


def _row(label: str, took: float, seconds: float, speed: str, peak: float, detail: str = "") -> list[str]:
    """A table row: time, real-time factor, speed, peak GPU memory ("-" without a GPU), detail."""
    memory = "-" if peak != peak else f"{peak:.1f} GiB"  # NaN: no GPU to ask
    return [label, f"{took:.2f} s", f"{seconds / took:.2f}x", speed, memory, detail]


def musicgen_rows(device: str, dtype: Any, seconds: float, tiny: bool) -> list[list[str]]:
    import torch
    from transformers import MusicgenConfig, MusicgenForConditionalGeneration

    clock, rows = Clock(device), []
    for size in MUSICGEN_SIZES:
        text, audio, decoder = musicgen_configs(size, tiny=tiny)
        config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
        torch.manual_seed(0)
        with torch.device(device):
            model = MusicgenForConditionalGeneration(config).to(dtype).eval()
        steps = round(seconds * config.audio_encoder.frame_rate) + 3  # the delay pattern's extra steps
        ids = torch.randint(0, text.vocab_size, (1, 12), device=device)

        def generate(
            mode: str, new_tokens: int = steps, model: Any = model, ids: Any = ids, decoder: Any = decoder
        ) -> Any:
            torch.manual_seed(1)
            return model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                do_sample=True,
                guidance_scale=3.0,
                decoder_start_token_id=decoder.bos_token_id,
                pad_token_id=decoder.pad_token_id,
                **({"cache_implementation": "static"} if mode == "static" else {}),
            )

        parameters = sum(p.numel() for p in model.decoder.parameters()) / 1e6
        outputs = {}
        for mode in ("eager", "static"):
            # Warm-up: kernels, the allocator; for "static" on CUDA also transformers' torch.compile of the step
            # (its CUDA graphs are made for the cache's length, so the warm-up decodes the whole length).
            warm_length = steps if mode == "static" else 8
            warm, _ = clock.run(lambda mode=mode, length=warm_length: generate(mode, length))
            took, peak = clock.run(lambda mode=mode, kept=outputs: kept.__setitem__(mode, generate(mode)))
            same = (
                ""
                if mode == "eager"
                else f"; same audio as eager: {bool(torch.equal(outputs['eager'], outputs['static']))}"
            )
            rows.append(
                _row(
                    f"musicgen-{size} arch, {seconds:g} s, {mode}",
                    took,
                    seconds,
                    f"{steps / took:.1f} tok/s",
                    peak,
                    f"decoder {parameters:.0f}M; warm-up {warm:.1f} s{same}",
                )
            )
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def diffusion_rows(device: str, dtype: Any, seconds: float, tiny: bool) -> list[list[str]]:
    import torch

    clock, rows = Clock(device), []
    sa3 = builders("stable_audio_3")
    for label, medium in (("stable-audio-3 small arch", False), ("stable-audio-3 medium-sized DiT", True)):
        pipe = sa3.build_pipeline(full_size=not tiny)
        if medium and not tiny:
            from diffusers import StableAudio3DiTModel

            old = pipe.transformer.config
            pipe.transformer = StableAudio3DiTModel(  # diffusers' defaults: width 1536, 24 layers, 24 heads
                io_channels=old.io_channels,
                cond_token_dim=old.cond_token_dim,
                global_cond_dim=old.global_cond_dim,
                local_add_cond_dim=old.local_add_cond_dim,
            ).eval()
        pipe = pipe.to(device, dtype)

        def sa3_call(pipe: Any = pipe) -> None:
            pipe("warm lo-fi piano", duration=seconds, generator=torch.Generator(device).manual_seed(5))

        clock.run(sa3_call)  # warm-up
        took, peak = clock.run(sa3_call)
        parameters = sum(p.numel() for p in pipe.transformer.parameters()) / 1e6
        rows.append(
            _row(
                f"{label}, {seconds:g} s, 8 steps",
                took,
                seconds,
                f"{8 / took:.1f} steps/s",
                peak,
                f"DiT {parameters:.0f}M",
            )
        )
        del pipe
    ace = builders("ace_step").build_pipeline(full_size=not tiny, turbo=True).to(device, dtype)

    def ace_call() -> None:
        ace(
            "bright indie pop, female vocals",
            lyrics="[verse]\nwalking home in the rain",
            audio_duration=seconds,
            num_inference_steps=8,
            generator=torch.Generator(device).manual_seed(5),
        )

    clock.run(ace_call)
    took, peak = clock.run(ace_call)
    rows.append(
        _row(f"ace-step-1.5 turbo arch, {seconds:g} s, 8 steps", took, seconds, f"{8 / took:.1f} steps/s", peak)
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and 2 s: check the script, not the speed")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--only", choices=("musicgen", "diffusion"))
    args = parser.parse_args()
    import torch

    # bfloat16 on a GPU: random weights overflow float16 (T5 and guided logits), and bf16 runs as fast there.
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    seconds = 2.0 if args.tiny else 30.0
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    rows: list[list[str]] = []
    if args.only in (None, "musicgen"):
        rows += musicgen_rows(args.device, dtype, 0.2 if args.tiny else seconds, args.tiny)
    if args.only in (None, "diffusion"):
        try:
            rows += diffusion_rows(args.device, dtype, seconds, args.tiny)
        except ImportError as exc:  # diffusers is not on the GPU image: bench/gpu.sh carries its wheel
            rows.append(["stable-audio-3 / ace-step", "not run", "", "", "", f"needs diffusers 0.42 ({exc})"])
    header = (
        f"{name}, torch {torch.__version__}, {str(dtype).removeprefix('torch.')}, random weights"
        f"{' (tiny shapes: not a measurement)' if args.tiny else ''}"
    )
    table = [
        f"`bench/gpu.sh` — {header}",
        "",
        "| what | time | real-time factor | speed | peak GPU memory | detail |",
        "|---|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
    ]
    print("\n".join(table))
    if args.out:
        args.out.write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
