"""The same tiny MusicGen weights in both engines: an audiocraft checkpoint, converted to transformers with the
official key mapping, decodes greedily to the same tokens in audiocraft and in transformers.

TEST-ONLY stand-in: `t5-base` (see t5_stand_in.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from soundforge.testing.audiocraft import build_audiocraft

from .t5_stand_in import fabricate_t5_base


def rename(key: str) -> str:
    """audiocraft LM parameter names -> transformers MusicGen decoder names (the official conversion's mapping)."""
    for old, new in (
        ("emb", "model.decoder.embed_tokens"),
        ("transformer", "model.decoder"),
        ("cross_attention", "encoder_attn"),
        ("linear1", "fc1"),
        ("linear2", "fc2"),
        ("norm1", "self_attn_layer_norm"),
        ("norm_cross", "encoder_attn_layer_norm"),
        ("norm2", "final_layer_norm"),
        ("out_norm", "model.decoder.layer_norm"),
        ("linears", "lm_heads"),
        ("condition_provider.conditioners.description.output_proj", "enc_to_dec_proj"),
    ):
        if old in key:
            key = key.replace(old, new)
    return key


def convert(lm, snapshot: Path) -> transformers.MusicgenForConditionalGeneration:
    dim, card = lm.dim, lm.card
    decoder_state, projection = {}, {}
    for key, value in lm.state_dict().items():
        key = rename(key)
        if "in_proj_weight" in key:  # fused q, k, v
            for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
                decoder_state[key.replace("in_proj_weight", f"{name}.weight")] = value[i * dim : (i + 1) * dim]
        elif key.startswith("enc_to_dec_proj."):
            projection[key[len("enc_to_dec_proj.") :]] = value
        else:
            decoder_state[key] = value
    config = transformers.MusicgenDecoderConfig(
        vocab_size=card,
        hidden_size=dim,
        ffn_dim=4 * dim,
        num_hidden_layers=len(lm.transformer.layers),
        num_attention_heads=lm.transformer.layers[0].self_attn.num_heads,
        num_codebooks=lm.num_codebooks,
        tie_word_embeddings=False,
        pad_token_id=card,
        bos_token_id=card,
        dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
    )
    decoder = transformers.MusicgenForCausalLM(config).eval()
    missing, unexpected = decoder.load_state_dict(decoder_state, strict=False)
    assert not unexpected and [k for k in missing if "embed_positions" not in k] == [], (missing, unexpected)
    codec = transformers.EncodecModel(
        transformers.EncodecConfig(
            sampling_rate=32000,
            codebook_size=card,
            target_bandwidths=[1.0],
            upsampling_ratios=[10, 8, 16],
            num_filters=4,
            hidden_size=32,
            num_residual_layers=1,
            num_lstm_layers=1,
        )
    )  # tokens do not use its weights
    model = transformers.MusicgenForConditionalGeneration(
        text_encoder=transformers.T5EncoderModel.from_pretrained(snapshot), audio_encoder=codec, decoder=decoder
    ).eval()
    model.enc_to_dec_proj.load_state_dict(projection)
    model.generation_config.decoder_start_token_id = card
    model.generation_config.pad_token_id = card
    return model


def test_greedy_tokens_match_between_audiocraft_and_transformers(tmp_path) -> None:
    snapshot = fabricate_t5_base(Path(os.environ["HF_HOME"]), tmp_path)
    from audiocraft.models import MusicGen

    folder = build_audiocraft(tmp_path / "musicgen-t5", "musicgen", text_encoder="t5", seed=3)
    audiocraft_model = MusicGen.get_pretrained(str(folder), device="cpu")
    frames = 20
    audiocraft_model.set_generation_params(
        use_sampling=False, duration=frames / audiocraft_model.frame_rate, cfg_coef=1.0
    )
    prompt = "calm piano with soft strings"
    with torch.inference_mode():
        _, tokens_ac = audiocraft_model.generate([prompt], return_tokens=True)
    converted = convert(audiocraft_model.lm, snapshot)
    tokenizer = transformers.AutoTokenizer.from_pretrained(snapshot)
    inputs = tokenizer([prompt], return_tensors="pt")
    codes: list[torch.Tensor] = []
    decode = converted.audio_encoder.decode

    def keep_codes(audio_codes, *args, **kwargs):  # transformers returns audio only: see the codes on their way
        codes.append(audio_codes.clone())
        return decode(audio_codes, *args, **kwargs)

    converted.audio_encoder.decode = keep_codes
    with torch.inference_mode():
        converted.generate(**inputs, do_sample=False, guidance_scale=1.0, max_new_tokens=frames + 3)
    tokens_hf = codes[0].reshape(1, 4, -1)
    assert tokens_ac.shape == (1, 4, frames) and tokens_hf.shape[-1] >= frames
    assert len(torch.unique(tokens_ac)) > 4, "the random model must not be trivially constant"
    np.testing.assert_array_equal(tokens_ac.numpy(), tokens_hf[..., :frames].numpy())


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
