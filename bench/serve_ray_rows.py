"""`soundforge serve --ray` against the single-process server (#26), on this machine, in one run.

    python bench/serve_ray_rows.py

Each row starts its server as its own process, warms it with one round of jobs, then submits N jobs at once and
downloads each (one waiting GET), all 2 s `synth` jobs:
- the Ray path's overhead: `serve --ray local` (a Ray cluster started by the server, one engine replica), with
  HTTP through Ray Serve's proxy and with `[serve.ray] http = "direct"`, against `serve` (one engine process),
  8 jobs at once and 1 job alone; the ratio is Ray's wall time over the server's;
- beside it, what a second engine gives on each path: `serve --engines 2`, and `serve --ray` with two replicas.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def _ray_config(replicas: int, http: str = "proxy") -> str:
    path = Path(tempfile.mkdtemp()) / "soundforge.toml"
    path.write_text(
        f'[serve.ray]\nhttp = "{http}"\n[serve.ray.engines.default]\nreplicas = {replicas}\nnum_cpus = 0.5\n'
    )
    return str(path)


def _seconds(args: tuple[str, ...], config: str | None, jobs: int) -> float:
    from served import soundforge_serve, submit_and_download  # bench/ is on sys.path when run as a script

    bodies = [{"request": {"prompt": "lofi piano", "duration": 2, "seed": s}, "provider": "synth"} for s in range(jobs)]
    with soundforge_serve("--workers", "8", *args, config=config) as url:
        submit_and_download(url, bodies)  # warm: the engines have started and rendered once
        return min(submit_and_download(url, bodies) for _ in range(3))


def rows(jobs: int = 8) -> list[tuple[str, str, str]]:
    out = []
    for count in (jobs, 1):
        alone = _seconds((), None, count)
        proxy = _seconds(("--ray", "local"), _ray_config(1), count)
        direct = _seconds(("--ray", "local"), _ray_config(1, "direct"), count)
        out.append(
            (
                f"{count} x 2 s synth job(s): serve --ray over serve (wall; Ray's proxy, http = direct)",
                f"{proxy / alone:.2f}x, {direct / alone:.2f}x",
                f"{alone:.3f} s single process, {proxy:.3f} s proxy, {direct:.3f} s direct",
            )
        )
    one = _seconds((), None, jobs)
    two = _seconds(("--engines", "2"), None, jobs)
    ray_one = _seconds(("--ray", "local"), _ray_config(1, "direct"), jobs)
    ray_two = _seconds(("--ray", "local"), _ray_config(2, "direct"), jobs)
    out.append(
        (
            f"{jobs} x 2 s synth jobs: throughput of a second engine (serve --engines 2; --ray direct, 2 replicas)",
            f"{one / two:.2f}x, {ray_one / ray_two:.2f}x",
            f"serve {one:.3f} -> {two:.3f} s; ray {ray_one:.3f} -> {ray_two:.3f} s",
        )
    )
    return out


if __name__ == "__main__":
    for row in rows():
        print(" | ".join(row))
