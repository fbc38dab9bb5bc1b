"""Several engine processes behind one server (`[serve] engines`): one per device, or N on a CPU.

Each engine is a `ProcessEngine` with its own client, model cache and memory budget (the budget is per device,
so two engines given one GPU would each plan for all of it: give each engine its own device). A job goes to an
engine that already holds its model (the provider and model the router picks), so concurrent requests for one
model still meet in one engine's batching; once that engine has `capacity` jobs, the next goes to the least busy
engine, which then holds the model too. An engine that dies fails only its own running jobs and is started again
by its next job, as a single engine is; what it held is forgotten.

Which models an engine holds is what this side sent it: a model its memory budget evicted is still counted as
held until the engine dies. That only costs a reload, never a wrong result.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from ..backends import CancelToken
from ..errors import ConfigurationError
from .engine import ChunkFn, InlineEngine, JobOutcome, JobSpec, ProcessEngine, ProgressFn, create_engine

if TYPE_CHECKING:
    from ..client import Client


class EnginePool:
    """Runs each job on one of several engine processes, placed by the model it needs and how busy they are."""

    mode = "process"

    def __init__(self, engines: list[ProcessEngine], capacity: int) -> None:
        if not engines:
            raise ValueError("a pool needs at least one engine")
        self.engines = engines
        self.capacity = max(1, capacity)
        self._load = [0] * len(engines)
        self._held: list[set[str]] = [set() for _ in engines]
        self._where: dict[str, int] = {}

    @property
    def pid(self) -> int | None:
        """The first engine's process id (as a single engine reports it); `pids` has them all."""
        return self.engines[0].pid

    @property
    def pids(self) -> list[int | None]:
        """Each engine's process id while it runs."""
        return [engine.pid for engine in self.engines]

    @property
    def devices(self) -> list[str | None]:
        """The device each engine was given (None: the configured devices)."""
        return [engine.device for engine in self.engines]

    def loads(self) -> list[int]:
        """Jobs running on each engine now."""
        return list(self._load)

    async def start(self) -> None:
        """Start every engine process."""
        for engine in self.engines:
            await engine.start()

    def place(self, key: str) -> int:
        """The engine for a job needing `key`: the least busy of those holding it with room, else the least busy
        (holding it wins a tie)."""
        holders = [i for i, held in enumerate(self._held) if key in held and self._load[i] < self.capacity]
        if holders:
            return min(holders, key=lambda i: self._load[i])
        return min(range(len(self.engines)), key=lambda i: (self._load[i], key not in self._held[i]))

    async def run(
        self, spec: JobSpec, token: CancelToken, on_progress: ProgressFn, on_chunk: ChunkFn | None = None
    ) -> JobOutcome:
        """Run one job on the engine `place` picks for the model admission planned (`spec.target`); never raises
        for the job's own failures. Placing synchronously keeps concurrent jobs in submission order."""
        job_id, key = spec.job_id, spec.target
        index = self.place(key)
        self._load[index] += 1
        self._held[index].add(key)
        self._where[job_id] = index
        try:
            engine = self.engines[index]
            outcome = await engine.run(spec, token, on_progress, on_chunk)
        finally:
            self._load[index] -= 1
            self._where.pop(job_id, None)
        if outcome.error is not None and outcome.error.get("code") == "engine_stopped":
            self._held[index].clear()  # a fresh process holds nothing
        return dataclasses.replace(outcome, engine=index)

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop, on the engine that runs it."""
        index = self._where.get(job_id)
        if index is not None:
            self.engines[index].cancel(job_id)

    async def close(self) -> None:
        """Stop every engine process."""
        for engine in self.engines:
            await engine.close()


def create_engines(
    client: Client, mode: str, engines: tuple[str | None, ...], workers: int
) -> InlineEngine | ProcessEngine | EnginePool:
    """The engine the server runs jobs on: one (`create_engine`) for a single entry in `[serve] engines`, else a
    pool of engine processes, one per entry, each taking its share of `workers` before another is preferred."""
    if len(engines) == 1:
        return create_engine(client, mode, engines[0])
    # Engines on the CPU share its cores: each gets its share for its math libraries, or their threads would
    # oversubscribe the cores (torch's spinning threads made two engines 10x slower than one on 2 cores).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    on_cpu = sum(1 for device in engines if device is None or device == "cpu")
    share = max(1, cores // on_cpu) if on_cpu else None
    members = [
        create_engine(client, mode, device, share if device is None or device == "cpu" else None) for device in engines
    ]
    processes = [m for m in members if isinstance(m, ProcessEngine)]
    if len(processes) != len(members):
        raise ConfigurationError(
            '[serve] engines starts one engine process per entry: it needs engine = "process" (or "auto" on Linux '
            "and macOS)"
        )
    return EnginePool(processes, max(1, workers // len(engines)))
