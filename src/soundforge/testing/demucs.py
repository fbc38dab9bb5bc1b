"""Tiny random Demucs exports in the layout Demucs publishes on the Hugging Face hub.

`build_demucs(folder, name)` writes `NAME.yaml` (the bag: its model signatures, weights and segment) and one
`SIG.safetensors` per model whose metadata hold the model class and its init arguments as JSON (`klass`, `args`,
`kwargs`), read back by `demucs.hf.load_safetensors_model`, the loader of `adefossez/HTDemucs`. `install_in_hub_cache`
places such a folder in a Hugging Face cache as a snapshot of a repository, so the hub path (`htdemucs`) loads
from the cache offline. The models are the real HTDemucs architecture at a tiny width: for tests, not stems.
Needs `soundforge[demucs]`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .hub import REVISION, install_in_hub_cache

__all__ = ["REVISION", "SOURCES", "build_demucs", "install_in_hub_cache"]

SOURCES = ("drums", "bass", "other", "vocals")


def build_demucs(
    folder: str | Path, name: str = "htdemucs", *, sources: tuple[str, ...] = SOURCES, models: int = 1, seed: int = 0
) -> Path:
    """Write a bag of `models` tiny random HTDemucs (segment 1 s) as `folder/NAME.yaml` plus safetensors files."""
    import torch
    import yaml
    from demucs.htdemucs import HTDemucs
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    signatures = []
    for index in range(models):
        torch.manual_seed(seed + index)
        kwargs = {
            "sources": list(sources),
            "channels": 4,
            "depth": 2,
            "nfft": 512,
            "t_layers": 1,
            "t_heads": 1,
            "t_hidden_scale": 1.0,
            "dconv_comp": 2,
            "dconv_depth": 1,
            "segment": 1,
        }
        model = HTDemucs(**kwargs)
        signature = f"{seed + index:08x}"
        state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
        metadata = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(kwargs)}
        save_file(state, str(out / f"{signature}.safetensors"), metadata=metadata)
        signatures.append(signature)
    bag = {"models": signatures, "weights": None, "segment": None}
    (out / f"{name}.yaml").write_text(yaml.safe_dump(bag))
    return out
