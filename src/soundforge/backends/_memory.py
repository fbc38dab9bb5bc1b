"""The model memory budget: one ledger per client of every model its local backends hold, by device.

Before a model loads, least recently used models on the same device (from any local backend) are evicted until
the new one's estimated size fits the budget; after it loads, its measured size (parameters and buffers) replaces
the estimate. A generation already running keeps its model alive until it ends: eviction only drops the cache's
reference.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

log = logging.getLogger("soundforge.models")

GIB = 1024**3
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


@dataclass
class LoadedEntry:
    """One model in the ledger."""

    owner: str  # the provider name
    key: str  # the model id
    device: str
    nbytes: int
    drop: Callable[[], None]  # removes it from its backend's cache


def normalise_device(device: str) -> str:
    """`cuda` and `cuda:0` are the same memory; everything else is as given."""
    return "cuda:0" if device == "cuda" else device


def device_memory(device: str) -> int:
    """Total memory of a device in bytes: the GPU's own, or the machine's RAM for CPU and MPS."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.get_device_properties(int(device.partition(":")[2] or 0)).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def weights_on_disk(folder: str | os.PathLike[str]) -> int:
    """Bytes of the weight files in a checkpoint folder: the estimate of a model's size before it loads."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def module_bytes(*objects: Any) -> int:
    """Bytes held by the parameters and buffers of torch modules (each tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for obj in objects:
        if obj is None or not hasattr(obj, "parameters"):
            continue
        for tensor in [*obj.parameters(), *obj.buffers()]:
            pointer = tensor.data_ptr()
            if pointer not in seen:
                seen.add(pointer)
                total += tensor.numel() * tensor.element_size()
    return total


@dataclass(frozen=True)
class LoadedModelInfo:
    """One row of `Client.loaded_models()`: a model a client holds, where, and its measured size."""

    provider: str
    model: str
    device: str
    nbytes: int


class ModelMemory:
    """Models loaded by a client's local backends, least recently used first, against a budget per device.

    Args:
        budget_gb: the budget for each device in GiB; "auto" (default) is 90 % of a GPU's memory or 80 % of the
            machine's RAM for CPU; "off" (or None) means no byte budget (only each backend's `max_loaded_models`).
    """

    def __init__(self, budget_gb: float | str | None = "auto") -> None:
        if budget_gb == "off":
            budget_gb = None
        if (
            budget_gb is not None
            and budget_gb != "auto"
            and not (isinstance(budget_gb, (int, float)) and budget_gb > 0)
        ):
            raise ConfigurationError(f"model_memory_gb must be a positive number, 'auto' or 'off', not {budget_gb!r}")
        self.budget_gb = budget_gb
        self._entries: OrderedDict[tuple[str, str], LoadedEntry] = OrderedDict()
        self._lock = threading.RLock()

    def budget(self, device: str) -> int | None:
        """The budget of a device in bytes, or None when unlimited."""
        if self.budget_gb is None:
            return None
        if self.budget_gb == "auto":
            share = 0.9 if device.startswith("cuda") else 0.8
            return int(device_memory(device) * share)
        return int(float(self.budget_gb) * GIB)

    def used(self, device: str) -> int:
        """Bytes the ledger holds on a device."""
        device = normalise_device(device)
        with self._lock:
            return sum(e.nbytes for e in self._entries.values() if e.device == device)

    def entries(self) -> list[LoadedEntry]:
        """Every loaded model, least recently used first."""
        with self._lock:
            return list(self._entries.values())

    def loaded(self) -> list[LoadedModelInfo]:
        """`entries` as the client reports them, least recently used first."""
        return [LoadedModelInfo(e.owner, e.key, e.device, e.nbytes) for e in self.entries()]

    def admit(self, owner: str, key: str, device: str, estimate: int) -> None:
        """Make room for a model about to load: evict least recently used models on its device until it fits.

        Raises ConfigurationError when the model alone is larger than the budget.
        """
        device = normalise_device(device)
        budget = self.budget(device)
        if budget is None:
            return
        if estimate > budget:
            raise ConfigurationError(
                f"{owner}:{key} needs about {estimate / GIB:.2f} GiB on {device}, more than the model memory "
                f"budget of {budget / GIB:.2f} GiB",
                hint="raise model_memory_gb in the config (or set it to 'auto')",
            )
        self._evict(device, budget - estimate, keep=(owner, key))

    def record(self, owner: str, key: str, device: str, nbytes: int, drop: Callable[[], None]) -> None:
        """A model has loaded: note its measured size, then evict others if the estimate was low."""
        device = normalise_device(device)
        with self._lock:
            self._entries[(owner, key)] = LoadedEntry(owner, key, device, nbytes, drop)
            self._entries.move_to_end((owner, key))
        budget = self.budget(device)
        if budget is not None:
            self._evict(device, budget - nbytes, keep=(owner, key))
            if nbytes > budget:
                log.warning(
                    "%s:%s takes %.2f GiB on %s, above the model memory budget of %.2f GiB",
                    owner,
                    key,
                    nbytes / GIB,
                    device,
                    budget / GIB,
                )

    def touch(self, owner: str, key: str) -> None:
        """A model was used: it becomes the most recently used."""
        with self._lock:
            if (owner, key) in self._entries:
                self._entries.move_to_end((owner, key))

    def forget(self, owner: str, key: str | None = None) -> None:
        """A backend dropped a model (or all of its models)."""
        with self._lock:
            for ident in [i for i in self._entries if i[0] == owner and (key is None or i[1] == key)]:
                del self._entries[ident]

    def _evict(self, device: str, allowed: int, *, keep: tuple[str, str]) -> None:
        """Drop least recently used models on `device` (never `keep`) until the rest use at most `allowed` bytes."""
        dropped: list[LoadedEntry] = []
        with self._lock:
            for ident, entry in list(self._entries.items()):
                if self.used(device) - (self._entries[keep].nbytes if keep in self._entries else 0) <= allowed:
                    break
                if entry.device != device or ident == keep:
                    continue
                del self._entries[ident]
                dropped.append(entry)
        for entry in dropped:
            log.info(
                "unloading %s:%s (%.2f GiB on %s) to stay within the model memory budget",
                entry.owner,
                entry.key,
                entry.nbytes / GIB,
                entry.device,
            )
            entry.drop()
        if dropped:
            gc.collect()
            if device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
