"""How one row becomes one delivered file: the executor contract, the shared `produce`, and the local executor.

Its own module so that the driver (`runner`) and the Ray executor (`ray_runner`) both depend on it and not on
each other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from ..client import Client, build_request
from ..errors import SoundforgeError
from ..run.steps import takes_cost
from .manifest import BatchRow
from .output import OutputLocation, deliver, delivered


@dataclass(frozen=True)
class Target:
    """Where the router sends a row: provider, model, and whether it runs on local compute."""

    provider: str
    model: str
    local: bool


@dataclass(frozen=True)
class Outcome:
    """What became of one row on a worker: its file and licence, or the error that stopped it."""

    file: str | None = None
    license: str | None = None
    error: str | None = None
    reused: bool = False  # the file was already there and verified: nothing was generated
    cost: float | None = None  # what the generation cost, when its price is known


log = logging.getLogger("soundforge.batch")


class Executor(Protocol):
    """Turns rows into delivered files; `run` never raises for a row's own failure (it returns an Outcome)."""

    async def run(self, row: BatchRow, spec: str | None, target: Target) -> Outcome: ...

    def close(self) -> None: ...


async def produce(client: Client, row: BatchRow, spec: str | None, out: OutputLocation, sign: Any) -> Outcome:
    """Generate one row and deliver its file; a row whose file already verifies is not generated again.

    Shared by every executor, so a retried row (a Ray worker that died mid-row) costs nothing twice.
    """
    if await asyncio.to_thread(delivered, row, out):
        return Outcome(file=row.file_name, reused=True)
    try:
        generation = await client.agenerate(build_request(row.request, {}), provider=spec)
        file = await asyncio.to_thread(deliver, generation.tracks, row, out, sign)
    except SoundforgeError as exc:
        return Outcome(error=str(exc))
    except OSError as exc:  # a full disk, a folder made read-only: this row fails, the run goes on
        return Outcome(error=f"cannot write {row.file_name}: {exc.strerror or exc}")
    except Exception as exc:  # a bug met by one row fails that row, logged with its traceback; the run goes on
        log.exception("row %s (%s) failed unexpectedly", row.line, row.name)
        return Outcome(error=f"unexpected {type(exc).__name__}: {exc} (a soundforge bug: please report it)")
    spent = takes_cost(generation.provenance.model_dump(mode="json"))  # every take quality="retry" paid for
    cost = spent.amount if spent is not None else None
    # A row with stems answers to the stems' licence: the track's terms and the separator's.
    license = generation.tracks[-1].license if row.request.stems else generation.license
    return Outcome(file=file, license=license.id, cost=cost)


class LocalExecutor:
    """Rows on this machine, through the client's async path (its batching of local models, its cloud bounds)."""

    def __init__(self, client: Client, out: OutputLocation) -> None:
        self.client = client
        self.out = out
        self.sign = client.config.c2pa_signer()

    async def run(self, row: BatchRow, spec: str | None, target: Target) -> Outcome:
        """Generate and deliver one row."""
        return await produce(self.client, row, spec, self.out, self.sign)

    def close(self) -> None:
        """Nothing to release: the client belongs to the caller."""
