"""Tiny random audiocraft checkpoints (MusicGen, AudioGen, MAGNeT) in audiocraft's release format.

`build_audiocraft(folder, family)` writes `compression_state_dict.bin` and `state_dict.bin`, each
`{"xp.cfg": <yaml>, "best_state": <tensors>, "version", "exported": True}` as `audiocraft.utils.export` does,
so `MusicGen/AudioGen/MAGNeT.get_pretrained(folder)` runs audiocraft's real loading code. Sizes are tiny
(EnCodec with 4 filters, a 2-layer LM of width 16) and prompts are embedded by a lookup-table conditioner
with audiocraft's whitespace tokenizer (spaCy) instead of T5. Random weights: for tests and plumbing, not music.
Needs audiocraft (see docs/providers/audiocraft.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FAMILIES = {"musicgen": 32000, "audiogen": 16000, "magnet": 32000, "audio-magnet": 16000}
RATIOS = {32000: [10, 8, 16], 16000: [10, 8, 8]}  # 25 frames per second, like audiocraft's debug models


def compression_config(sample_rate: int, *, full_size: bool = False) -> dict[str, Any]:
    """The `xp.cfg` of a tiny EnCodec (SEANet autoencoder, 4 residual codebooks of 256 entries), or with
    `full_size` one of the shapes of the released 32 kHz EnCodec (64 filters, ratios 8-5-4-4: 50 frames a second,
    latent 128, 4 codebooks of 2048), for benchmarks."""
    if full_size:
        cfg = compression_config(sample_rate)
        cfg["seanet"] |= {"dimension": 128, "n_filters": 64, "ratios": [8, 5, 4, 4]}
        cfg["rvq"] = {"n_q": 4, "bins": 2048}
        return cfg
    return {
        "compression_model": "encodec",
        "device": "cpu",
        "sample_rate": sample_rate,
        "channels": 1,
        "encodec": {
            "autoencoder": "seanet",
            "quantizer": "rvq",
            "sample_rate": sample_rate,
            "channels": 1,
            "causal": False,
            "renormalize": False,
        },
        "seanet": {
            "dimension": 32,
            "channels": 1,
            "n_filters": 4,
            "n_residual_layers": 1,
            "ratios": RATIOS[sample_rate],
            "encoder": {},
            "decoder": {},
        },
        "rvq": {"n_q": 4, "bins": 256},
    }


def lm_config(segment_duration: int, text_encoder: str = "lut", scale: str = "tiny") -> dict[str, Any]:
    """The `xp.cfg` of a tiny causal language model over 4 delayed codebooks, conditioned on the description.

    The transformer's structural choices are those of MusicGen's released `musicgen_lm` config (pre-norm, no
    biases in attention, feed-forward and output heads, GELU, sinusoidal positions), so a checkpoint converts
    to transformers' MusicGen. `text_encoder` "t5" uses audiocraft's T5 conditioner on `t5-base` (which must be
    in the Hugging Face cache), "lut" a lookup table over whitespace tokens. `scale` "small" gives the released
    small models' transformer (300M: width 1024, 24 layers, 16 heads, 2048 codes), for benchmarks.
    """
    description: dict[str, Any] = (
        {"model": "t5", "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.0, "normalize_text": False}}
        if text_encoder == "t5"
        else {"model": "lut", "lut": {"n_bins": 128, "dim": 16, "tokenizer": "whitespace"}}
    )
    transformer: dict[str, Any] = {
        "n_q": 4,
        "card": 256,
        "dim": 16,
        "num_heads": 4,
        "num_layers": 2,
        "hidden_scale": 4,
        "custom": True,
        "causal": True,
        "memory_efficient": True,
        "norm_first": True,
        "bias_ff": False,
        "bias_attn": False,
        "bias_proj": False,
        "activation": "gelu",
        "positional_embedding": "sin",
    }
    if scale == "small":
        transformer |= {"dim": 1024, "num_heads": 16, "num_layers": 24, "card": 2048}
        if text_encoder == "lut":
            description["lut"]["dim"] = 1024
    return {
        "lm_model": "transformer_lm",
        "device": "cpu",
        "dtype": "float32",
        "transformer_lm": transformer,
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": [0, 1, 2, 3]}},
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": 0.1, "inference_coef": 3.0},
        "fuser": {
            "cross_attention_pos_emb": False,
            "cross_attention_pos_emb_scale": 1,
            "sum": [],
            "prepend": [],
            "cross": ["description"],
            "input_interpolate": [],
        },
        "conditioners": {"description": description},
        "dataset": {"segment_duration": segment_duration},
    }


def magnet_lm_config(segment_duration: int, scale: str = "tiny") -> dict[str, Any]:
    """The `xp.cfg` of a MAGNeT language model: non-causal, parallel codebooks, attention after the first
    codebook restricted to 5 frames on either side, spans of 3 (audiocraft's `config/model/lm/magnet.yaml` and
    `config/solver/magnet/magnet_32khz.yaml`); `scale` as for `lm_config`."""
    cfg = lm_config(segment_duration, scale=scale)
    cfg["lm_model"] = "transformer_lm_magnet"
    cfg["transformer_lm"] |= {"causal": False, "subcodes_context": 5, "memory_efficient": True}
    cfg["codebooks_pattern"] = {"modeling": "parallel", "parallel": {"empty_initial": 0}}
    cfg["masking"] = {"span_len": 3}
    return cfg


def build_audiocraft(
    path: str | os.PathLike[str],
    family: str = "musicgen",
    *,
    segment_duration: int | None = None,
    text_encoder: str = "lut",
    seed: int = 0,
    full_size: bool = False,
) -> Path:
    """Write a tiny random checkpoint of `family` ("musicgen", "audiogen", "magnet" or "audio-magnet") into `path`;
    `segment_duration` is the model's window in seconds (default 30 for MusicGen, 10 for the others, as
    released). `full_size` gives the released small models' shapes (codec and transformer), for benchmarks."""
    import audiocraft
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    rate = FAMILIES[family]
    duration = int(segment_duration or (30 if family == "musicgen" else 10))
    torch.manual_seed(seed)
    compression_cfg = OmegaConf.create(compression_config(rate, full_size=full_size))
    compression = builders.get_compression_model(compression_cfg)
    latent = int(compression_cfg.seanet.dimension)
    compression.quantizer(torch.randn(8, latent, 128), 1)  # initialise the codebooks (k-means) as training would
    magnet = family in ("magnet", "audio-magnet")
    scale = "small" if full_size else "tiny"
    lm_cfg = OmegaConf.create(magnet_lm_config(duration, scale) if magnet else lm_config(duration, text_encoder, scale))
    lm = builders.get_lm_model(lm_cfg)
    for name, cfg, model in (
        ("compression_state_dict.bin", compression_cfg, compression),
        ("state_dict.bin", lm_cfg, lm),
    ):
        torch.save(
            {
                "xp.cfg": OmegaConf.to_yaml(cfg),
                "best_state": model.state_dict(),
                "version": audiocraft.__version__,
                "exported": True,
            },
            folder / name,
        )
    return folder


