"""Tiny and full-size random MusicGen checkpoints built from configs (transformers), for tests and benchmarks.

The EnCodec codebooks of a freshly initialised transformers model are all zeros, so its audio would
not depend on the generated tokens; the builders randomise them so tests prove something.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

WORDS = (
    "<pad>",
    "</s>",
    "<unk>",
    "calm",
    "piano",
    "upbeat",
    "synthwave",
    "drums",
    "bass",
    "lofi",
    "jazz",
    "rock",
    "ambient",
    "melody",
    "guitar",
    "strings",
    "dark",
    "happy",
    "slow",
    "fast",
    "80s",
    "beat",
    "song",
    "with",
    "and",
    "a",
    "in",
    "of",
    "the",
    "music",
    "techno",
    "house",
)


def build_tokenizer(path: str | os.PathLike[str]) -> Any:
    """A small T5-style word-level tokenizer (pad 0, eos 1, unk 2, appends </s>), saved to `path`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast: Any = PreTrainedTokenizerFast
    tokenizer = fast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(path)
    return tokenizer


#: The tiny EnCodec's upsampling ratios by frame rate (16 kHz): hop 32 (500 frames a second, the default: a short
#: clip has enough frames to test with) or hop 320 (50 a second, the released model's rate: a second of audio in 50
#: steps, for tests that need seconds of it).
TINY_UPSAMPLING = {500: [4, 4, 2], 50: [8, 5, 4, 2]}


def _configs(*, full_size: bool, stereo: bool, causal: bool = True, frame_rate: int = 500) -> tuple[Any, Any, Any]:
    from transformers import EncodecConfig, MusicgenDecoderConfig, T5Config

    if full_size:  # the shapes of facebook/musicgen-small
        text = T5Config(
            vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, feed_forward_proj="relu"
        )
        audio = EncodecConfig(
            sampling_rate=32000,
            upsampling_ratios=[8, 5, 4, 4],
            num_filters=64,
            hidden_size=128,
            codebook_size=2048,
            target_bandwidths=[2.2],
            use_causal_conv=False,
            use_conv_shortcut=False,
            normalize=False,
            num_lstm_layers=2,
            audio_channels=1,
        )
        codebooks = 8 if stereo else 4
        decoder = MusicgenDecoderConfig(
            vocab_size=2048,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            ffn_dim=4096,
            num_codebooks=codebooks,
            audio_channels=2 if stereo else 1,
            pad_token_id=2048,
            bos_token_id=2048,
        )
        return text, audio, decoder
    text = T5Config(
        vocab_size=len(WORDS), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, feed_forward_proj="relu"
    )
    audio = EncodecConfig(
        sampling_rate=16000,
        upsampling_ratios=TINY_UPSAMPLING[frame_rate],
        num_filters=8,
        hidden_size=16,
        codebook_size=64,
        target_bandwidths=[12.0],
        num_lstm_layers=1,
        audio_channels=1,
        use_causal_conv=causal,
    )
    codebooks = 8 if stereo else 4
    decoder = MusicgenDecoderConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=64,
        num_codebooks=codebooks,
        audio_channels=2 if stereo else 1,
        pad_token_id=64,
        bos_token_id=64,
        max_position_embeddings=4096,
        initializer_factor=0.5,
    )  # larger than the default 0.02: conditioning shows
    return text, audio, decoder


def build_musicgen(
    path: str | os.PathLike[str],
    *,
    melody: bool = False,
    stereo: bool = False,
    full_size: bool = False,
    seed: int = 0,
    causal: bool = True,
    frame_rate: int = 500,
) -> Path:
    """Write a random-weight MusicGen (or MusicGen-Melody) checkpoint with its tokenizer to `path`.

    `causal=False` gives the tiny EnCodec the non-causal convolutions of MusicGen's released 32 kHz EnCodec (the
    full-size architecture always has them), whose decoder looks ahead: what streaming must wait for.
    `frame_rate` is the tiny EnCodec's frames (decoder steps) per second of audio: 500 or 50 (`TINY_UPSAMPLING`).
    """
    if frame_rate not in TINY_UPSAMPLING:
        raise ValueError(f"frame_rate {frame_rate}: the tiny EnCodec makes one of {sorted(TINY_UPSAMPLING)}")
    import torch
    from transformers import (
        MusicgenConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        MusicgenMelodyForConditionalGeneration,
    )

    torch.manual_seed(seed)
    text, audio, decoder = _configs(full_size=full_size, stereo=stereo, causal=causal, frame_rate=frame_rate)
    if melody:
        melody_decoder = MusicgenMelodyDecoderConfig(
            **{k: v for k, v in decoder.to_dict().items() if k in MusicgenMelodyDecoderConfig().to_dict()}
        )
        config: Any = MusicgenMelodyConfig(
            text_encoder=text.to_dict(),
            audio_encoder=audio.to_dict(),
            decoder=melody_decoder.to_dict(),
            num_chroma=12,
            chroma_length=235 if full_size else 64,
        )
        model: Any = MusicgenMelodyForConditionalGeneration(config)
    else:
        config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
        model = MusicgenForConditionalGeneration(config)
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.generation_config.decoder_start_token_id = decoder.bos_token_id
    model.generation_config.pad_token_id = decoder.pad_token_id
    model.generation_config.do_sample = True
    model.generation_config.guidance_scale = 3.0
    model.generation_config.max_length = 1500
    target = Path(path)
    model.save_pretrained(target)
    if not full_size:
        build_tokenizer(target)
    return target
