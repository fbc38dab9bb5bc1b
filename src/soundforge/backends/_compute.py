"""One long-lived thread per device runs every local engine's torch work (loads and generation).

Why: torch's CPU kernels run on OpenMP, and GNU OpenMP keeps a team of worker threads for each thread that calls
into it. Once two threads own teams, the process manages more OpenMP threads than there are cores, and libgomp
stops spinning at its barriers and sleeps on futexes instead: every small kernel then pays a wake-up. Measured on a
2-core CPU with the full-size MusicGen-small architecture: one batched `generate` took 11.0 s from the main thread
and 17.2 s from a second thread once the main thread had run torch (asyncio's worker threads are such threads).
Sending every load and generation to one thread keeps a single team whatever thread the caller is on, and
serialises the engines' use of torch's global RNG as a side effect. (docs/performance.md has the numbers.)

Work on the thread of another device (a second GPU) runs concurrently with it; work for the same device queues.

`cpu_bound_pool()` is the other shared pool: one thread per core for backends whose generation is Python and
numpy holding the GIL (`Backend.cpu_bound`, the synthesizer).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_executors: dict[str, ThreadPoolExecutor] = {}
_local = threading.local()
_cpu_bound: ThreadPoolExecutor | None = None


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
    if getattr(_local, "device", None) == device_key(device):
        return fn()
    return submit_on_device_thread(device, fn).result()


def submit_on_device_thread(device: str | None, fn: Callable[[], T]) -> Future[T]:
    """Queue `fn()` on `device`'s compute thread and return at once (a stream reads what it makes meanwhile)."""
    key = device_key(device)
    with _lock:
        executor = _executors.get(key)
        if executor is None:
            executor = _executors[key] = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"soundforge-{key.replace(':', '')}",
                initializer=_mark,
                initargs=(key,),
            )
    return executor.submit(fn)


def _mark(key: str) -> None:
    _local.device = key


def _forget_after_fork() -> None:
    """A forked child inherits the pools but not their threads: start fresh ones there when needed."""
    global _lock, _cpu_bound
    _lock = threading.Lock()
    _executors.clear()
    _cpu_bound = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def cpu_bound_pool() -> ThreadPoolExecutor:
    """The process's pool for GIL-holding CPU work: as many threads as cores this process may use.

    Measured on 2 cores, 96 `synth` jobs of 2 s at concurrency 16 through `agenerate`: asyncio's default
    executor (6 threads) ran 35-42 jobs/s, this pool (2 threads) 54-59 jobs/s, alternated in one process.
    """
    global _cpu_bound
    with _lock:
        if _cpu_bound is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            _cpu_bound = ThreadPoolExecutor(max_workers=max(1, cores), thread_name_prefix="soundforge-render")
        return _cpu_bound
