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
import shutil
from pathlib import Path

SOURCES = ("drums", "bass", "other", "vocals")
#: A fake commit for snapshots installed in a cache.
REVISION = "0123456789abcdef0123456789abcdef01234567"


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


def install_in_hub_cache(folder: str | Path, repo_id: str, hub_cache: str | Path) -> Path:
    """Copy an export into `hub_cache` (a Hugging Face hub cache, e.g. `$HF_HOME/hub`) as the `main` snapshot of
    `repo_id`; returns the snapshot folder."""
    repo = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot
