"""`soundforge serve` with one engine process against two (#26), on this machine, in one run.

    python bench/serve_engines_rows.py

Each row starts `soundforge serve --workers 4 --engines N` as its own process, warms each engine with one job,
then submits 8 jobs at once and downloads each (one waiting GET): 2 s `synth` jobs, and 2 s jobs of a tiny
random-weight MusicGen folder (`soundforge.testing.musicgen`, the small test shape: the engine's Python and
torch overheads, not a real model's compute). Jobs per second with one engine and with two; the ratio is the
throughput gain of the second engine.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _served_seconds(engines: int, spec: str, jobs: int, seconds: float) -> float:
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = str(Path(sys.executable).with_name("soundforge"))
    command = [exe, "serve", "--port", str(port), "--store", tempfile.mkdtemp(), "--workers", "4"]
    env = {**os.environ, "SOUNDFORGE_MUSICGEN_DEVICE": "cpu"}
    server = subprocess.Popen(
        [*command, "--engines", str(engines)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"

    async def run(count: int, duration: float) -> float:
        async with httpx.AsyncClient(base_url=url, timeout=600) as http:

            async def one(seed: int) -> None:
                body = {"request": {"prompt": "lofi piano", "duration": duration, "seed": seed}, "provider": spec}
                job = (await http.post("/v1/generations", json=body)).json()
                (await http.get(f"/v1/generations/{job['id']}/audio", params={"wait": 60})).raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(one(seed) for seed in range(count)))
            return time.perf_counter() - start

    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        asyncio.run(run(jobs, 1.0))  # every engine loads what it needs once, like a warm server
        return asyncio.run(run(jobs, seconds))
    finally:
        server.terminate()
        server.wait(30)


def rows(jobs: int = 8, seconds: float = 2.0) -> list[tuple[str, str, str]]:
    from soundforge.testing.musicgen import build_musicgen

    folder = Path(tempfile.mkdtemp()) / "tiny-musicgen"
    build_musicgen(folder)
    out = []
    for label, spec in (("synth", "synth"), ("tiny MusicGen", f"musicgen:{folder}")):
        one = _served_seconds(1, spec, jobs, seconds)
        two = _served_seconds(2, spec, jobs, seconds)
        out.append(
            (
                f"{jobs} x {seconds:.0f} s {label} jobs: jobs/s with 1 engine, 2 engines",
                f"{jobs / one:.2f}, {jobs / two:.2f}",
                f"{one / two:.2f}x throughput ({one:.2f} s, {two:.2f} s)",
            )
        )
    return out


if __name__ == "__main__":
    for row in rows():
        print(" | ".join(row))
