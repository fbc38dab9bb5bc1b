"""`soundforge serve` in its own process on a free loopback port, for the bench scripts that measure it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def soundforge_serve(*args: str, env: dict[str, str] | None = None, config: str | None = None) -> Iterator[str]:
    """Start `soundforge [--config CONFIG] serve ARGS` (its own job store, local models on the CPU), wait until
    /healthz answers, yield its base URL; stop it after the block (Ctrl+C, which `serve --ray` undeploys on)."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = str(Path(sys.executable).with_name("soundforge"))
    command = [
        exe,
        *(["--config", config] if config else []),
        "serve",
        "--port",
        str(port),
        "--store",
        tempfile.mkdtemp(),
    ]
    command += args
    environment = {**os.environ, "SOUNDFORGE_MUSICGEN_DEVICE": "cpu", **(env or {})}
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(3000):  # a Ray cluster takes some seconds to start
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def submit_and_download(url: str, bodies: list[dict[str, object]]) -> float:
    """Submit every job body at once and download each result (one waiting GET); returns the wall seconds."""
    import asyncio

    import httpx

    async def run() -> float:
        async with httpx.AsyncClient(base_url=url, timeout=600) as http:

            async def one(body: dict[str, object]) -> None:
                job = (await http.post("/v1/generations", json=body)).json()
                (await http.get(f"/v1/generations/{job['id']}/audio", params={"wait": 60})).raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(one(body) for body in bodies))
            return time.perf_counter() - start

    return asyncio.run(run())
