"""Tiny and full-size random Stable Audio 3 pipelines built from configs (diffusers' `StableAudio3Pipeline`; the
audio-to-audio and inpaint pipelines share its components), for tests and benchmarks.

Every component is made here: the DiT, the SAME autoencoder, the duration embedder, a T5Gemma encoder and a
byte-level tokenizer. Freshly made SA3 modules zero some output layers (the DiT's local-conditioning and
post-processing projections, the autoencoder's feed-forward outputs), which would make a random model ignore the
very inputs a test changes; the builder gives those layers small random weights, and sizes the DiT's inpaint
input for the autoencoder's latent (mask plus latent), which diffusers' dummy components do not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .ace_step import build_tokenizer

#: The spread given to the output layers a fresh SA3 module zeroes (large enough that every input shows).
ZERO_LAYER_STD = 0.5


def build_pipeline(*, full_size: bool = False, seed: int = 0, distilled: bool = True) -> Any:
    """A random-weight `StableAudio3Pipeline` in memory: Stable Audio 3 Small's shapes with `full_size` (a 433M
    DiT of width 1024, SAME-Small, T5Gemma-b), else tiny. `distilled` picks the ping-pong sampler (8 steps, the
    released models) over the base models' deterministic Euler steps."""
    import torch
    from diffusers import AutoencoderSAME, StableAudio3DiTModel, StableAudio3Pipeline
    from diffusers.pipelines.stable_audio_3 import StableAudio3DurationEmbedder
    from diffusers.schedulers import FlowMatchEulerDiscreteScheduler
    from transformers import T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaConfig, T5GemmaModuleConfig

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    if full_size:  # Stable Audio 3 Small: DiT 1024 x 16 layers (~433M), SAME-Small (256-d latent), T5Gemma-b (768)
        latent, text_dim = 256, 768
        vae = AutoencoderSAME(latent_dim=latent, sampling_rate=44100)
        transformer = StableAudio3DiTModel(
            io_channels=latent,
            embed_dim=1024,
            depth=16,
            num_heads=16,
            cond_token_dim=text_dim,
            global_cond_dim=text_dim,
            local_add_cond_dim=latent + 1,
        )
        module: dict[str, Any] = dict(
            hidden_size=text_dim,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=12,
            num_key_value_heads=12,
            head_dim=64,
        )
    else:
        latent, text_dim = 8, 16
        vae = AutoencoderSAME(
            patch_size=4,
            encoder_channels=8,
            encoder_c_mults=[2],
            encoder_strides=[2],
            encoder_transformer_depths=[1],
            latent_dim=latent,
            dim_heads=8,
            ff_mult=2,
            sampling_rate=800,
        )
        transformer = StableAudio3DiTModel(
            io_channels=latent,
            embed_dim=32,
            depth=2,
            num_heads=2,
            cond_token_dim=text_dim,
            global_cond_dim=text_dim,
            local_add_cond_dim=latent + 1,
            timestep_features_dim=16,
            ff_mult=2.0,
            num_memory_tokens=2,
        )
        module = dict(
            hidden_size=text_dim,
            intermediate_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
        )
    text = T5GemmaConfig(
        encoder=T5GemmaModuleConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **module),
        decoder=T5GemmaModuleConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **module),
        vocab_size=len(tokenizer),
        is_encoder_decoder=False,  # the encoder alone, as Stable Audio 3 uses it
    )
    text_encoder = T5GemmaEncoderModel(text)
    duration = StableAudio3DurationEmbedder(output_dim=text_dim, fourier_dim=16 if not full_size else 256)
    with torch.no_grad():
        for model in (vae, transformer):
            for parameter in model.parameters():
                if parameter.ndim and not parameter.any():  # a zero-initialised output layer
                    parameter.normal_(std=ZERO_LAYER_STD)
    tokenizer.model_max_length = 256 if full_size else 24
    pipeline = StableAudio3Pipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),  # type: ignore[no-untyped-call]
        tokenizer=tokenizer,
        duration_embedder=duration.eval(),
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(stochastic_sampling=distilled),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def build_stable_audio_3(
    path: str | os.PathLike[str], *, full_size: bool = False, seed: int = 0, distilled: bool = True
) -> Path:
    """Write a random-weight Stable Audio 3 pipeline (save_pretrained layout) to `path`."""
    target = Path(path)
    build_pipeline(full_size=full_size, seed=seed, distilled=distilled).save_pretrained(target)
    return target
