"""The per-device compute thread that every local engine's torch work goes through."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from soundforge.backends import run_on_device_thread
from soundforge.backends._compute import device_key


def test_every_caller_reaches_the_same_thread_and_gets_its_own_result() -> None:
    with ThreadPoolExecutor(4) as pool:
        seen = list(
            pool.map(lambda i: run_on_device_thread("cpu", lambda: (i, threading.current_thread().name)), range(8))
        )
    assert [i for i, _ in seen] == list(range(8))
    assert {name for _, name in seen} == {"soundforge-cpu_0"}
    assert threading.current_thread().name != "soundforge-cpu_0"


def test_exceptions_reach_the_caller() -> None:
    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        run_on_device_thread("cpu", fail)
    assert run_on_device_thread("cpu", lambda: 3) == 3  # the thread survives a failure


def test_nested_calls_run_inline_and_devices_get_their_own_threads() -> None:
    def outer() -> tuple[str, str, str]:
        here = threading.current_thread().name
        inner = run_on_device_thread("cpu", lambda: threading.current_thread().name)  # would deadlock if queued
        other = run_on_device_thread("cuda", lambda: threading.current_thread().name)
        return here, inner, other

    here, inner, other = run_on_device_thread("CPU", outer)
    assert here == inner == "soundforge-cpu_0"
    assert other == "soundforge-cuda0_0"
    assert device_key("cuda") == device_key("cuda:0") == "cuda:0" and device_key(None) == "cpu"


def test_cpu_bound_backends_run_async_work_on_one_thread_per_core() -> None:
    """`synth` (Backend.cpu_bound) renders on the per-core pool, not on asyncio's larger default executor; the
    audio is the same as a blocking call's."""
    import asyncio
    import os

    from soundforge.backends._compute import cpu_bound_pool
    from soundforge.client import Client
    from soundforge.config import Config

    client = Client(Config.load(user_file=False))
    names: set[str] = set()

    def record(event) -> None:
        names.add(threading.current_thread().name)

    async def run():
        return await asyncio.gather(
            *(client.agenerate("house", provider="synth", duration=1.0, seed=i, on_progress=record) for i in range(6))
        )

    results = asyncio.run(run())
    assert names and all(name.startswith("soundforge-render") for name in names)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpu_bound_pool()._max_workers == cores
    blocking = client.generate("house", provider="synth", duration=1.0, seed=3)
    assert results[3].audio.tobytes() == blocking.audio.tobytes()


def test_a_forked_child_gets_its_own_compute_thread() -> None:
    """The parent's thread does not exist in a forked child; work there must not wait for it forever."""
    import multiprocessing
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    run_on_device_thread("cpu", lambda: None)  # the parent's thread exists before the fork
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        assert pool.apply_async(run_on_device_thread, ("cpu", os.getpid)).get(timeout=30) != os.getpid()
