"""Streaming benchmarks (#24): time to first audio and the whole streamed call against the plain call, one run.

    python bench/run.py --only-stream

- synth: the first chunk of a 10-minute track, and the streamed whole against `generate`;
- full-size musicgen-small architecture (random weights), 10 s on this CPU: the first chunk as a share of the
  plain call's time (target <= 0.15) and the streamed total over the plain total (target <= 1.05), alternated;
- serve: the first byte of `GET .../stream` after the POST, against the library's first chunk (target <= 1.2x).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _first_and_total(make: Any) -> tuple[float, float, Any]:
    """Seconds to the first chunk and to the end of a stream made by `make()`, and its generation."""
    start = time.perf_counter()
    stream = make()
    first = None
    for _ in stream:
        if first is None:
            first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start, stream.generation


def synth_rows(rounds: int = 5) -> list[tuple[str, str, str]]:
    from soundforge.client import Client
    from soundforge.config import Config

    client = Client(Config.load(user_file=False))
    prompt = "upbeat house at 124 BPM in A minor"
    client.generate(prompt, provider="synth", duration=1, seed=1)  # warm the wavetables
    firsts, streamed, plain = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        stream = client.stream(prompt, provider="synth", duration=600, seed=1)
        next(stream)
        firsts.append(time.perf_counter() - start)
        stream.close()
    for _ in range(2):
        _, total, _ = _first_and_total(lambda: client.stream(prompt, provider="synth", duration=600, seed=1))
        streamed.append(total)
        start = time.perf_counter()
        client.generate(prompt, provider="synth", duration=600, seed=1)
        plain.append(time.perf_counter() - start)
    return [
        (
            "synth 10 min: first chunk (target <= 50 ms)",
            f"{statistics.median(firsts) * 1000:.1f} ms",
            f"median of {rounds}",
        ),
        (
            "synth 10 min: streamed whole / generate",
            f"{min(streamed) / min(plain):.2f}",
            f"{min(streamed):.2f} s streamed, {min(plain):.2f} s generate (best of 2)",
        ),
    ]


def musicgen_rows(seconds: float = 10.0, rounds: int = 2) -> tuple[list[tuple[str, str, str]], Path, float]:
    """The rows, the checkpoint folder and the library's median time to the first chunk (for the serve row)."""
    import numpy as np

    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.musicgen import build_musicgen, build_tokenizer

    sys.path.insert(0, str(Path(__file__).parent))
    from run import _on_engine_thread

    folder = Path(tempfile.mkdtemp(prefix="soundforge-bench-")) / "musicgen-small-random"
    _on_engine_thread(lambda: build_musicgen(folder, full_size=True))
    build_tokenizer(folder)
    prompt = "upbeat synthwave with drums and bass"
    client = Client(Config.load(user_file=False, providers={"musicgen": {"device": "cpu", "batching": False}}))
    spec = f"musicgen:{folder}"
    client.generate(prompt, provider=spec, duration=0.1, seed=0)  # load once, like a warm server
    plains, firsts, totals, gaps = [], [], [], []
    for _ in range(rounds):  # alternated, so neither side gets a warmer machine
        start = time.perf_counter()
        whole = client.generate(prompt, provider=spec, duration=seconds, seed=7)
        plains.append(time.perf_counter() - start)
        first, total, streamed = _first_and_total(
            lambda: client.stream(prompt, provider=spec, duration=seconds, seed=7)
        )
        firsts.append(first)
        totals.append(total)
        gaps.append(float(np.abs(streamed.audio - whole.audio).max()))
    plain, first, total = statistics.median(plains), statistics.median(firsts), statistics.median(totals)
    rows = [
        (
            f"musicgen-small arch {seconds:g} s: first chunk / plain call (target <= 0.15)",
            f"{first / plain:.3f}",
            f"first chunk after {first:.1f} s of a {plain:.1f} s call (medians of {rounds})",
        ),
        (
            f"musicgen-small arch {seconds:g} s: streamed total / plain call (target <= 1.05)",
            f"{total / plain:.3f}",
            f"{total:.1f} s streamed; largest sample difference from the plain call {max(gaps):.1e}",
        ),
    ]
    return rows, folder, first


def serve_row(folder: Path, seconds: float, library_first: float) -> tuple[str, str, str]:
    """POST a streamed job to `soundforge serve` (engine process) and time the first byte of its audio."""
    import httpx
    from served import soundforge_serve  # bench/ is on sys.path when these files run as scripts

    spec = f"musicgen:{folder}"
    with soundforge_serve() as url, httpx.Client(base_url=url, timeout=900) as http:
        warm = {"request": {"prompt": "warm", "duration": 0.1, "seed": 1}, "provider": spec}
        job = http.post("/v1/generations", json=warm).json()
        http.get(f"/v1/generations/{job['id']}", params={"wait": 60})  # the engine loads the model
        body = {
            "request": {"prompt": "synthwave", "duration": seconds, "seed": 7},
            "provider": spec,
            "stream": True,
        }
        start = time.perf_counter()
        job = http.post("/v1/generations", json=body).json()
        with http.stream("GET", job["stream_url"]) as streamed:
            for _ in streamed.iter_bytes():
                first_byte = time.perf_counter() - start
                break
    return (
        "serve: first byte of /stream after POST / the library's first chunk (target <= 1.2)",
        f"{first_byte / library_first:.2f}",
        f"{first_byte:.1f} s over HTTP, {library_first:.1f} s library",
    )


def stream_rows(seconds: float = 10.0) -> list[tuple[str, str, str]]:
    rows = synth_rows()
    musicgen, folder, first = musicgen_rows(seconds)
    return [*rows, *musicgen, serve_row(folder, seconds, first)]