def build_multiband_diffusion(
    path: str | os.PathLike[str], *, n_bands: int = 2, codec_dim: int = 32, seed: int = 0
) -> Path:
    """Write a tiny random MultiBand Diffusion checkpoint (`mbd_musicgen_32khz.th`, audiocraft's format: per band
    its config, U-Net weights and sample processor) for the 32 kHz codecs above (latent dimension `codec_dim`)."""
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = OmegaConf.create(
        {
            "channels": 1,
            "schedule": {
                "beta_t0": 1e-4,
                "beta_t1": 0.02,
                "num_steps": 1000,
                "variance": "beta",
                "clip": 5.0,
                "rescale": 1.0,
                "n_bands": None,
            },
            "diffusion_unet": {"hidden": 8, "depth": 2, "codec_dim": codec_dim},
            "processor": {"use": False, "name": "none"},
        }
    )
    package: dict[Any, Any] = {"sample_rate": 32000, "n_bands": n_bands}
    for band in range(n_bands):
        unet = builders.get_diffusion_model(cfg)
        processor = builders.get_processor(cfg.processor, 32000)
        package[band] = {"cfg": cfg, "model_state": unet.state_dict(), "processor_state": processor.state_dict()}
    torch.save(package, folder / "mbd_musicgen_32khz.th")
    return folder
