"""Style adapters (LoRAs): where a request's adapter files are, what they are, and what their card says.

Routing asks here before anything loads: the card first (its `license:` decides whether the policy lets the adapter
in, so a refused adapter's weights are never fetched or read), then the weight files, hashed for the provenance, the
result cache's key and the batching key. Only `.safetensors` files are accepted: a pickled `.bin` or `.pt` can run
code when it is loaded, and an adapter is often a stranger's file. An engine then loads the files it is given
(`AdapterFiles.path`) into its model for the call and removes them after it (docs/adapters.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterError, ConfigurationError, clipped
from ..licences.model_card import ModelCard, read_model_card
from ..request import Adapter
from .base import AdapterWeights
from .runtime import ModelMemory, find_model_card, looks_like_path, offline, revision

#: What a hub adapter's snapshot needs: its weights, its configs (PEFT's adapter_config.json) and its card.
ADAPTER_PATTERNS = ["*.safetensors", "*.json", "README.md"]
#: The file names the two common writers give a LoRA: diffusers' `save_lora_weights` and PEFT's `save_pretrained`.
KNOWN_WEIGHT_NAMES = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")
_HASHED_FILES = 256


@dataclass(frozen=True)
class AdapterFiles:
    """One adapter of a request, found: the file an engine loads, its sha256 and the hub revision.

    Attributes:
        adapter: the request's adapter (source, scale, revision asked for).
        path: the `.safetensors` file an engine loads.
        sha256: the file's sha256 (provenance, the result cache's key, the batching key).
        revision: the hub commit of a cached snapshot; None for a local file.
    """

    adapter: Adapter
    path: str
    sha256: str
    revision: str | None = None

    @property
    def folder(self) -> str:
        """The folder holding the weight file (and PEFT's `adapter_config.json`, when it has one)."""
        return str(Path(self.path).parent)

    @property
    def weight_name(self) -> str:
        """The weight file's name inside `folder`."""
        return Path(self.path).name

    def record(self) -> dict[str, Any]:
        """The adapter as provenance keeps it: source, revision, scale and its file with its sha256."""
        record: dict[str, Any] = {"source": self.adapter.source, "scale": self.adapter.scale}
        if self.revision or self.adapter.revision:
            record["revision"] = self.revision or self.adapter.revision
        record["files"] = {self.weight_name: self.sha256}
        return record


def is_local(source: str) -> bool:
    """Whether an adapter source names a file or folder on this machine (else it is a hub id, `owner/name`)."""
    return Path(source).expanduser().exists() or looks_like_path(source) or source.endswith(".safetensors")


def adapter_card(adapter: Adapter, settings: dict[str, Any], *, allow_fetch: bool) -> ModelCard | None:
    """The licence fields of an adapter's card, read before its weights are looked at: a local folder's (or a
    file's folder's) `README.md`, a hub adapter's card from the Hugging Face cache, else downloaded alone when
    `allow_fetch` and downloads are on. None when there is no card to read here."""
    if is_local(adapter.source):
        path = Path(adapter.source).expanduser()
        return read_model_card(path if path.is_dir() else path.parent)
    return find_model_card(adapter.source, revision=adapter.revision, allow_fetch=allow_fetch and not offline(settings))


def adapter_files(adapter: Adapter, settings: dict[str, Any], *, allow_fetch: bool, provider: str) -> AdapterFiles:
    """The weight file of one adapter, found (a local file or folder, the Hugging Face cache, or a download when
    `allow_fetch`) and hashed. Raises `AdapterError` saying what is wrong and what to do."""
    source = adapter.source
    if is_local(source):
        if adapter.revision is not None:
            raise AdapterError(source, "a revision applies to hub adapters, not to a local file", provider=provider)
        path = Path(source).expanduser()
        if not path.exists():
            raise AdapterError(source, f"{path} does not exist", provider=provider)
        snapshot = None
    else:
        path = Path(_hub_snapshot(adapter, settings, allow_fetch=allow_fetch, provider=provider))
        snapshot = revision(str(path))
    weights = _weight_file(path, source, provider)
    return AdapterFiles(
        adapter=adapter,
        path=str(weights),
        sha256=file_sha256(weights),
        revision=snapshot,
    )


def _weight_file(path: Path, source: str, provider: str) -> Path:
    """The one `.safetensors` file a file or folder names (a known writer's name first)."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise AdapterError(
                source,
                f"{path.name} is not a .safetensors file",
                provider=provider,
                hint="soundforge loads adapters from .safetensors only (a pickled .bin or .pt can run code when "
                "loaded); convert it with safetensors' save_file",
            )
        return path
    found = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    known = [p for p in found if p.name in KNOWN_WEIGHT_NAMES]
    if len(known) == 1 or len(found) == 1:
        return (known or found)[0]
    if not found:
        raise AdapterError(
            source,
            f"{path} holds no .safetensors file",
            provider=provider,
            hint="point to the folder save_lora_weights() or PEFT's save_pretrained() wrote, or to the file itself",
        )
    raise AdapterError(
        source,
        f"{path} holds {len(found)} .safetensors files ({', '.join(p.name for p in found[:5])})",
        provider=provider,
        hint="name the file itself as the source",
    )


def _hub_snapshot(adapter: Adapter, settings: dict[str, Any], *, allow_fetch: bool, provider: str) -> str:
    """The cached (or downloaded) snapshot folder of a hub adapter."""
    from huggingface_hub import snapshot_download

    source = adapter.source
    fix = f"download it first: hf download {source}" + (f" --revision {adapter.revision}" if adapter.revision else "")
    try:
        cached = snapshot_download(
            source, revision=adapter.revision, local_files_only=True, allow_patterns=ADAPTER_PATTERNS
        )
        if not any(Path(cached).glob("*.safetensors")):  # only the card is here (fetched alone for its licence)
            raise FileNotFoundError(f"{cached} holds the card only")
        return str(cached)
    except Exception as cached_miss:
        if offline(settings) or not allow_fetch:
            why = (
                "downloads are off (HF_HUB_OFFLINE or allow_download = false)"
                if offline(settings)
                else "not downloaded yet (a provider named in the request downloads it; `auto` never does)"
            )
            raise AdapterError(
                source, f"not in the Hugging Face cache and {why}", provider=provider, hint=fix
            ) from cached_miss
    try:
        return str(
            snapshot_download(source, revision=adapter.revision, allow_patterns=ADAPTER_PATTERNS, etag_timeout=10)
        )
    except Exception as exc:
        raise AdapterError(
            source, f"could not download it: {type(exc).__name__}: {clipped(str(exc))}", provider=provider, hint=fix
        ) from exc


_hash_lock = threading.Lock()
_hashes: OrderedDict[tuple[str, int, int], str] = OrderedDict()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """A file's sha256, remembered by (real path, size, modification time): an adapter used by every request of a
    service is read once, and a file changed in place is hashed again."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        known = _hashes.get(key)
        if known is not None:
            _hashes.move_to_end(key)
            return known
    with open(real, "rb") as handle:
        value = hashlib.file_digest(handle, "sha256").hexdigest()
    with _hash_lock:
        _hashes[key] = value
        while len(_hashes) > _HASHED_FILES:
            _hashes.popitem(last=False)
    return value


@contextmanager
def counted(
    adapters: tuple[AdapterWeights, ...], memory: ModelMemory | None, *, owner: str, device: str
) -> Iterator[None]:
    """Count loaded adapters in the client's model memory ledger while the block runs (their weight files' size:
    safetensors hold the tensors as they load), so the budget sees them and `Client.loaded_models()` lists them;
    forgotten when they are unloaded. Each call has its own entry: concurrent calls never share one."""
    if memory is None or not adapters:
        yield
        return
    key = f"adapters {adapters_key(adapters)[:12]} #{uuid.uuid4().hex[:8]}"
    nbytes = sum(os.path.getsize(Path(a.folder) / a.weight_name) for a in adapters)
    memory.record(owner, key, device, nbytes, drop=lambda: None)
    try:
        yield
    finally:
        memory.forget(owner, key)


def adapters_key(adapters: tuple[AdapterWeights, ...]) -> str:
    """What tells two requests' adapters apart (sources, revisions, scales, file hashes): part of the batching key,
    so requests with different adapters never share a model call."""
    parts = [f"{a.sha256}@{a.adapter.scale!r}" for a in adapters]
    return hashlib.sha256("|".join(parts).encode()).hexdigest() if parts else ""


@contextmanager
def peft_adapters(
    model: Any,
    adapters: tuple[AdapterWeights, ...],
    *,
    provider: str,
    memory: ModelMemory | None = None,
    device: str = "cpu",
) -> Iterator[None]:
    """Inject `adapters` (PEFT's format: `adapter_config.json` beside the weights) into a transformers model in place
    with PEFT's own `PeftModel.from_pretrained` / `load_adapter`, each at its scale (`LoraLayer.set_scale`), for the
    body of the block; then `unload()` puts the model's own modules back, so it is the base model again.

    The caller runs this on the model's device thread (one call at a time). An adapter that does not fit raises
    `AdapterError` before anything is generated, the model restored. Nothing happens without adapters.
    """
    if not adapters:
        yield
        return
    require_peft(provider)
    from peft import PeftConfig, PeftModel
    from peft.tuners.lora import LoraLayer

    wrapped: Any = None
    names = [f"soundforge_{index}" for index in range(len(adapters))]
    try:
        for name, found in zip(names, adapters, strict=True):
            if not (Path(found.folder) / "adapter_config.json").is_file():
                raise AdapterError(
                    found.adapter.source,
                    "it has no adapter_config.json beside its weights (PEFT's format, which this engine loads)",
                    provider=provider,
                    hint="point to the folder PEFT's save_pretrained() wrote",
                )
            try:
                # What `PeftModel.from_pretrained` does, in two steps: once the model is wrapped, `unload()` can
                # take out whatever a failing load left in it.
                if wrapped is None:
                    wrapped = PeftModel(model, PeftConfig.from_pretrained(found.folder), adapter_name=name)
                wrapped.load_adapter(found.folder, adapter_name=name)
            except (ValueError, RuntimeError, KeyError, OSError) as exc:
                raise misfit(
                    found.adapter.source, model, exc, provider=provider, no_match="none of its target modules is"
                ) from exc
        wrapped.base_model.set_adapter(names)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for name, found in zip(names, adapters, strict=True):
                    if name in module.lora_A:
                        module.set_scale(name, found.adapter.scale)
        with counted(adapters, memory, owner=provider, device=device):
            yield
    finally:
        if wrapped is not None:
            wrapped.unload()
        elif hasattr(model, "peft_config"):  # a failed first injection may have left its config behind
            del model.peft_config


def require_peft(provider: str) -> None:
    """Refuse to load adapters without PEFT (the LoRA backend of diffusers' and transformers' loaders), saying
    which extra brings it."""
    if importlib.util.find_spec("peft") is None:
        raise ConfigurationError(
            "loading adapters needs PEFT",
            provider=provider,
            hint=f'pip install "soundforge[{provider}]" (it includes peft)',
        )


#: What a user does about an adapter that does not fit.
TRAINED_FOR_IT = "use an adapter trained for this model (its card names the base model)"


def misfit(source: str, target: Any, exc: BaseException, *, provider: str, no_match: str) -> AdapterError:
    """The error for an adapter a loader refused (diffusers' or PEFT's): `no_match`, then "a module of <model>",
    when its keys name no module of the model (PEFT's `NoMatchingPeftModuleError`), else the loader's reason."""
    if type(exc).__name__ == "NoMatchingPeftModuleError":
        why = f"{no_match} a module of {type(target).__name__}"
    else:
        why = f"it does not fit {type(target).__name__}: {type(exc).__name__}: {clipped(str(exc))}"
    return AdapterError(source, why, provider=provider, hint=TRAINED_FOR_IT)
