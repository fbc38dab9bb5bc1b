"""Several engine processes behind one server (`[serve] engines`, soundforge.serve.pool): jobs spread over the
engines and stay with the one holding their model up to its share of the workers, each engine gets its device, a
killed engine fails only its own job and comes back, settings and CLI parsing."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")

from soundforge.backends import ENGINE_DEVICE_ENV
from soundforge.client import Client
from soundforge.config import Config, ServeConfig
from soundforge.errors import ConfigurationError
from soundforge.serve.pool import EnginePool, create_engines
from soundforge.serve.settings import ServeSettings

from .test_app import serving, wait

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads engine environments from /proc")


LONG = {"request": {"prompt": "drone", "duration": 600, "channels": 1, "sample_rate": 22050}, "provider": "synth"}


def submit(http: httpx.Client, seconds: float = 1, seed: int = 1) -> str:
    body = {"request": {"prompt": "lofi", "duration": seconds, "seed": seed}, "provider": "synth"}
    return str(http.post("/v1/generations", json=body).json()["id"])


def until_running(http: httpx.Client, *jobs: str) -> None:
    deadline = time.monotonic() + 60
    while any(http.get(f"/v1/generations/{job}").json()["status"] != "running" for job in jobs):
        assert time.monotonic() < deadline, "the jobs did not start"
        time.sleep(0.01)


def two_long_jobs_on_two_engines(http: httpx.Client, pool: EnginePool) -> list[str]:
    """Two long jobs at once: with one job of room per engine, the second goes to the other engine."""
    jobs = [str(http.post("/v1/generations", json=LONG).json()["id"]) for _ in range(2)]
    until_running(http, *jobs)
    # A job is "running" once its engine has it; an engine started again for it (after one was killed) has its
    # process a moment later: wait for that, on a deadline.
    deadline = time.monotonic() + 60
    while None in pool.pids:
        assert time.monotonic() < deadline, f"an engine did not start: {pool.pids}"
        time.sleep(0.01)
    assert pool.loads() == [1, 1]
    return jobs


def test_engines_setting_is_a_count_or_devices() -> None:
    assert ServeSettings.from_config(ServeConfig(), store="s").engines == (None,)
    assert ServeSettings.from_config(ServeConfig(engines=3), store="s").engines == (None, None, None)
    both = ServeSettings.from_config(ServeConfig(engines=("cuda:0", "cuda:1")), store="s")
    assert both.engines == ("cuda:0", "cuda:1")
    assert ServeSettings.from_config(ServeConfig(engines=3), store="s", engines=("cpu",)).engines == ("cpu",)
    for bad in (0, (), ("",)):
        with pytest.raises(ValueError):
            ServeConfig(engines=bad)
    client = Client(Config.load(user_file=False))
    with pytest.raises(ConfigurationError, match="engine process"):
        create_engines(client, "inline", (None, None), 4)
    pool = create_engines(client, "process", ("cpu", None), 4)
    assert isinstance(pool, EnginePool) and pool.devices == ["cpu", None] and pool.capacity == 2


def test_a_model_stays_on_the_engine_holding_it_until_that_engine_is_full() -> None:
    import asyncio

    from soundforge.backends import CancelToken
    from soundforge.request import GenerationRequest
    from soundforge.serve.engine import JobOutcome, JobSpec

    class HeldEngine:
        """Stands in for an engine process: takes each job and holds it until released."""

        device = None
        pid = 1

        def __init__(self) -> None:
            self.jobs: list[str] = []
            self.release = asyncio.Event()

        async def run(self, spec: JobSpec, *args: object) -> JobOutcome:
            self.jobs.append(spec.job_id)
            await self.release.wait()
            return JobOutcome("succeeded")

    async def scenario() -> None:
        a, b = HeldEngine(), HeldEngine()
        pool = EnginePool([a, b], capacity=2)  # type: ignore[list-item]
        request = GenerationRequest(prompt="x")

        def start(job_id: str, provider: str) -> asyncio.Task[JobOutcome]:
            spec = JobSpec(job_id, request, provider, "x.wav", backend=provider, model="m")
            return asyncio.create_task(pool.run(spec, CancelToken(), lambda *_: None))

        first = [start(f"m{i}", "musicgen") for i in range(3)]
        await asyncio.sleep(0)  # each task runs up to its engine's wait
        assert (a.jobs, b.jobs) == (["m0", "m1"], ["m2"])  # m2: the holder was full
        sfx = start("s0", "audiogen")
        await asyncio.sleep(0)
        assert b.jobs[-1] == "s0" and pool.loads() == [2, 2]  # the least busy, holding it or not
        a.release.set()
        outcomes = await asyncio.gather(*first[:2])
        assert [o.engine for o in outcomes] == [0, 0]
        again = start("m3", "musicgen")
        await asyncio.sleep(0)
        assert a.jobs[-1] == "m3"  # both hold musicgen: the one with room and fewer jobs
        b.release.set()
        await asyncio.gather(first[2], sfx, again)
        assert pool.loads() == [0, 0]

    asyncio.run(scenario())


def test_jobs_spread_over_two_engines_each_with_its_device(tmp_path: Path) -> None:
    with (
        serving(tmp_path, engines=("cpu", None), workers=2) as (url, app),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        pool = app.state.engine
        assert isinstance(pool, EnginePool)
        pids = pool.pids
        assert None not in pids and len(set(pids)) == 2 and os.getpid() not in pids
        environ = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in pids]
        assert f"{ENGINE_DEVICE_ENV}=cpu".encode() in environ[0]
        assert not any(entry.startswith(ENGINE_DEVICE_ENV.encode()) for entry in environ[1])
        # Both run on the CPU: each gets its share of the cores for torch's math threads.
        share = max(1, len(os.sched_getaffinity(0)) // 2)
        assert all(f"OMP_NUM_THREADS={share}".encode() in env for env in environ)
        # One job of room each (2 workers, 2 engines): two jobs at once run on the two engines.
        jobs = two_long_jobs_on_two_engines(http, pool)
        for job in jobs:
            http.delete(f"/v1/generations/{job}")
        records = [wait(http, job, timeout=60) for job in jobs]
        assert [r["status"] for r in records] == ["cancelled", "cancelled"]
        assert sorted(r["engine"] for r in records) == [0, 1]


def test_a_killed_engine_fails_only_its_job_and_comes_back(tmp_path: Path) -> None:
    with (
        serving(tmp_path, engines=(None, None), workers=2) as (url, app),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        pool = app.state.engine
        doomed = str(http.post("/v1/generations", json=LONG).json()["id"])
        until_running(http, doomed)
        victim = pool.loads().index(1)
        other = 1 - victim
        survivor = submit(http, 2, 7)  # the victim has no room: placed on the idle engine
        os.kill(pool.pids[victim], signal.SIGKILL)
        record = wait(http, doomed, timeout=60)
        assert record["status"] == "failed" and record["error"]["code"] == "engine_stopped"
        kept = wait(http, survivor, timeout=60)
        assert kept["status"] == "succeeded" and kept["engine"] == other
        # The dead engine is started again when a job is placed on it.
        jobs = two_long_jobs_on_two_engines(http, pool)
        for job in jobs:  # both cancelled before either is waited for: on a loaded machine the wait for the first
            http.delete(f"/v1/generations/{job}")  # took longer than the second job's whole run
        assert [wait(http, job, timeout=60)["status"] for job in jobs] == ["cancelled", "cancelled"]
