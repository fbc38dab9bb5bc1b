"""`soundforge pull`: a local model's weights, fetched through the licence gate.

`plan_pull` works out what pulling a model means before any weight byte moves: the model the spec names (or the
provider's configured or default one), its licence (the registry's record, held to the card of the revision that would
be fetched: the card alone is read first, a few kilobytes), the licence policy's verdict, and the files with their
sizes (the hub's own listing, `snapshot_download(dry_run=True)`). `pull` refuses what the policy refuses, downloads the
rest through `huggingface_hub` into its cache, checks every file against the hub's hashes (sha256 for LFS files, the
git blob sha1 for the others) and then asks the engine whether the model runs offline. Models whose published layout
an engine cannot load (Stable Audio 3: a conversion step) and engines with their own download code (audiocraft,
Demucs) say so, with the command that gets their weights.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LicensePolicyError, ModelNotAvailableError, PullError, clipped
from ..licences.licensing import License, LicenseRegistry
from ..licences.policy import LicensePolicy
from .adapters import file_sha256
from .base import Backend
from .runtime import WEIGHT_PATTERNS, find_model_card, looks_like_path, offline

#: Files a pull fetches for engines that load a `save_pretrained` folder (transformers, diffusers): weights in
#: safetensors, configs, tokenizers and the card. Pickled `.bin` weights are never fetched.
PULL_PATTERNS = tuple(WEIGHT_PATTERNS)


@dataclass(frozen=True)
class HubFile:
    """One file of a pull: its name in the repository, its size, and whether the cache already holds it."""

    name: str
    size: int | None
    cached: bool


@dataclass(frozen=True)
class PullPlan:
    """What pulling one model means, worked out before any weight byte is downloaded."""

    provider: str
    model: str
    license: License
    allowed: bool
    clause: str
    commit: str | None = None
    files: list[HubFile] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """The size of every file of the model (the hub's sizes)."""
        return sum(f.size or 0 for f in self.files)

    @property
    def download_bytes(self) -> int:
        """What is still to download (the files the cache does not hold)."""
        return sum(f.size or 0 for f in self.files if not f.cached)


@dataclass(frozen=True)
class PullResult:
    """A pulled model: where its snapshot is, the files checked against the hub's hashes, and whether it runs
    offline now."""

    plan: PullPlan
    folder: str
    verified: int
    offline_ready: bool


def plan_pull(
    backend: Backend, model: str, registry: LicenseRegistry, policy: LicensePolicy, *, plan: str | None = None
) -> PullPlan:
    """The licence, the policy's verdict and the files of pulling `backend:model`; reads the card and the hub's
    file listing only."""
    _check_pullable(backend, model)
    settings = backend.settings
    if offline(settings):
        raise PullError(
            f"downloads are off for {backend.name} (HF_HUB_OFFLINE or allow_download = false)",
            provider=backend.name,
            hint="unset HF_HUB_OFFLINE and allow_download = false to pull",
        )
    card = find_model_card(model, allow_fetch=True)  # the card alone, a few kilobytes
    license = registry.license_for(backend.name, model, plan=plan, card=card)
    decision = policy.check(backend.name, model, license)
    if not decision.allowed:
        return PullPlan(backend.name, model, license, False, decision.clause)
    commit, files = _listing(backend, model)
    return PullPlan(backend.name, model, license, True, "", commit, files)


def pull(
    backend: Backend,
    model: str,
    registry: LicenseRegistry,
    policy: LicensePolicy,
    *,
    plan: str | None = None,
    on_plan: Callable[[PullPlan], None] | None = None,
) -> PullResult:
    """Pull `backend:model` (see the module's docstring): refuse under the policy before any weight byte, download,
    verify, and check it runs offline. `on_plan` sees the plan first (the CLI prints it)."""
    found = plan_pull(backend, model, registry, policy, plan=plan)
    if on_plan is not None:
        on_plan(found)
    if not found.allowed:
        raise LicensePolicyError(backend.name, model, found.license.id, found.clause)
    from huggingface_hub import snapshot_download

    try:
        folder = str(snapshot_download(model, revision=found.commit, allow_patterns=list(PULL_PATTERNS)))
    except Exception as exc:  # the hub's and the network's errors: one typed error with the reason
        raise PullError(
            f"could not download {model}: {type(exc).__name__}: {clipped(str(exc))}", provider=backend.name
        ) from exc
    verified = verify_snapshot(model, found.commit, folder, provider=backend.name)
    ready = backend.model_availability(model, allow_fetch=False)
    return PullResult(found, folder, verified, ready.available)


def verify_snapshot(model: str, commit: str | None, folder: str, *, provider: str) -> int:
    """Check every pulled file against the hub's listing: an LFS file's sha256, another file's git blob sha1.
    Raises `PullError` naming the first file that differs; returns how many files were checked."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    entries = {
        entry.path: entry
        for entry in HfApi().list_repo_tree(model, revision=commit, recursive=True)
        if isinstance(entry, RepoFile)
    }
    checked = 0
    for name in filter_repo_objects(list(entries), allow_patterns=list(PULL_PATTERNS)):
        entry = entries[name]
        path = Path(folder) / name
        if not path.is_file():
            raise PullError(f"{model}: {name} is missing after the download", provider=provider)
        if entry.lfs is not None:
            actual, expected = file_sha256(path), entry.lfs.sha256
        else:
            actual, expected = _git_blob_sha1(path), entry.blob_id
        if actual != expected:
            raise PullError(
                f"{model}: {name} does not match the hub's hash ({actual[:12]} against {str(expected)[:12]})",
                provider=provider,
                hint="pull again; the damaged file is re-fetched once you delete it from the Hugging Face cache",
            )
        checked += 1
    return checked


def _check_pullable(backend: Backend, model: str) -> None:
    if not backend.local:
        raise PullError(f"{backend.name} runs in the cloud: it has no weights to pull", provider=backend.name)
    if looks_like_path(model) or Path(model).expanduser().exists():
        raise PullError(f"{model} is a folder on this machine, not a hub model", provider=backend.name)
    note = backend.pull_note(model)
    if note:
        raise PullError(f"soundforge pull does not fetch {backend.name}:{model}: {note}", provider=backend.name)


def _listing(backend: Backend, model: str) -> tuple[str | None, list[HubFile]]:
    """The files of `model` a pull fetches, with their sizes and whether they are cached (the hub's dry run)."""
    from huggingface_hub import snapshot_download

    try:
        infos = snapshot_download(model, allow_patterns=list(PULL_PATTERNS), dry_run=True)
    except Exception as exc:
        raise ModelNotAvailableError(
            backend.name, model, f"the hub does not list it: {type(exc).__name__}: {clipped(str(exc))}"
        ) from exc
    files = [HubFile(i.filename, i.file_size, bool(i.is_cached)) for i in infos]
    commit = infos[0].commit_hash if infos else None
    return commit, sorted(files, key=lambda f: f.name)


def _git_blob_sha1(path: Path) -> str:
    """Git's object id of a file: sha1 of `blob <size>\\0` and its bytes (what the hub lists for non-LFS files)."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode(), usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
