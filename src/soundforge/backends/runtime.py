"""The runtime helpers a local engine is built from, public for engines in this package and in plug-ins.

- `run_on_device_thread(device, fn)` (and `submit_on_device_thread`, its future): run torch work on the one compute
  thread of its device (OpenMP teams stay per thread, docs/performance.md). `TORCH_RNG_LOCK`: held from seeding
  torch's global generator to the end of sampling, so seeds mean the same thing whatever else runs.
- `ModelCache`: loaded models per key, with load timing and the memory ledger.
- `ModelMemory`: the per-device memory budget the client keeps for every loaded model; `weights_on_disk` (the
  estimate before a load) and `module_bytes` (what a loaded model holds) feed it.
- `Batcher`: coalesce concurrent compatible requests into one engine call.
- `resolve_checkpoint`, `checkpoint_availability`, `files_availability`, `revision`: weights from a folder or
  the Hugging Face cache, with the errors that say how to get them (`HF_HUB_OFFLINE` honoured); `looks_like_path`
  (a folder, not a hub id) and `offline` (downloads are off).
- `pick_device`, `pick_dtype`: the `device` / `dtype` settings turned into torch's.
- `missing_modules`: which of an engine's packages are not installed (asked without importing them).
"""

from __future__ import annotations

from ._batching import Batcher
from ._compute import run_on_device_thread, submit_on_device_thread
from ._hub import (
    TORCH_RNG_LOCK,
    WEIGHT_PATTERNS,
    ModelCache,
    checkpoint_availability,
    files_availability,
    find_model_card,
    looks_like_path,
    offline,
    pick_device,
    pick_dtype,
    resolve_checkpoint,
    revision,
)
from ._installed import missing_modules
from ._memory import LoadedModelInfo, ModelMemory, module_bytes, weights_on_disk

__all__ = [
    "TORCH_RNG_LOCK",
    "WEIGHT_PATTERNS",
    "Batcher",
    "LoadedModelInfo",
    "ModelCache",
    "ModelMemory",
    "checkpoint_availability",
    "files_availability",
    "find_model_card",
    "looks_like_path",
    "missing_modules",
    "module_bytes",
    "offline",
    "pick_device",
    "pick_dtype",
    "resolve_checkpoint",
    "revision",
    "run_on_device_thread",
    "submit_on_device_thread",
    "weights_on_disk",
]
