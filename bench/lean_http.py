"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for the serve benchmark only.

The benchmark client shares the machine's cores with the server. httpx spends about 2.5 ms of CPU per request
on this 2-core machine (measured with `bench/run.py`'s serve section), three times what the server spends
answering it, so with httpx the client's own work shows up as "service overhead". This client does only what
the benchmark needs: JSON bodies, Content-Length framing, one connection per concurrent request, reused.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class LeanHTTP:
    """Requests to one host over a pool of idle keep-alive connections (one per concurrent request)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Send one request; returns the status code and the whole response body."""
        reader, writer = self._idle.pop() if self._idle else await asyncio.open_connection(self.host, self.port)
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(data)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        writer.write(head.encode() + b"\r\n" + data)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("LeanHTTP reads Content-Length bodies only")
        payload = await reader.readexactly(length)
        self._idle.append((reader, writer))
        return status, payload

    async def aclose(self) -> None:
        """Close every idle connection."""
        for _, writer in self._idle:
            writer.close()
            await writer.wait_closed()
        self._idle.clear()
