"""One long-lived thread per device runs every local engine's torch work (loads and generation).

Why: torch's CPU kernels run on OpenMP, and GNU OpenMP keeps a team of worker threads for each thread that calls
into it. Once two threads own teams, the process manages more OpenMP threads than there are cores, and libgomp
stops spinning at its barriers and sleeps on futexes instead: every small kernel then pays a wake-up. Measured on a
2-core CPU with the full-size MusicGen-small architecture: one batched `generate` took 11.0 s from the main thread
and 17.2 s from a second thread once the main thread had run torch (asyncio's worker threads are such threads).
Sending every load and generation to one thread keeps a single team whatever thread the caller is on, and
serialises the engines' use of torch's global RNG as a side effect. (docs/performance.md has the numbers.)

Work on the thread of another device (a second GPU) runs concurrently with it; work for the same device queues.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_executors: dict[str, ThreadPoolExecutor] = {}
_local = threading.local()


def device_key(device: str | None) -> str:
    """Devices that share a thread: every CPU request on one, `cuda` and `cuda:0` on another, and so on."""
    name = (device or "cpu").lower()
    if name == "cuda":
        return "cuda:0"
    return name


def run_on_device_thread(device: str | None, fn: Callable[[], T]) -> T:
    """Run `fn()` on `device`'s compute thread and return its result (or raise its exception) to the caller.

    Called from that thread already (an engine loading a model inside its own generation), `fn` runs inline.
    """
    key = device_key(device)
    if getattr(_local, "device", None) == key:
        return fn()
    with _lock:
        executor = _executors.get(key)
        if executor is None:
            executor = _executors[key] = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"soundforge-{key.replace(':', '')}",
                initializer=_mark, initargs=(key,))
    return executor.submit(fn).result()


def _mark(key: str) -> None:
    _local.device = key
