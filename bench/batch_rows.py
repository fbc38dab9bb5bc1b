"""Batch benchmarks (part of bench/run.py): local runner vs Ray runner vs a plain loop, journal cost, resume start."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path


class _FirstGeneration(BaseException):
    """Stops the resume benchmark at its first new generation."""


def _manifest(folder: Path, rows: int, seconds: float) -> Path:
    path = folder / f"m{rows}.jsonl"
    with path.open("w") as handle:
        for i in range(rows):
            handle.write(
                json.dumps(
                    {
                        "name": f"r{i:05d}",
                        "prompt": f"synthwave {80 + i % 60} BPM",
                        "seed": i,
                        "duration": seconds,
                        "provider": "synth",
                    }
                )
                + "\n"
            )
    return path


def batch_rows(rows: int = 200, seconds: float = 5.0, resume_rows: int = 10_000) -> list[tuple[str, str, str]]:
    """200 synth rows of 5 s three ways, the journal's cost per row, and how soon a 10 000-row resume starts."""
    import ray

    from soundforge.bulk import Journal, abatch, batch, load_manifest
    from soundforge.client import Client
    from soundforge.config import Config

    work = Path(tempfile.mkdtemp(prefix="soundforge-bench-batch-"))
    client = Client(Config.load(user_file=False))
    manifest = _manifest(work, rows, seconds)
    parsed = load_manifest(manifest)

    client.generate("warm up", provider="synth", duration=1, seed=0)
    start = time.perf_counter()
    for row in parsed:  # what a user writes without soundforge.batch
        track = client.generate(row.request, provider="synth").tracks[0]
        track.save(work / "loop" / row.file_name)
    t_loop = time.perf_counter() - start

    t_local = batch(manifest, work / "local", client=client, concurrency=4).seconds

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024 * 1024)
    try:
        # Workers start and import soundforge once before the timed run.
        batch(_manifest(work, 4, 1.0), work / "ray-warm", client=client, ray="auto", ray_workers=2)
        t_ray = batch(manifest, work / "ray", client=client, concurrency=8, ray="auto", ray_workers=2).seconds
    finally:
        ray.shutdown()
    start = time.perf_counter()
    t_ray_cold = batch(manifest, work / "ray-cold", client=client, concurrency=8, ray="local", ray_workers=2).seconds
    t_ray_cold_wall = time.perf_counter() - start

    # The journal alone: what a row costs in bookkeeping (two committed writes: running, done).
    journal = Journal(work / "journal-bench.sqlite")
    start = time.perf_counter()
    for i in range(2000):
        journal.mark(f"row{i}", "f" * 16, "running")
        journal.mark(f"row{i}", "f" * 16, "done", output=f"row{i}.wav", license="CC0-1.0")
    t_journal = (time.perf_counter() - start) / 2000
    journal.close()

    # Resume of a half-finished 10 000-row run: time until the first new row's generation starts.
    big = _manifest(work, resume_rows, seconds)
    resume_out = work / "resume"
    resume_out.mkdir()
    journal = Journal(resume_out / ".soundforge-batch.sqlite")
    for row in load_manifest(big)[: resume_rows // 2]:
        journal.mark(row.name, row.fingerprint, "done", output=row.file_name, license="CC0-1.0")
    journal.close()
    first: list[float] = []
    original = client.agenerate

    async def record_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        first.append(time.perf_counter())
        raise _FirstGeneration

    client.agenerate = record_first  # type: ignore[method-assign]
    start = time.perf_counter()
    try:
        asyncio.run(abatch(big, resume_out, client=client, resume=True))
    except _FirstGeneration:
        pass
    finally:
        client.agenerate = original  # type: ignore[method-assign]
    t_resume = first[0] - start
    client.close()
    shutil.rmtree(work, ignore_errors=True)
    return [
        (f"batch {rows} synth rows x {seconds:g} s: plain loop", f"{rows / t_loop:.1f} rows/s", f"{t_loop:.2f} s"),
        ("  local runner (concurrency 4) / loop, wall", f"{t_local / t_loop:.3f}", f"{t_local:.2f} s"),
        ("  Ray runner (2 workers, cluster up) / loop, wall", f"{t_ray / t_loop:.3f}", f"{t_ray:.2f} s"),
        (
            "  Ray runner incl. starting a local cluster / loop",
            f"{t_ray_cold_wall / t_loop:.3f}",
            f"{t_ray_cold_wall:.2f} s ({t_ray_cold:.2f} s in batch)",
        ),
        ("journal cost per row (target < 2 ms)", f"{t_journal * 1000:.2f} ms", "running + done, WAL"),
        (
            f"resume of {resume_rows} rows, half done: first new generation (target < 2 s)",
            f"{t_resume:.2f} s",
            "manifest + policy check + journal",
        ),
    ]


if __name__ == "__main__":
    for name, ratio, detail in batch_rows():
        print(f"{name:<70}  {ratio:>14}  {detail}")
