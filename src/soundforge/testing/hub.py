"""A Hugging Face hub cache laid out by hand, for tests that must find weights (and their model card) "downloaded"
without a network: `install_in_hub_cache` copies a folder in as the `main` snapshot of a repository, exactly where
`huggingface_hub`'s `snapshot_download(local_files_only=True)` and `try_to_load_from_cache` look."""

from __future__ import annotations

import shutil
from pathlib import Path

#: A fake commit for snapshots installed in a cache.
REVISION = "0123456789abcdef0123456789abcdef01234567"


def install_in_hub_cache(folder: str | Path | None, repo_id: str, hub_cache: str | Path, *, card: str = "") -> Path:
    """Copy `folder` (or nothing, for a card alone) into `hub_cache` (e.g. `$HF_HOME/hub`) as the `main` snapshot of
    `repo_id`, with `card` as its README.md when given; returns the snapshot folder."""
    repo = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    if folder is not None:
        shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    if card:
        (snapshot / "README.md").write_text(card, "utf-8")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot
