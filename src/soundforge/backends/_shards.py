"""One provider's connections on one event loop, as a few small httpx clients used in turn instead of one large one.

httpcore's connection pool, on every request queued or finished, walks all its connections and asks each idle one
whether its socket has expired (a poll and a getpeername system call each): the work per request grows with the
pool, and 200 concurrent cloud jobs over 32 connections spent most of the client's CPU there (bench/run.py's cloud
fan-out row; upstream: encode/httpcore#924 and #1035, open). Pools of at most `SHARD_CONNECTIONS` connections,
taken in turn, keep that walk short; together they hold the same number of connections.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

#: Connections per httpx client at most.
SHARD_CONNECTIONS = 8


class ClientShards:
    """`max_connections` connections split over ceil(max_connections / SHARD_CONNECTIONS) httpx clients."""

    def __init__(self, make: Callable[[int], Any], max_connections: int) -> None:
        count = max(1, math.ceil(max_connections / SHARD_CONNECTIONS))
        per_client = max(1, math.ceil(max_connections / count))
        self.clients = [make(per_client) for _ in range(count)]
        self._turn = itertools.cycle(self.clients)

    def next(self) -> Any:
        """The client for the next request (in turn: requests spread evenly over the pools)."""
        return next(self._turn)

    @property
    def is_closed(self) -> bool:
        """Whether every client's connections are closed."""
        return all(client.is_closed for client in self.clients)

    async def aclose(self) -> None:
        """Close every client's connections."""
        for client in self.clients:
            await client.aclose()
