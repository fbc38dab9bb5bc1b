"""Tiny and full-size random Stable Audio Open pipelines built from configs (diffusers), for tests and benchmarks.

The tiny one follows diffusers' own pipeline tests (`get_dummy_components`), with a T5 encoder and a
tokenizer built locally instead of downloaded, a VAE at 800 Hz and a 1024-latent window (2.56 s).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .musicgen import build_tokenizer


def build_stable_audio(path: str | os.PathLike[str], *, full_size: bool = False, seed: int = 0) -> Path:
    """Write a random-weight StableAudioPipeline (save_pretrained layout) to `path`."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
    )
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    target = Path(path)
    torch.manual_seed(seed)
    scheduler = CosineDPMSolverMultistepScheduler(
        solver_order=2, prediction_type="v_prediction", sigma_data=1.0, sigma_schedule="exponential"
    )
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer: Any = build_tokenizer(scratch)
    tokenizer.model_max_length = 128 if full_size else 25
    if full_size:  # Stable Audio Open 1.0 shapes: the component defaults, T5-base
        transformer = StableAudioDiTModel()
        vae = AutoencoderOobleck()
        text_encoder = T5EncoderModel(
            T5Config(
                vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, feed_forward_proj="relu"
            )
        )
        projection = StableAudioProjectionModel(text_encoder_dim=768, conditioning_dim=768, min_value=0, max_value=512)
    else:
        transformer = StableAudioDiTModel(
            sample_size=1024,
            in_channels=3,
            num_layers=2,
            attention_head_dim=4,
            num_attention_heads=4,
            num_key_value_attention_heads=2,
            out_channels=3,
            cross_attention_dim=4,
            time_proj_dim=8,
            global_states_input_dim=8,
            cross_attention_input_dim=4,
        )
        vae = AutoencoderOobleck(
            encoder_hidden_size=6,
            downsampling_ratios=[1, 2],
            decoder_channels=3,
            decoder_input_channels=3,
            audio_channels=2,
            channel_multiples=[2, 4],
            sampling_rate=800,
        )
        text_encoder = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer),
                d_model=32,
                d_kv=8,
                d_ff=37,
                num_layers=2,
                num_heads=4,
                feed_forward_proj="relu",
            )
        )
        projection = StableAudioProjectionModel(text_encoder_dim=32, conditioning_dim=4, min_value=0, max_value=32)
    pipeline = StableAudioPipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        projection_model=projection,
    )
    pipeline.save_pretrained(target)
    return target


def stable_audio_tools_config(*, sample_rate: int = 8000, sample_size: int = 8192) -> dict[str, Any]:
    """A tiny `diffusion_cond` model config shaped like Stable Audio Open 1.0's `model_config.json`.

    Oobleck VAE (8 channels, 4x downsampling, 8 latent channels), T5 (`t5-base`) prompt conditioning plus
    `seconds_start` / `seconds_total` timing conditioning, and a 2-layer DiT of width 64 (heads of 32: the rotary
    embedding needs at least 32).
    """
    return {
        "model_type": "diffusion_cond",
        "sample_size": sample_size,
        "sample_rate": sample_rate,
        "audio_channels": 2,
        "model": {
            "pretransform": {
                "type": "autoencoder",
                "iterate_batch": True,
                "config": {
                    "encoder": {
                        "type": "oobleck",
                        "requires_grad": False,
                        "config": {
                            "in_channels": 2,
                            "channels": 8,
                            "c_mults": [1, 2],
                            "strides": [2, 2],
                            "latent_dim": 16,
                        },
                    },
                    "decoder": {
                        "type": "oobleck",
                        "config": {
                            "out_channels": 2,
                            "channels": 8,
                            "c_mults": [1, 2],
                            "strides": [2, 2],
                            "latent_dim": 8,
                            "final_tanh": False,
                        },
                    },
                    "bottleneck": {"type": "vae"},
                    "latent_dim": 8,
                    "downsampling_ratio": 4,
                    "io_channels": 2,
                },
            },
            "conditioning": {
                "configs": [
                    {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 32}},
                    {"id": "seconds_start", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                    {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                ],
                "cond_dim": 32,
            },
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_start", "seconds_total"],
                "global_cond_ids": ["seconds_start", "seconds_total"],
                "type": "dit",
                "config": {
                    "io_channels": 8,
                    "embed_dim": 64,
                    "depth": 2,
                    "num_heads": 2,
                    "cond_token_dim": 32,
                    "global_cond_dim": 64,
                    "project_cond_tokens": False,
                    "transformer_type": "continuous_transformer",
                },
            },
            "io_channels": 8,
        },
    }


def build_stable_audio_tools(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random Stable Audio model for stable-audio-tools: `model_config.json` + `model.safetensors`.

    Loading it needs `t5-base` in the Hugging Face cache (the T5 encoder is not part of the checkpoint, as in the
    released models) and stable-audio-tools installed (docs/providers/stable-audio.md).
    """
    import json

    import torch
    from safetensors.torch import save_file
    from stable_audio_tools.models.factory import create_model_from_config

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = stable_audio_tools_config()
    torch.manual_seed(seed)
    model = create_model_from_config(config)
    (folder / "model_config.json").write_text(json.dumps(config, indent=1), "utf-8")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder
