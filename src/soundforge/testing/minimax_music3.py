"""Tiny random MiniMax Music 3 modular pipelines built from configs (diffusers' `MiniMaxMusic3Blocks`), for tests
and benchmarks.

Every component is made here, none downloaded: a Qwen3 causal language model whose vocabulary reaches the
checkpoint's audio-code range (the pipeline's token ids are fixed: semantic codes start at 151675, the end-of-audio
token is 151670), the RVQ depth decoder, the condition encoder, the flow-matching transformer, the DAC-style
vocoder, the flow-matching scheduler and a byte-level `Qwen2Tokenizer` that knows the checkpoint's special tokens
(`<|caption_start|>`, `<|lyrics_start|>`, `<|audio_start|>`, ...). The tiny vocoder runs at 800 Hz with a hop of 8
samples, so one second of audio is 25 language-model frames and 100 latent frames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The special tokens the pipeline's prompt template writes (diffusers' minimax_music3/encoders.py), and the padding.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|caption_start|>",
    "<|caption_end|>",
    "<|lyrics_start|>",
    "<|lyrics_end|>",
    "<|audio_start|>",
)
#: The language model's vocabulary must hold the semantic codes: offset 151675 plus 16384 codes.
VOCAB_SIZE = 151675 + 16384
#: The tiny vocoder's rate and hop (latent frames of 8 samples).
SAMPLE_RATE = 800
HOP = 8


def build_tokenizer(path: str | os.PathLike[str] | None = None) -> Any:
    """A byte-level `Qwen2Tokenizer` without merges (256 byte tokens and the special ones)."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {token: i for i, token in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    if path is not None:
        tokenizer.save_pretrained(path)
    return tokenizer


def build_pipeline(*, seed: int = 0, codebooks: int = 4) -> Any:
    """A random-weight `MiniMaxMusic3ModularPipeline` in memory, tiny (`codebooks` RVQ levels; the release has 8)."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        MiniMaxMusic3ConditionEncoder,
        MiniMaxMusic3RVQDepthDecoder,
        MiniMaxMusic3Transformer1DModel,
        MiniMaxMusic3Vocoder,
    )
    from diffusers.modular_pipelines import MiniMaxMusic3Blocks
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    hidden, latent = 16, 8
    language_model = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=VOCAB_SIZE,
            hidden_size=hidden,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            tie_word_embeddings=True,
        )
    )
    depth = MiniMaxMusic3RVQDepthDecoder(
        hidden_size=hidden,
        num_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        audio_vocab_size=64,
        num_codebooks=codebooks,
        max_position_embeddings=codebooks + 1,
    )
    condition = MiniMaxMusic3ConditionEncoder(
        condition_hidden_dim=hidden,
        num_condition_layers=codebooks,
        out_dim=24,
        output_sampling_rate=SAMPLE_RATE,
        output_hop_length=HOP,
    )
    transformer = MiniMaxMusic3Transformer1DModel(
        in_channels=latent,
        condition_dim=24,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=8,
        ff_inner_dim=32,
        rotary_dim=4,
        fourier_embedding_dim=16,
    )
    vocoder = MiniMaxMusic3Vocoder(
        latent_channels=latent,
        decoder_input_dim=16,
        decoder_hidden_dim=16,
        upsampling_ratios=(2, 4),
        sampling_rate=SAMPLE_RATE,
    )
    with torch.no_grad():  # fresh layer weights are all equal: give the condition layers different weights
        condition.layer_weight_logits.normal_()
    pipeline = MiniMaxMusic3Blocks().init_pipeline()
    pipeline.update_components(
        tokenizer=build_tokenizer(),
        language_model=language_model.eval(),  # type: ignore[no-untyped-call]
        rvq_depth_decoder=depth.eval(),
        condition_encoder=condition.eval(),
        transformer=transformer.eval(),
        # The scheduler the release ships (diffusers PR #14456: "reproduces the reference Euler loop exactly").
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0, invert_sigmas=True),
        vocoder=vocoder.eval(),
    )
    return pipeline


def build_minimax_music3(path: str | os.PathLike[str], *, seed: int = 0, codebooks: int = 4) -> Path:
    """Write a tiny random MiniMax Music 3 modular pipeline (save_pretrained layout, `modular_model_index.json`)."""
    target = Path(path)
    build_pipeline(seed=seed, codebooks=codebooks).save_pretrained(str(target), overwrite_modular_index=True)
    return target
