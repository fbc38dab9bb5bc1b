"""Tiny and full-size random ACE-Step 1.5 pipelines built from configs (diffusers' `AceStepPipeline`), for tests
and benchmarks.

Every component is made here, none downloaded: the DiT, the condition encoder (lyric and timbre encoders), the
audio tokenizer and detokenizer (cover needs them), an Oobleck VAE, a Qwen3 text encoder and a byte-level BPE
tokenizer of the kind Qwen's is (256 byte tokens plus the special ones; no merges). The tiny VAE runs at a low
sample rate so that a second of audio is a handful of latent frames; its encoder and decoder agree on the latent
size (repaint and cover VAE-encode their input), which diffusers' own dummy components do not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Special tokens the ACE-Step prompt template writes ("<|endoftext|>") and the padding the tokenizer needs.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def build_tokenizer(path: str | os.PathLike[str] | None = None) -> Any:
    """A byte-level BPE tokenizer without merges (Qwen's kind, 259 tokens), saved to `path` when given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(sorted(alphabet))}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    fast: Any = PreTrainedTokenizerFast
    tokenizer = fast(
        tokenizer_object=core,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_input_names=["input_ids", "attention_mask"],
    )
    if path is not None:
        tokenizer.save_pretrained(path)
    return tokenizer


def build_pipeline(*, full_size: bool = False, seed: int = 0, turbo: bool = False) -> Any:
    """A random-weight `AceStepPipeline` in memory: the ACE-Step 1.5 (2B) shapes with `full_size`, else tiny."""
    import torch
    from diffusers import AceStepPipeline, AceStepTransformer1DModel, AutoencoderOobleck
    from diffusers.pipelines.ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )
    from diffusers.schedulers import FlowMatchEulerDiscreteScheduler
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    if full_size:  # acestep-v15 turbo/base shapes: 2048-wide DiT of 24 layers, Qwen3-Embedding-0.6B, 48 kHz VAE
        acoustic, width, heads = 64, 2048, dict(num_attention_heads=16, num_key_value_heads=8, head_dim=128)
        transformer = AceStepTransformer1DModel(is_turbo=turbo)
        condition = AceStepConditionEncoder()
        audio_tokenizer = AceStepAudioTokenizer()
        detokenizer = AceStepAudioTokenDetokenizer()
        vae = AutoencoderOobleck(
            encoder_hidden_size=128,
            downsampling_ratios=[2, 4, 4, 6, 10],
            channel_multiples=[1, 2, 4, 8, 16],
            decoder_channels=128,
            decoder_input_channels=acoustic,
            audio_channels=2,
            sampling_rate=48000,
        )
        text = Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=1024,
            intermediate_size=3072,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
        )
    else:
        acoustic, width = 8, 32
        heads = dict(num_attention_heads=2, num_key_value_heads=1, head_dim=16)
        small = dict(hidden_size=width, intermediate_size=48, sliding_window=16, **heads)
        transformer = AceStepTransformer1DModel(
            num_hidden_layers=2,
            in_channels=3 * acoustic,
            audio_acoustic_hidden_dim=acoustic,
            is_turbo=turbo,
            **small,
        )
        condition = AceStepConditionEncoder(
            text_hidden_dim=24,
            timbre_hidden_dim=acoustic,
            num_lyric_encoder_hidden_layers=1,
            num_timbre_encoder_hidden_layers=1,
            **small,
        )
        tokenizer_args = dict(
            audio_acoustic_hidden_dim=acoustic, pool_window_size=5, num_attention_pooler_hidden_layers=1, **small
        )
        audio_tokenizer = AceStepAudioTokenizer(fsq_dim=width, fsq_input_levels=[4, 4, 4], **tokenizer_args)
        detokenizer = AceStepAudioTokenDetokenizer(**tokenizer_args)
        vae = AutoencoderOobleck(
            encoder_hidden_size=2 * acoustic,  # the encoder's output is the posterior's mean and scale
            downsampling_ratios=[2, 4],
            channel_multiples=[2, 4],
            decoder_channels=6,
            decoder_input_channels=acoustic,
            audio_channels=2,
            sampling_rate=800,
        )
        text = Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=12,
        )
    # A freshly made condition encoder holds zeros for the encoded silence; give it random values, as a real
    # converter fills it with the VAE's encoding of silence, so the timbre path carries something.
    with torch.no_grad():
        condition.silence_latent.normal_()
    pipeline = AceStepPipeline(
        vae=vae.eval(),
        text_encoder=Qwen3Model(text).eval(),  # type: ignore[no-untyped-call]
        tokenizer=tokenizer,
        transformer=transformer.eval(),
        condition_encoder=condition.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
        audio_tokenizer=audio_tokenizer.eval(),
        audio_token_detokenizer=detokenizer.eval(),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def build_ace_step(
    path: str | os.PathLike[str], *, full_size: bool = False, seed: int = 0, turbo: bool = False
) -> Path:
    """Write a random-weight `AceStepPipeline` (save_pretrained layout) to `path`."""
    target = Path(path)
    build_pipeline(full_size=full_size, seed=seed, turbo=turbo).save_pretrained(target)
    return target
