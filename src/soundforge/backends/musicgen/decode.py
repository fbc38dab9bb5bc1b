"""How MusicGen's decoder steps run (`[providers.musicgen] decode`): transformers' eager decoder, or its static KV
cache (which transformers compiles on CUDA), chosen per call by the transformers engine."""

from __future__ import annotations

from typing import Any

from ...errors import ConfigurationError

#: How the decoder steps run (`[providers.musicgen] decode`):
#: - "eager": transformers' default, a dynamic KV cache growing each step;
#: - "static": a KV cache allocated once for the whole call (`cache_implementation="static"`); on CUDA transformers
#:   then compiles the step (`torch.compile`, CUDA graphs) by itself; the same tokens as "eager" on a CPU;
#: - "compiled": "static" and the step compiled on any device (slow to start: minutes on a CPU);
#: - "fast": transformers' generation loop around our own decoder step (`step.DecoderStep`: the cache allocated
#:   once, the text's keys and values computed once); the same tokens as "eager" in float32; with
#:   `dtype = "bfloat16"` a 1 s musicgen-small request 3.0-3.2x eager float32 on a 2-core CPU, 1.16-1.21x eager
#:   bfloat16 (docs/performance.md); not for MusicGen-Melody (its decoder has no cross-attention);
#: - "auto": "eager" for now: "static" is the same tokens on a CPU but was not measured faster there, and on CUDA it
#:   has not been measured yet (bench/gpu.sh times both); "auto" will pick it where a measurement says it is faster.
DECODE_MODES = ("auto", "eager", "static", "compiled", "fast")


def decode_mode(settings: dict[str, Any], provider: str) -> str:
    """The decode mode a call runs with (`DECODE_MODES`), "auto" resolved (ConfigurationError for an unknown one)."""
    mode = str(settings.get("decode", "auto"))
    if mode not in DECODE_MODES:
        raise ConfigurationError(
            f"[providers.{provider}] decode = {mode!r} is not one of {', '.join(DECODE_MODES)}",
            hint='"eager" is transformers\' default decoder; "static" allocates the KV cache once (the same tokens); '
            '"fast" steps the decoder with our own code (the same tokens)',
        )
    return "eager" if mode == "auto" else mode


def decode_arguments(mode: str) -> dict[str, Any]:
    """The `generate()` arguments of a decode mode."""
    if mode in ("eager", "fast"):  # "fast" changes the decoder, not the arguments (transformers.py)
        return {}
    arguments: dict[str, Any] = {"cache_implementation": "static"}
    if mode == "compiled":
        from transformers import CompileConfig

        config = CompileConfig()
        config._compile_all_devices = True  # type: ignore[assignment]  # else transformers compiles on accelerators only
        arguments["compile_config"] = config
    return arguments
