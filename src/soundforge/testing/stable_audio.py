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
    scheduler = CosineDPMSolverMultistepScheduler(solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
                                                  sigma_schedule="exponential")
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer: Any = build_tokenizer(scratch)
    tokenizer.model_max_length = 128 if full_size else 25
    if full_size:  # Stable Audio Open 1.0 shapes: the component defaults, T5-base
        transformer = StableAudioDiTModel()
        vae = AutoencoderOobleck()
        text_encoder = T5EncoderModel(T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12,
                                               num_heads=12, feed_forward_proj="relu"))
        projection = StableAudioProjectionModel(text_encoder_dim=768, conditioning_dim=768, min_value=0,
                                                max_value=512)
    else:
        transformer = StableAudioDiTModel(sample_size=1024, in_channels=3, num_layers=2, attention_head_dim=4,
                                          num_attention_heads=4, num_key_value_attention_heads=2, out_channels=3,
                                          cross_attention_dim=4, time_proj_dim=8, global_states_input_dim=8,
                                          cross_attention_input_dim=4)
        vae = AutoencoderOobleck(encoder_hidden_size=6, downsampling_ratios=[1, 2], decoder_channels=3,
                                 decoder_input_channels=3, audio_channels=2, channel_multiples=[2, 4],
                                 sampling_rate=800)
        text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                               num_heads=4, feed_forward_proj="relu"))
        projection = StableAudioProjectionModel(text_encoder_dim=32, conditioning_dim=4, min_value=0, max_value=32)
    pipeline = StableAudioPipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer, projection_model=projection)
    pipeline.save_pretrained(target)
    return target
