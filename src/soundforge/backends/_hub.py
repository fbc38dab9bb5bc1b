"""What local engine backends share: finding weights (folder, Hugging Face cache, hub), device and dtype
choice, and a small LRU cache of loaded models. Imports torch and huggingface_hub only when called."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import ModelNotAvailableError, clipped
from ..licences.model_card import ModelCard, read_model_card
from ._compute import run_on_device_thread
from .base import ENGINE_DEVICE_ENV, Availability

if TYPE_CHECKING:
    from ._memory import ModelMemory

T = TypeVar("T")
#: torch's global RNG is one per process: every engine that seeds it (MusicGen through transformers or audiocraft,
#: stable-audio-tools) holds this lock from `manual_seed` to the end of sampling, so seeds mean the same thing
#: whatever else runs concurrently.
TORCH_RNG_LOCK = threading.RLock()
#: README.md is the model card: its licence fields travel with the weights (`soundforge.licences.model_card`).
WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "README.md"]


def offline(settings: dict[str, Any]) -> bool:
    """Downloads are off: HF_HUB_OFFLINE (read now, not at import) or the provider's `allow_download = false`."""
    env = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    return env or not settings.get("allow_download", True)


def looks_like_path(model: str) -> bool:
    """A model string that names a folder rather than a hub id (`org/name`)."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1


def resolve_checkpoint(
    provider: str,
    model: str,
    settings: dict[str, Any],
    *,
    marker: str,
    allow_fetch: bool = True,
    access_note: str = "",
    point_to: str | None = None,
) -> str:
    """The local folder of a checkpoint: given directly, found in the Hugging Face cache, or downloaded.

    Raises ModelNotAvailableError at once (never a retry loop) with where it looked and the command to fix it;
    `point_to` says how a user names a local folder instead (default: the provider's `model` setting).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            raise ModelNotAvailableError(
                provider, model, f"{path} has no {marker}", fix="point to a folder written by save_pretrained()"
            )
        return str(path)
    if looks_like_path(model):
        raise ModelNotAvailableError(provider, model, f"folder {path} does not exist")
    from huggingface_hub import snapshot_download

    where = point_to or f'set [providers.{provider}] model = "/path/to/checkpoint"'
    fix = f"{access_note}download it first (`hf download {model}`), or {where}"
    try:
        return str(snapshot_download(model, local_files_only=True, allow_patterns=WEIGHT_PATTERNS))
    except Exception as cached_miss:
        if offline(settings) or not allow_fetch:
            hub = os.environ.get("HF_HOME", "~/.cache/huggingface")
            why = (
                "downloads are off (HF_HUB_OFFLINE or allow_download = false)"
                if offline(settings)
                else "not downloaded yet (an explicit request downloads them; `auto` never does)"
            )
            raise ModelNotAvailableError(
                provider, model, f"weights not in the Hugging Face cache ({hub}) and {why}", fix=fix
            ) from cached_miss
    try:
        return str(snapshot_download(model, allow_patterns=WEIGHT_PATTERNS, etag_timeout=10))
    except Exception as exc:
        raise ModelNotAvailableError(
            provider, model, f"could not download the weights: {type(exc).__name__}: {clipped(str(exc))}", fix=fix
        ) from exc


def checkpoint_availability(
    provider: str, model: str, settings: dict[str, Any], *, marker: str, allow_fetch: bool, access_note: str = ""
) -> Availability:
    """Whether a checkpoint is on disk (or may be downloaded when `allow_fetch`), without loading it."""
    try:
        resolve_checkpoint(provider, model, settings, marker=marker, allow_fetch=False, access_note=access_note)
        return Availability(True)
    except ModelNotAvailableError as exc:
        if allow_fetch and not offline(settings) and not looks_like_path(model):
            return Availability(True)  # a download will be tried at load time
        return Availability(False, exc.message.split(": ", 1)[-1], fix=exc.hint)


