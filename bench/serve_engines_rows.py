"""`soundforge serve` with one engine process against two (#26), on this machine, in one run.

    python bench/serve_engines_rows.py

Each row starts `soundforge serve --workers 4 --engines N` as its own process, warms each engine with one job,
then submits 8 jobs at once and downloads each (one waiting GET): 2 s `synth` jobs, and 2 s jobs of a tiny
random-weight MusicGen folder (`soundforge.testing.musicgen`, the small test shape: the engine's Python and
torch overheads, not a real model's compute). Jobs per second with one engine and with two; the ratio is the
throughput gain of the second engine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def _served_seconds(engines: int, spec: str, jobs: int, seconds: float) -> float:
    from served import soundforge_serve, submit_and_download  # bench/ is on sys.path when run as a script

    def bodies(duration: float) -> list[dict[str, object]]:
        request = {"prompt": "lofi piano", "duration": duration}
        return [{"request": {**request, "seed": seed}, "provider": spec} for seed in range(jobs)]

    with soundforge_serve("--workers", "4", "--engines", str(engines)) as url:
        submit_and_download(url, bodies(1.0))  # every engine loads what it needs once, like a warm server
        return submit_and_download(url, bodies(seconds))


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
