"""Coalescing of concurrent local requests into one engine batch.

The first request for a key becomes the leader: it waits up to `window` seconds (or until `max_batch`
outputs are queued) for compatible requests from other threads, runs them as one batch, and hands each
caller its own results. Requests with different keys never share a batch. A failure of the batch reaches
every caller in it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")


@dataclass
class _Pending(Generic[I, R]):
    items: list[I] = field(default_factory=list)
    futures: list[Future[R]] = field(default_factory=list)
    size: int = 0
    full: threading.Event = field(default_factory=threading.Event)


class Batcher(Generic[I, R]):
    """Groups items by key within a short window and runs each group with `run_batch(items) -> results`."""

    def __init__(self, run_batch: Callable[[list[I]], list[R]], *, window: float, max_batch: int) -> None:
        self._run_batch = run_batch
        self.window = window
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._open: dict[object, _Pending[I, R]] = {}

    def submit(self, key: object, item: I, size: int = 1) -> R:
        """Add `item` (worth `size` outputs) to the open batch for `key` and wait for its result."""
        future: Future[R] = Future()
        with self._lock:
            pending = self._open.get(key)
            leader = pending is None or pending.size + size > self.max_batch
            if leader:
                if pending is not None:
                    pending.full.set()
                pending = self._open[key] = _Pending()
            assert pending is not None
            pending.items.append(item)
            pending.futures.append(future)
            pending.size += size
            if pending.size >= self.max_batch:
                pending.full.set()
        if leader:
            pending.full.wait(self.window)
            with self._lock:
                if self._open.get(key) is pending:
                    del self._open[key]
            self._execute(pending)
        return future.result()

    def _execute(self, pending: _Pending[I, R]) -> None:
        try:
            results = self._run_batch(pending.items)
        except BaseException as exc:  # every caller of the batch gets the failure
            for future in pending.futures:
                future.set_exception(exc)
            return
        for future, result in zip(pending.futures, results, strict=True):
            future.set_result(result)