def files_availability(
    model: str,
    files: tuple[str, ...],
    settings: dict[str, Any],
    *,
    allow_fetch: bool,
    folder_fix: str,
    download_note: str = "",
) -> Availability:
    """Whether an engine's checkpoint files are here: in a folder, or in the Hugging Face cache (or may be
    downloaded when `allow_fetch` and downloads are on). Nothing is loaded or downloaded."""
    path = Path(model).expanduser()
    if path.is_dir() or looks_like_path(model):
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            return Availability(False, f"{path} has no {', '.join(missing)}", fix=folder_fix)
        return Availability(True)
    from huggingface_hub import try_to_load_from_cache

    if all(isinstance(try_to_load_from_cache(model, f), str) for f in files):
        return Availability(True)
    if allow_fetch and not offline(settings):
        return Availability(True)
    return Availability(
        False,
        f"{', '.join(files)} not in the Hugging Face cache",
        fix=f"{download_note}hf download {model} {' '.join(files)}",
    )


def find_model_card(model: str, *, revision: str | None = None, allow_fetch: bool = False) -> ModelCard | None:
    """The card of the weights `model` names, from its folder or its Hugging Face cache snapshot (at `revision`);
    with `allow_fetch`, a card not cached is downloaded alone (a few kilobytes, never the weights). None when there
    is none. Never imports anything heavier than huggingface_hub."""
    path = Path(model).expanduser()
    if path.is_dir() or looks_like_path(model):
        return read_model_card(path)
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError
    except ImportError:
        return None
    try:
        cached = try_to_load_from_cache(model, "README.md", revision=revision)
    except HFValidationError:  # not a hub id: it has no card in the cache
        return None
    if isinstance(cached, str):
        return read_model_card(cached)
    if not allow_fetch:
        return None
    try:
        return read_model_card(hf_hub_download(model, "README.md", revision=revision, etag_timeout=10))
    except Exception:  # no card on the hub (or no hub): the licence record decides alone
        return None


def revision(folder: str) -> str | None:
    """The hub commit of a cached snapshot (`.../snapshots/<sha>`), else None for a plain folder."""
    path = Path(folder)
    return path.name if path.parent.name == "snapshots" else None


def pick_device(setting: str) -> str:
    """`auto` picks the device of this serve engine (`ENGINE_DEVICE_ENV`) where one was given, else CUDA, then
    Apple MPS, then CPU; anything else is used as given."""
    import torch

    if setting != "auto":
        return setting
    if os.environ.get(ENGINE_DEVICE_ENV):
        return os.environ[ENGINE_DEVICE_ENV]
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(setting: str, device: str) -> Any:
    """`auto` is float16 on CUDA and float32 elsewhere."""
    import torch

    if setting == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[setting]


class ModelCache(Generic[T]):
    """Loaded models by key, least recently used dropped past `limit`; a second request never reloads.

    With a `ModelMemory` ledger (the client's), loading a model first evicts least recently used models of any
    local backend on the same device until the new one fits the memory budget.
    """

    def __init__(
        self,
        limit: Callable[[], int],
        *,
        owner: str = "",
        memory: Callable[[], ModelMemory | None] = lambda: None,
        footprint: Callable[[T], tuple[str, int]] | None = None,
    ) -> None:
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit
        self._owner = owner
        self._memory = memory
        self._footprint = footprint

    def get(
        self, key: str, load: Callable[[], T], *, device: str | None = None, estimate: Callable[[], int] | None = None
    ) -> T:
        """The cached value for `key`, loading it (under the lock) the first time.

        `device` and `estimate` (bytes, e.g. the weight files' size; asked only before a load) let the memory
        budget make room first.
        """
        ledger = self._memory()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                if ledger is not None:
                    ledger.touch(self._owner, key)
                return self._items[key]
            if ledger is not None and device is not None:
                ledger.admit(self._owner, key, device, estimate() if estimate is not None else 0)
            value = run_on_device_thread(device, load)
            self._items[key] = value
            while len(self._items) > max(1, self._limit()):
                old, _ = self._items.popitem(last=False)
                if ledger is not None:
                    ledger.forget(self._owner, old)
            if ledger is not None and self._footprint is not None:
                where, nbytes = self._footprint(value)
                ledger.record(self._owner, key, where, nbytes, drop=lambda: self._drop(key))
            return value

    def _drop(self, key: str) -> None:
        """Eviction by the ledger: no lock (the ledger may be called from inside this cache's own load)."""
        self._items.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        """Loaded keys, least recently used first."""
        return list(self._items)

    def unload(self, key: str | None = None) -> None:
        """Forget one entry, or all of them."""
        with self._lock:
            if key is None:
                self._items.clear()
            else:
                self._items.pop(key, None)
        ledger = self._memory()
        if ledger is not None:
            ledger.forget(self._owner, key)
