"""Randomly initialised AudioSeal checkpoints, written where AudioSeal's loader reads its weights.

`install_random_audioseal()` builds the 16-bit generator and detector from AudioSeal's own model cards (the real
architecture at its real size: SEANet encoder and decoder with LSTMs, 14.7 M and 8.6 M parameters) with random
weights, and saves each as a checkpoint in the layout of the published ones: convolution weights under their
pre-TorchScript names and split by weight norm (`weight_g`, `weight_v`), which `audioseal.loader` converts and
folds back when it loads them. The files go to `soundforge.run.watermarking.weights_path(card)`, inside
`$AUDIOSEAL_CACHE_DIR` (set it to a temporary folder first), so `AudioSeal.load_generator("audioseal_wm_16bits")`
loads them from the cache without a network. For tests: a random model marks nothing a detector could find.
Needs `soundforge[watermark]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..run.watermarking import DETECTOR_CARD, GENERATOR_CARD, weights_path


def _published_layout(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict of the scriptable model in the layout of the published checkpoints: `inner_conv` left out
    of convolution names, and each convolution weight split by weight norm into its magnitude and direction."""
    import torch

    out: dict[str, Any] = {}
    for key, value in state.items():
        old = key.replace(".inner_conv.", ".")
        if key.endswith(".inner_conv.weight"):
            prefix = old[: -len(".weight")]
            out[f"{prefix}.weight_g"] = torch.norm_except_dim(value, 2, 0).detach().clone()
            out[f"{prefix}.weight_v"] = value.detach().clone()
        else:
            out[old] = value.detach().clone()
    return out


def build_model(card: str, seed: int = 0) -> Any:
    """A randomly initialised AudioSeal model of one card (generator or detector), built by AudioSeal itself."""
    import torch
    from audioseal.builder import AudioSealDetectorConfig, AudioSealWMConfig, create_detector, create_generator
    from audioseal.loader import AudioSeal, load_local_model_config
    from omegaconf import OmegaConf

    config: dict[str, Any] = dict(OmegaConf.to_container(load_local_model_config(card)))  # type: ignore[arg-type]
    config.pop("checkpoint")
    torch.manual_seed(seed)
    if card == GENERATOR_CARD:
        return create_generator(AudioSeal.parse_config(config, AudioSealWMConfig))
    return create_detector(AudioSeal.parse_config(config, AudioSealDetectorConfig))


def install_random_audioseal(seed: int = 0) -> dict[str, Path]:
    """Write random generator and detector checkpoints into AudioSeal's cache; returns their paths by card."""
    import torch

    paths = {}
    for offset, card in enumerate((GENERATOR_CARD, DETECTOR_CARD)):
        model = build_model(card, seed + offset)
        path = weights_path(card)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": _published_layout(model.state_dict())}, path)
        paths[card] = path
    return paths
