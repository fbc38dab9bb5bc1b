"""`soundforge serve --ray` under faults, on a local Ray cluster the test starts: an engine replica killed mid-job
(a local job runs once more, a cloud job is failed and never sent twice), the ingress killed and restarted (finished
jobs stay downloadable, its unfinished ones fail once its lease runs out), and a replica drained (its queued jobs
move to the one that stays). The HTTP tests of tests/serve/test_app.py run against --ray too (the `server` fixture)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

serve = pytest.importorskip("ray.serve")

from soundforge.audio import decoded_sha256  # noqa: E402
from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.errors import ConfigurationError  # noqa: E402
from soundforge.request import GenerationRequest  # noqa: E402
from soundforge.serve.ray_app import (  # noqa: E402
    APP_NAME,
    ENGINE_DEPLOYMENT,
    build_applications,
    deploy,
    engine_app_name,
    undeploy,
)
from soundforge.serve.settings import ServeSettings  # noqa: E402

from ..helpers import cloud, hears_ctrl_c  # noqa: E402

ENGINES = engine_app_name("default")
#: 600 s of stereo synth: about 6 s of work here, long enough to be killed while it runs.
LONG = {"prompt": "ambient drone", "duration": 600, "seed": 4}


def replica_pids(app: str, deployment: str = ENGINE_DEPLOYMENT) -> list[int]:
    """Process ids of a deployment's replicas, found by the process title Ray gives them."""
    title = f"ray::ServeReplica:{app}:{deployment}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes().startswith(title):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def until(check: Callable[[], Any], timeout: float = 60, what: str = "the condition") -> Any:
    """Poll `check` (an HTTP answer or a process table: nothing here can be waited on) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def no_replicas_left() -> None:
    """Wait for an earlier test's replicas to be gone: deleting an application returns while its replica processes
    still shut down (longer on a loaded machine), and a test that counts or kills replicas must see only its own."""
    until(
        lambda: not replica_pids(ENGINES) and not replica_pids(APP_NAME, "ingress"),
        timeout=120,
        what="the replicas of an earlier test to stop",
    )


@contextmanager
def deployed(url: str, store: Path, client: Client, **settings: Any) -> Iterator[httpx.Client]:
    """The --ray application on the test's cluster, with an HTTP client on Ray Serve's proxy."""
    no_replicas_left()
    deploy(client.config, ServeSettings(store=store, config=client.config.serve, **settings), client)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            yield http
    finally:
        undeploy()


def ray_client(**ray: Any) -> Client:
    return Client(Config.load(user_file=False, serve={"ray": {"drain_seconds": 60, **ray}}))


def submit(http: httpx.Client, request: dict[str, Any], provider: str = "synth", **job: Any) -> str:
    answer = http.post("/v1/generations", json={"request": request, "provider": provider, **job})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def status_is(http: httpx.Client, job_id: str, *statuses: str) -> dict[str, Any] | None:
    record = http.get(f"/v1/generations/{job_id}").json()
    return record if record["status"] in statuses else None


def in_engine(http: httpx.Client, job_id: str) -> bool:
    """Whether an engine replica has the job: it has reported progress (a job the ingress marked running may
    still wait in Ray Serve's router for a replica)."""
    record = http.get(f"/v1/generations/{job_id}").json()
    return record["status"] == "running" and bool(record.get("progress"))


def test_a_local_job_whose_replica_dies_runs_once_more_and_gives_the_same_audio(tmp_path, ray_serve_url) -> None:
    client = ray_client(engines={"default": {"replicas": 2, "num_cpus": 0.5}})
    with deployed(ray_serve_url, tmp_path / "jobs", client) as http:
        job = submit(http, LONG)
        until(lambda: in_engine(http, job), what="the job to start in a replica")
        engines = replica_pids(ENGINES)
        assert len(engines) == 2
        for pid in engines:  # whichever runs the job: both go (SIGKILL, no clean-up)
            os.kill(pid, signal.SIGKILL)
        record = until(lambda: status_is(http, job, "succeeded", "failed"), timeout=120, what="the job to end")
        assert record["status"] == "succeeded", record.get("error")
        assert record["attempts"] == 2  # once more, exactly: the first run died with its replica
        wav = http.get(f"/v1/generations/{job}/audio").content
    expected = Client(Config.load(user_file=False)).generate(GenerationRequest(**LONG), provider="synth")
    # Nothing lost: the retried job's samples are the library's own result (the tags differ only in their times).
    assert decoded_sha256(wav) == decoded_sha256(expected.tracks[0].to_bytes("wav"))


def test_a_cloud_job_whose_replica_dies_fails_and_is_never_sent_twice(
    tmp_path, ray_serve_url, stability, downloads
) -> None:
    stability.latency = 4.0  # the call is in flight for seconds: the replica dies during it
    base = cloud("stability", stability, downloads)
    client = Client(base.config.model_copy(update={"serve": ray_client().config.serve}))
    with deployed(ray_serve_url, tmp_path / "jobs", client) as http:
        job = submit(http, {"prompt": "strings", "duration": 2}, provider="stability")
        until(lambda: stability.in_flight == 1, what="the cloud call")
        for pid in replica_pids(ENGINES):
            os.kill(pid, signal.SIGKILL)
        record = until(lambda: status_is(http, job, "succeeded", "failed"), timeout=60, what="the job to end")
        assert record["status"] == "failed" and record["attempts"] == 1
        assert record["error"]["code"] == "engine_stopped" and "cloud API" in record["error"]["message"]
        # A fresh replica takes the next job; the first call was the only one the vendor ever saw.
        second = submit(http, {"prompt": "strings", "duration": 2}, provider="stability")
        stability.latency = 0.01
        assert until(lambda: status_is(http, second, "succeeded", "failed"), timeout=60)["status"] == "succeeded"
    assert stability.requests == 2, "one call per job: the killed job's call was not sent again"


def test_a_killed_ingress_restarts_with_every_finished_job_and_fails_its_unfinished_ones(
    tmp_path, ray_serve_url
) -> None:
    # The engine autoscales here (Ray Serve takes the bounds [serve.ray.engines] gives); the ingress is what dies.
    client = ray_client(lease_seconds=2, engines={"default": {"min_replicas": 1, "max_replicas": 2, "num_cpus": 0.5}})
    with deployed(ray_serve_url, tmp_path / "jobs", client) as http:
        done = submit(http, {"prompt": "lofi", "duration": 2, "seed": 1})
        until(lambda: status_is(http, done, "succeeded"), what="the first job")
        wav = http.get(f"/v1/generations/{done}/audio").content
        unfinished = submit(http, LONG)
        until(lambda: in_engine(http, unfinished), what="the long job to start")
        (ingress,) = replica_pids(APP_NAME, "ingress")
        os.kill(ingress, signal.SIGKILL)
        # Ray Serve starts a new ingress replica; it reads the shared store and index.
        until(lambda: replica_pids(APP_NAME, "ingress") and http.get("/healthz").status_code == 200, timeout=90)
        assert http.get(f"/v1/generations/{done}").json()["status"] == "succeeded"
        assert http.get(f"/v1/generations/{done}/audio").content == wav
        record = until(lambda: status_is(http, unfinished, "failed"), timeout=60, what="the lost job to fail")
        assert record["error"]["code"] == "server_restarted"


def test_draining_a_replica_moves_its_queued_jobs_to_the_one_that_stays(tmp_path, ray_serve_url) -> None:
    engines = {"replicas": 2, "num_cpus": 0.5, "max_ongoing_requests": 1}
    client = ray_client(engines={"default": engines})
    store = tmp_path / "jobs"
    settings = ServeSettings(store=store, config=client.config.serve, workers=6)
    no_replicas_left()
    deploy(client.config, settings, client)
    try:
        with httpx.Client(base_url=ray_serve_url, timeout=60) as http:
            jobs = [submit(http, {**LONG, "seed": seed}) for seed in range(4)]  # two run, two wait
            until(lambda: sum(in_engine(http, j) for j in jobs) == 2, what="a job in each replica")
            running = [j for j in jobs if in_engine(http, j)]
            assert len(running) == 2 and len(replica_pids(ENGINES)) == 2
            # The engine application alone is updated (one replica): Ray Serve starts the new replica, stops
            # sending jobs to the old ones and lets each finish the job it runs; the ingress runs on.
            smaller = ray_client(engines={"default": {**engines, "replicas": 1}})
            smaller_settings = settings.with_fields(ray=smaller.config.serve.ray)
            serve.run(
                build_applications(smaller.config, smaller_settings, smaller)[ENGINES], name=ENGINES, route_prefix=None
            )
            records = [until(lambda j=j: status_is(http, j, "succeeded", "failed"), timeout=180) for j in jobs]
            assert [r["status"] for r in records] == ["succeeded"] * 4, [r.get("error") for r in records]
            assert [r["attempts"] for r in records] == [1] * 4, "drained, not killed: nothing ran twice"
            old = {r["replica"] for j, r in zip(jobs, records, strict=True) if j in running}
            moved = [r for j, r in zip(jobs, records, strict=True) if j not in running and r["replica"] not in old]
            assert len(old) == 2 and moved, "queued jobs went to the replica that stays"
            until(lambda: len(replica_pids(ENGINES)) == 1, what="the old replicas to stop")
    finally:
        undeploy()


@pytest.mark.own_ray_cluster
def test_cli_serve_ray_local_starts_a_cluster_serves_and_stops_on_ctrl_c(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "soundforge.toml").write_text(
        f'[serve]\nport = {port}\nstore = "{tmp_path / "jobs"}"\ntoken_env = "STUDIO_TOKEN"\n'
        "[serve.ray.engines.default]\nnum_cpus = 0.5\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOUNDFORGE_", "RAY_"))} | {"STUDIO_TOKEN": "t0ken"}
    exe = str(Path(sys.executable).with_name("soundforge"))
    refused = subprocess.run([exe, "serve", "--ray", "--engines", "2"], cwd=tmp_path, env=env, capture_output=True)
    assert refused.returncode == 2 and b"[serve.ray.engines]" in refused.stderr
    server = subprocess.Popen(
        [exe, "serve", "--ray", "local"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=hears_ctrl_c,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": "Bearer t0ken"}
        until(lambda: server.poll() is None and httpx.get(url + "/healthz").status_code == 200, timeout=120)
        assert httpx.get(url + "/v1/providers").status_code == 401
        job = httpx.post(
            url + "/v1/generations",
            json={"request": {"prompt": "dub", "duration": 1}, "provider": "synth"},
            headers=headers,
        ).json()
        audio = httpx.get(f"{url}/v1/generations/{job['id']}/audio", params={"wait": 60}, headers=headers, timeout=90)
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 0, output[-2000:]
    assert b"t0ken" not in output, "the token is never logged"


def test_http_direct_replicas_share_the_port_and_answer_for_each_other_jobs(tmp_path, ray_serve_url) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(
        Config.load(
            user_file=False,
            serve={"port": port, "ray": {"http": "direct", "ingress_replicas": 2, "drain_seconds": 60}},
        )
    )
    url = f"http://127.0.0.1:{port}"
    no_replicas_left()
    deploy(client.config, ServeSettings(store=tmp_path / "jobs", config=client.config.serve), client)
    try:
        until(lambda: len(replica_pids(APP_NAME, "ingress")) == 2 and httpx.get(url + "/healthz").status_code == 200)
        job = httpx.post(
            url + "/v1/generations", json={"request": {"prompt": "dub", "duration": 1}, "provider": "synth"}
        )
        job_id = job.json()["id"]
        # Each read on a new connection: the kernel spreads them over both replicas; every one answers the same.
        assert until(lambda: all(status_is(httpx.Client(base_url=url), job_id, "succeeded") for _ in range(10)))
        wav = httpx.get(f"{url}/v1/generations/{job_id}/audio").content
        for pid in replica_pids(APP_NAME, "ingress"):
            os.kill(pid, signal.SIGKILL)
        # Fresh replicas, which never held the job in memory, answer for it from the shared store.
        until(lambda: len(replica_pids(APP_NAME, "ingress")) == 2 and httpx.get(url + "/healthz").status_code == 200)
        assert all(httpx.get(f"{url}/v1/generations/{job_id}/audio").content == wav for _ in range(6))
        assert httpx.get(ray_serve_url + f"/v1/generations/{job_id}").status_code == 404  # not through Ray's proxy
    finally:
        undeploy()


def test_settings_that_cannot_work_on_ray_are_refused_before_any_cluster_is_reached(tmp_path) -> None:
    def build(ray: dict[str, Any], **settings: Any) -> None:
        client = Client(Config.load(user_file=False, serve={"ray": ray}))
        build_applications(client.config, ServeSettings(store=tmp_path, config=client.config.serve, **settings), client)

    with pytest.raises(ConfigurationError, match="one ingress replica"):
        build({"ingress_replicas": 2}, tokens={"v" * 24: ("team", 5.0, None)})
    with pytest.raises(ConfigurationError, match="names no provider musicgenn"):
        build({"engines": {"musicgenn": {"num_gpus": 1}}})
    with pytest.raises(ConfigurationError, match="not both"):
        Config.load(user_file=False, serve={"ray": {"engines": {"musicgen": {"replicas": 2, "max_replicas": 4}}}})
    # [serve] comes from the settings alone (flags applied there), whatever the config's own section says.
    config = Config.load(user_file=False)
    with pytest.raises(ConfigurationError, match="one ingress replica"):
        tokens = {"v" * 24: ("team", 5.0, None)}
        build_applications(config, ServeSettings(store=tmp_path, tokens=tokens, ray={"ingress_replicas": 2}))
    applications = build_applications(config, ServeSettings(store=tmp_path), Client(config))
    assert list(applications) == [engine_app_name("default"), APP_NAME]
