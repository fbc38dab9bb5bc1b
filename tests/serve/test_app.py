"""`soundforge serve` over real HTTP on 127.0.0.1 (uvicorn in a thread), and its page in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.licences.policy import LicensePolicy  # noqa: E402
from soundforge.serve.app import create_app  # noqa: E402
from soundforge.serve.settings import ServeSettings  # noqa: E402

from ..helpers import ingress_only  # noqa: E402


@contextmanager
def running(store: Path, *, policy: LicensePolicy | None = None, server: str = "process", **settings):
    """Serve the app on a free loopback port for the duration of the block; yields its base URL. `server` is
    "process" or the base URL of a Ray Serve proxy (the `server` fixture), where `serve --ray`'s app is run."""
    with serving(store, policy=policy, server=server, **settings) as (url, _):
        yield url


@contextmanager
def serving(
    store: Path,
    *,
    policy: LicensePolicy | None = None,
    client: Client | None = None,
    server: str = "process",
    **settings,
):
    """Like `running`, yielding the base URL and the app (None on Ray: it lives in the ingress replica)."""
    client = client or Client(Config.load(user_file=False), policy=policy)
    if server != "process":
        with ray_serving(server, client, ServeSettings(store=store, config=client.config.serve, **settings)):
            yield server, None
        return
    app = create_app(client, ServeSettings(store=store, **settings))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def ray_serving(url: str, client: Client, settings: ServeSettings):
    """`soundforge serve --ray`'s application on the test's Ray cluster, deleted at the end of the block."""
    from soundforge.serve.ray_app import deploy, undeploy

    deploy(client.config, settings, client)
    try:
        yield
    finally:
        undeploy()


def wait(client: httpx.Client, job_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/v1/generations/{job_id}").json()
        if record["status"] not in ("queued", "running"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_synth_end_to_end_and_restart(tmp_path, server: str) -> None:
    store = tmp_path / "jobs"
    with running(store, server=server) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        rows = {r["name"]: r for r in http.get("/v1/providers").json()}
        assert rows["synth"]["available"] and "musicgen" in rows
        answer = http.post(
            "/v1/generations",
            json={"request": {"prompt": "lofi 85 BPM", "duration": 2, "seed": 3}, "provider": "synth"},
        )
        assert answer.status_code == 202
        job_id = answer.json()["id"]
        record = wait(http, job_id)
        assert record["status"] == "succeeded" and record["license"]["id"] == "CC0-1.0"
        assert record["substitution"] is None and record["provenance"]["requested"] == "synth"
        assert record["provenance"]["seed"] == 3 and record["progress"]["done"] == record["progress"]["total"]
        assert record["cost"]["basis"] == "local_compute" and record["cost"]["amount"] == 0  # every status has its cost
        wav = http.get(f"/v1/generations/{job_id}/audio")
        data, rate = sf.read(io.BytesIO(wav.content))
        assert rate == 44100 and data.shape == (2 * 44100, 2)
        mp3 = http.get(f"/v1/generations/{job_id}/audio", params={"format": "mp3"})
        assert mp3.headers["content-type"] == "audio/mpeg" and b"CC0-1.0" in mp3.content[:4096]
        assert http.get(f"/v1/generations/{job_id}/audio", params={"format": "aiff"}).status_code == 422
        assert http.get("/v1/generations/nope").status_code == 404
    # A job a crashed server left running, and a restart: finished results stay, unfinished ones fail.
    (store / "deadbeef").mkdir()
    (store / "deadbeef" / "job.json").write_text(
        json.dumps({"id": "deadbeef", "status": "running", "created_at": time.time()})
    )
    with running(store, server=server) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get(f"/v1/generations/{job_id}").json()["status"] == "succeeded"
        assert http.get(f"/v1/generations/{job_id}/audio").status_code == 200
        assert http.get("/v1/generations/deadbeef").json()["status"] == "failed"


@ingress_only
def test_policy_refusal_and_invalid_requests(tmp_path, server: str) -> None:
    with (
        running(tmp_path, policy=LicensePolicy(deny=("synth",)), server=server) as url,
        httpx.Client(base_url=url) as http,
    ):
        refused = http.post("/v1/generations", json={"request": {"prompt": "x", "duration": 1}, "provider": "synth"})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "license_policy" and "deny" in error["clause"]
        bad = http.post("/v1/generations", json={"request": {"prompt": "x", "duration": -1}})
        assert bad.status_code == 422
        unknown = http.post("/v1/generations", json={"request": {"prompt": "x"}, "provider": "nope"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "provider_not_found"
        # Audio inputs come in the body; a path on the server is refused alike whether or not the file exists.
        on_server = tmp_path / "private.wav"
        sf.write(on_server, [0.0] * 800, 8000)
        for path in (str(on_server), str(tmp_path / "missing.wav")):
            for value in (path, {"path": path}):
                named = http.post("/v1/generations", json={"request": {"prompt": "x", "audio_prompt": value}})
                assert named.status_code == 422
                assert "does not read files named by path" in named.text and "does not exist" not in named.text
    with running(tmp_path / "open", max_job_seconds=30, server=server) as url, httpx.Client(base_url=url) as http:
        wav = io.BytesIO()
        sf.write(wav, [0.0] * 800, 8000, format="WAV")
        sent = http.post(
            "/v1/generations",
            json={
                "request": {"prompt": "x", "melody": {"wav": base64.b64encode(wav.getvalue()).decode()}},
                "provider": "synth",
            },
        )
        assert sent.status_code == 422 and sent.json()["error"]["code"] == "unsupported_feature"  # synth: no melody


@ingress_only
def test_every_refusal_has_the_documented_error_shape(tmp_path, server: str) -> None:
    with running(tmp_path, max_job_seconds=30, server=server) as url, httpx.Client(base_url=url) as http:

        def refused(body: bytes | dict, status: int = 422) -> dict:
            kwargs = (
                {"json": body}
                if isinstance(body, dict)
                else {"content": body, "headers": {"Content-Type": "application/json"}}
            )
            answer = http.post("/v1/generations", **kwargs)
            assert answer.status_code == status, answer.text
            assert set(answer.json()) == {"error"} and isinstance(answer.json()["error"]["message"], str)
            return answer.json()["error"]

        assert refused({"request": {"prompt": "x", "duration": -1}})["field"] == "request.duration"
        # NaN, Infinity and 1e999 are valid to Python's JSON parser: refused as numbers, never a 500.
        for raw in (
            b'{"request": {"prompt": "x", "temperature": NaN}}',
            b'{"request": {"prompt": "x", "guidance": Infinity}}',
            b'{"request": {"prompt": "x", "duration": 1e999}}',
            b'{"request": {"prompt": "x", "extra": {"k": NaN}}}',
        ):
            refused(raw)
        # A lone surrogate is valid JSON and no text: refused up front.
        assert "not valid Unicode" in refused(b'{"request": {"prompt": "calm \\ud800 piano"}}')["message"]
        # A huge prompt is refused without being sent back.
        big = http.post("/v1/generations", json={"request": {"prompt": "y" * 2_000_000}})
        assert big.status_code == 422 and len(big.content) < 4000
        # One track per job, and no more audio per job than the server allows, refused before any compute.
        assert refused({"request": {"prompt": "x", "num_outputs": 3}})["field"] == "num_outputs"
        assert "30 s per job" in refused({"request": {"prompt": "x", "duration": 60}})["message"]
        # Route-level problems come in the same shape.
        assert set(http.get("/v1/generations/abc", params={"wait": "soon"}).json()) == {"error"}
        assert set(http.get("/v1/nowhere").json()) == {"error"}
        spec = http.get("/openapi.json").json()
        responses = spec["paths"]["/v1/generations"]["post"]["responses"]
        assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
        assert {"403", "429", "503"} <= set(responses)


@ingress_only
def test_encoded_downloads_are_encoded_once(tmp_path, server: str) -> None:
    with running(tmp_path, server=server) as url, httpx.Client(base_url=url, timeout=30) as http:
        job = http.post(
            "/v1/generations", json={"request": {"prompt": "lofi", "duration": 2, "seed": 1}, "provider": "synth"}
        ).json()
        assert wait(http, job["id"])["status"] == "succeeded"
        first = http.get(f"/v1/generations/{job['id']}/audio", params={"format": "flac"})
        cached = tmp_path / job["id"] / "audio.flac"
        assert first.status_code == 200 and cached.read_bytes() == first.content
        stamp = cached.stat().st_mtime_ns
        again = http.get(f"/v1/generations/{job['id']}/audio", params={"format": "flac"})
        assert again.content == first.content and cached.stat().st_mtime_ns == stamp


def test_queue_full_cancel_auth_and_size_limit(tmp_path, server: str) -> None:
    with running(
        tmp_path,
        max_queue=1,
        workers=1,
        token="s3cret",
        max_body_mb=4096 / 1024 / 1024,  # 4096 bytes
        cors_origins=("https://app.example",),
        server=server,
    ) as url:
        with httpx.Client(base_url=url, timeout=30) as anonymous:
            assert anonymous.get("/healthz").status_code == 200
            assert anonymous.get("/v1/providers").status_code == 401
            # A browser's CORS preflight carries no token; it is answered, and the real request still needs one.
            preflight = anonymous.options(
                "/v1/generations",
                headers={
                    "Origin": "https://app.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"
            assert (
                anonymous.post(
                    "/v1/generations", json={"request": {"prompt": "x"}}, headers={"Origin": "https://app.example"}
                ).status_code
                == 401
            )
            other = anonymous.options(
                "/v1/generations", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
            )
            assert "access-control-allow-origin" not in other.headers
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": "Bearer s3cret"}) as http:
            long = {
                "request": {"prompt": "ambient", "duration": 600, "channels": 1, "sample_rate": 22050},
                "provider": "synth",
            }
            first = http.post("/v1/generations", json=long).json()["id"]
            deadline = time.monotonic() + 20
            while http.get(f"/v1/generations/{first}").json()["status"] == "queued":  # until the worker takes it
                assert time.monotonic() < deadline
                time.sleep(0.02)
            second = http.post("/v1/generations", json=long).json()["id"]
            full = http.post("/v1/generations", json=long)
            assert full.status_code == 429 and full.headers["retry-after"] == "5"
            assert http.delete(f"/v1/generations/{second}").json()["status"] == "cancelled"
            http.delete(f"/v1/generations/{first}")
            ended = wait(http, first)
            assert ended["status"] in ("cancelled", "succeeded"), ended.get("error")
            huge = http.post("/v1/generations", json={"request": {"prompt": "x" * 5000}})
            assert huge.status_code == 413
            # Sent in chunks, without a Content-Length: counted as it arrives.
            chunked = http.post(
                "/v1/generations",
                headers={"content-type": "application/json"},
                content=iter([b'{"request": {"prompt": "', b"x" * 5000, b'"}}']),
            )
            assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "too_large"
            assert "content-length" not in chunked.request.headers


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is installed by scripts/test")
@ingress_only
def test_web_page_in_headless_chromium(tmp_path, server: str) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    with running(tmp_path, server=server) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#provider option[value=synth]", state="attached")
            page.fill("#duration", "2")
            page.fill("#seed", "4")
            page.click("#go")
            page.wait_for_selector("#result", state="visible", timeout=30000)
            assert page.eval_on_selector("#player", "a => a.src").startswith("blob:")
            assert page.eval_on_selector("#player", "a => a.canPlayType('audio/wav')") != ""
            licence = page.inner_text("#license")
            assert "CC0-1.0" in licence and "yes" in licence
            assert "synth" in page.inner_text("#provenance")
        finally:
            browser.close()


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is installed by scripts/test")
def test_the_page_plays_a_streamed_job_before_it_ends(tmp_path) -> None:
    """A tiny MusicGen in the engine process, 0.2 s chunks: the page schedules audio from the first chunk on,
    while the language model still works, and shows the licence once the job has ended."""
    playwright = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("transformers")
    from soundforge.testing.musicgen import build_musicgen

    folder = str(build_musicgen(tmp_path / "tiny", frame_rate=50))  # a second in 50 steps
    settings = {"model": folder, "stream_chunk_seconds": 0.2}
    client = Client(Config.load(user_file=False, providers={"musicgen": settings}))
    with serving(tmp_path / "jobs", client=client) as (url, _), playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#provider option[value=musicgen]", state="attached")
            page.select_option("#provider", "musicgen")
            page.fill("#duration", "1")
            page.fill("#seed", "4")
            page.click("#go")
            page.wait_for_selector("#result", state="visible", timeout=120000)
            heard = page.evaluate("window.soundforgeStream")
            assert heard["firstAudioAt"] is not None and heard["endedAt"] is not None
            assert heard["firstAudioAt"] < heard["endedAt"], "the page played audio before the job ended"
            assert abs(heard["seconds"] - 1.0) < 1e-6  # every sample of the track was scheduled
            assert page.evaluate("audio.state") == "running"
            assert page.eval_on_selector("#player", "a => a.src").startswith("blob:")
            assert "musicgen" in page.inner_text("#provenance")
        finally:
            browser.close()


def test_stream_and_events_over_http(tmp_path, server: str) -> None:
    from soundforge.audio.pcm16 import quantize

    with serving(tmp_path, server=server) as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        job = http.post(
            "/v1/generations",
            json={"request": {"prompt": "house", "duration": 5, "seed": 3}, "provider": "synth", "stream": True},
        ).json()
        assert job["stream_url"] == f"/v1/generations/{job['id']}/stream"
        with http.stream("GET", job["stream_url"]) as streamed:
            assert streamed.headers["content-type"] == "audio/wav"
            data = b"".join(streamed.iter_bytes())
        assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"  # open-ended: the length was not known
        library = Client(Config.load(user_file=False)).generate("house", provider="synth", duration=5, seed=3)
        samples = np.frombuffer(data[44:], dtype="<i2").reshape(-1, 2).T
        assert np.array_equal(samples, quantize(library.audio))  # the saved WAV's samples, as they came
        # After the end: the events say so at once, the stream URL answers the stored file.
        events = http.get(f"/v1/generations/{job['id']}/events").text
        assert events.startswith("event: end\n") and '"status":"succeeded"' in events
        stored = http.get(job["stream_url"])
        assert stored.status_code == 200 and sf.read(io.BytesIO(stored.content))[0].shape == (5 * 44100, 2)
        # A job listened to from its start hears progress, its chunks and its end, in that order.
        job = http.post(
            "/v1/generations",
            json={"request": {"prompt": "ambient", "duration": 30, "seed": 1}, "provider": "synth", "stream": True},
        ).json()
        with http.stream("GET", f"/v1/generations/{job['id']}/events") as sse:
            kinds = [line[7:] for line in sse.iter_lines() if line.startswith("event: ")]
        assert kinds[-1] == "end" and kinds.count("chunk") == 60 and "progress" in kinds
        # Not submitted as a stream: 409 while it runs; refused at submission when the provider cannot stream.
        plain = http.post(
            "/v1/generations", json={"request": {"prompt": "x", "duration": 600, "seed": 1}, "provider": "synth"}
        ).json()
        early = http.get(f"/v1/generations/{plain['id']}/stream")
        assert early.status_code == 409 and early.json()["error"]["code"] == "not_streamed"
        refused = http.post(
            "/v1/generations",
            json={"request": {"prompt": "x", "duration": 40}, "provider": "musicgen", "stream": True},
        )
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "streaming"
        assert http.get("/v1/generations/nope/stream").status_code == 404
        assert http.get("/v1/generations/nope/events").status_code == 404


def test_a_job_saves_with_its_loudness_and_edits_and_a_stream_refuses_them(tmp_path, server: str) -> None:
    from soundforge.audio import loudness

    with running(tmp_path, server=server) as url, httpx.Client(base_url=url, timeout=30) as http:
        request = {"prompt": "ambient", "duration": 3, "seed": 2, "loudness": -20, "trim": 2, "fade_out": 0.5}
        job = http.post("/v1/generations", json={"request": request, "provider": "synth"}).json()
        assert wait(http, job["id"])["status"] == "succeeded"
        wav = http.get(f"/v1/generations/{job['id']}/audio").content
        data, rate = sf.read(io.BytesIO(wav), dtype="float32")
        assert 2 * rate - 441 <= data.shape[0] <= 2 * rate and np.max(np.abs(data[-32:])) < 0.01
        assert abs(loudness.integrated_loudness(data.T, rate) + 20) < 0.5
        assert b"EDITS" in wav and b"at a zero crossing" in wav
        # A stream carries the samples as made: the stored file could not be the one heard, so it is refused.
        answer = http.post(
            "/v1/generations", json={"request": {"prompt": "x", "fade_in": 1}, "provider": "synth", "stream": True}
        )
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "fade_in"
        error = answer.json()["error"]
        assert "stored file holds the samples" in error["message"] and "submit without stream" in error["hint"]
        # Stems are separated from the finished track: a streamed job refuses them before any work.
        stems = http.post(
            "/v1/generations",
            json={"request": {"prompt": "x", "stems": ["drums"]}, "provider": "synth", "stream": True},
        )
        assert stems.status_code == 422 and stems.json()["error"]["field"] == "stems"


@pytest.mark.parametrize("engine", ["process", "inline"])
def test_long_poll_answers_when_the_job_ends(tmp_path, engine: str) -> None:
    with serving(tmp_path, engine=engine) as (url, app), httpx.Client(base_url=url, timeout=30) as http:
        assert app.state.engine.mode == engine
        job = http.post(
            "/v1/generations",
            json={"request": {"prompt": "techno 128 BPM", "duration": 3, "seed": 1}, "provider": "synth"},
        ).json()
        record = http.get(f"/v1/generations/{job['id']}", params={"wait": 20}).json()
        assert record["status"] == "succeeded", "one long poll is enough: it returns when the job has ended"
        assert http.get(f"/v1/generations/{job['id']}", params={"wait": 61}).status_code == 422
        # Submit, then one download that waits for the job: two requests in all.
        job = http.post(
            "/v1/generations", json={"request": {"prompt": "dub techno", "duration": 3, "seed": 2}, "provider": "synth"}
        ).json()
        audio = http.get(f"/v1/generations/{job['id']}/audio", params={"wait": 20, "format": "flac"})
        assert audio.status_code == 200 and audio.content[:4] == b"fLaC"


def test_a_killed_engine_fails_its_jobs_and_the_next_job_gets_a_new_one(tmp_path) -> None:
    import os
    import signal

    with serving(tmp_path) as (url, app), httpx.Client(base_url=url, timeout=30) as http:
        first_pid = app.state.engine.pid
        assert first_pid is not None and first_pid != os.getpid()
        long = {
            "request": {"prompt": "drone", "duration": 600, "channels": 1, "sample_rate": 22050},
            "provider": "synth",
        }
        doomed = http.post("/v1/generations", json=long).json()["id"]
        deadline = time.monotonic() + 20
        while http.get(f"/v1/generations/{doomed}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(first_pid, signal.SIGKILL)
        record = wait(http, doomed)
        assert record["status"] == "failed" and record["error"]["code"] == "engine_stopped"
        assert "exit code -9" in record["error"]["message"]
        assert http.get("/healthz").status_code == 200  # the server itself stayed up
        after = http.post(
            "/v1/generations", json={"request": {"prompt": "lofi", "duration": 1, "seed": 5}, "provider": "synth"}
        ).json()["id"]
        assert wait(http, after)["status"] == "succeeded"
        assert app.state.engine.pid not in (None, first_pid)
        # Cancelling a job that runs in the engine process stops it there.
        running_job = http.post("/v1/generations", json=long).json()["id"]
        while http.get(f"/v1/generations/{running_job}").json()["status"] != "running":
            time.sleep(0.01)
        assert http.delete(f"/v1/generations/{running_job}").json()["status"] == "cancelling"
        record = wait(http, running_job)
        assert record["status"] == "cancelled" and record["error"]["code"] == "cancelled"


def test_unknown_engine_setting_is_a_configuration_error(tmp_path) -> None:
    from soundforge.errors import ConfigurationError

    # Checked where [serve] is declared (ServeConfig), as the config file's value would be.
    with pytest.raises(ConfigurationError, match="engine: Input should be 'auto', 'process' or 'inline'"):
        create_app(Client(Config.load(user_file=False)), ServeSettings(store=tmp_path, engine="threads"))


def test_cli_serve_reads_its_config_section(tmp_path) -> None:
    import os
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "soundforge.toml").write_text(
        f'[serve]\nport = {port}\nstore = "{tmp_path / "jobs"}"\ntoken_env = "STUDIO_TOKEN"\nmax_queue = 3\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDFORGE_")} | {"STUDIO_TOKEN": "t0ken"}
    exe = str(Path(sys.executable).with_name("soundforge"))
    server = subprocess.Popen(
        [exe, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(url + "/healthz").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.1)
        assert httpx.get(url + "/v1/providers").status_code == 401
        assert httpx.get(url + "/v1/providers", headers={"Authorization": "Bearer t0ken"}).status_code == 200
    finally:
        server.terminate()
        output = server.communicate(timeout=15)[0]
    assert "t0ken" not in output, "the token is never logged"
    assert (tmp_path / "jobs").is_dir()


@pytest.mark.parametrize("mode", ["process", "inline"])
def test_a_job_cancelled_before_it_reaches_the_engine_is_cancelled_there(tmp_path, mode: str) -> None:
    import asyncio

    from soundforge.backends import CancelToken
    from soundforge.request import GenerationRequest
    from soundforge.serve.engine import JobSpec, create_engine

    async def scenario() -> tuple[str, str, bool]:
        engine = create_engine(Client(Config.load(user_file=False)), mode)
        await engine.start()
        try:
            token = CancelToken()
            token.cancel()
            request = GenerationRequest(prompt="ambient", duration=1)
            first = JobSpec("j1", request, "synth", str(tmp_path / "a.wav"), backend="synth", model="default")
            second = JobSpec("j2", request, "synth", str(tmp_path / "b.wav"), backend="synth", model="default")
            cancelled = await engine.run(first, token, lambda *_: None)
            done = await engine.run(second, CancelToken(), lambda *_: None)
            return cancelled.status, done.status, (tmp_path / "b.wav").exists()
        finally:
            await engine.close()

    assert asyncio.run(scenario()) == ("cancelled", "succeeded", True)
    assert not (tmp_path / "a.wav").exists()


def test_an_engine_that_cannot_start_says_how_to_run_without_one(tmp_path, monkeypatch) -> None:
    import asyncio
    import sys

    from soundforge.errors import ConfigurationError
    from soundforge.serve.engine import ProcessEngine

    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    engine = ProcessEngine(Client(Config.load(user_file=False)))
    with pytest.raises(ConfigurationError, match="--engine inline"):
        asyncio.run(engine.start())


def test_a_torch_model_runs_in_the_engine_process(tmp_path, server: str) -> None:
    """Tiny random MusicGen checkpoints through the service: torch in the engine process (on Ray: in the musicgen
    family's own engine replica), a melody sent in the body reaching the model, and the stored audio identical to
    the library's for the same request."""
    pytest.importorskip("transformers")
    from soundforge.audio import decoded_sha256
    from soundforge.testing.musicgen import build_musicgen

    mono = str(build_musicgen(tmp_path / "mono"))
    melody_model = str(build_musicgen(tmp_path / "melody", melody=True))
    families = {"musicgen": {"num_cpus": 0.5}, "default": {"num_cpus": 0.5}}
    client = Client(Config.load(user_file=False, serve={"ray": {"engines": families, "drain_seconds": 60}}))
    with (
        serving(tmp_path / "jobs", client=client, server=server) as (url, app),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        assert app is None or app.state.engine.mode == "process"
        job = http.post(
            "/v1/generations",
            json={"request": {"prompt": "calm piano", "duration": 0.1, "seed": 42}, "provider": f"musicgen:{mono}"},
        ).json()
        audio = http.get(f"/v1/generations/{job['id']}/audio", params={"wait": 60})
        assert audio.status_code == 200
        if server != "process":  # run by the musicgen family's own replica, not the default one synth goes to
            synth = http.post("/v1/generations", json={"request": {"prompt": "x", "duration": 1}, "provider": "synth"})
            other = http.get(f"/v1/generations/{synth.json()['id']}", params={"wait": 60}).json()["replica"]
            ran = http.get(f"/v1/generations/{job['id']}").json()["replica"]
            assert ran and other and ran != other
        library = (
            Client(Config.load(user_file=False))
            .generate("calm piano", provider=f"musicgen:{mono}", duration=0.1, seed=42)
            .tracks[0]
        )
        assert decoded_sha256(audio.content) == decoded_sha256(library.to_bytes("wav"))
        tune = io.BytesIO()
        sf.write(tune, 0.3 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000), 16000, format="WAV")
        job = http.post(
            "/v1/generations",
            json={
                "request": {
                    "prompt": "jazz melody",
                    "duration": 0.04,
                    "seed": 5,
                    "melody": {"wav": base64.b64encode(tune.getvalue()).decode()},
                },
                "provider": f"musicgen:{melody_model}",
            },
        )
        record = http.get(f"/v1/generations/{job.json()['id']}", params={"wait": 60}).json()
        assert record["status"] == "succeeded", record
        assert record["provenance"]["request"]["melody"] is not None


def test_hostile_nesting_is_an_invalid_request_not_a_500(tmp_path) -> None:
    """`extra` 500 levels deep (a RecursionError in validation: a 500) is a 422, and a body 5000 levels deep (past
    the JSON parser's own limit) a 400, both `invalid_request` in the typed error shape."""
    with serving(tmp_path, engine="inline") as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        deep = '{"a":' * 500 + "1" + "}" * 500
        body = '{"provider": "synth", "request": {"prompt": "x", "duration": 1, "extra": ' + deep + "}}"
        answer = http.post("/v1/generations", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"
        deeper = '{"a":' * 5000 + "1" + "}" * 5000
        answer = http.post("/v1/generations", content=deeper, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_request"


def test_a_stream_listener_hears_why_a_job_ended_before_any_audio(tmp_path) -> None:
    """A streamed job whose provider fails before its first chunk: the listener gets the job's error (409), not
    an empty 200 audio/wav; a finished job's stream is its stored WAV, read from the store in pieces."""
    from soundforge import ProviderError
    from soundforge.testing import FunctionBackend

    class Refusing(FunctionBackend):
        def capabilities(self, model):
            return super().capabilities(model).model_copy(update={"streaming": True})

        def stream(self, request, model, context):
            raise ProviderError("the service refused the job", provider=self.name)

    refusing = Refusing(lambda request, context: np.zeros(800, np.float32), name="refusing", sample_rate=8000)
    client = Client(Config.load(user_file=False), backends={"refusing": refusing})
    with serving(tmp_path, client=client, engine="inline") as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        job = http.post(
            "/v1/generations", json={"request": {"prompt": "x", "duration": 1}, "provider": "refusing", "stream": True}
        )
        assert job.status_code == 202, job.text
        answer = http.get(f"/v1/generations/{job.json()['id']}/stream")
        assert answer.status_code == 409 and answer.headers["content-type"].startswith("application/json")
        error = answer.json()["error"]
        assert error["code"] == "job_failed" and "refused the job" in error["message"]
        done = http.post(
            "/v1/generations", json={"request": {"prompt": "x", "duration": 1, "seed": 1}, "provider": "synth"}
        )
        assert wait(http, done.json()["id"])["status"] == "succeeded"
        whole = http.get(f"/v1/generations/{done.json()['id']}/stream")
        assert (
            whole.status_code == 200 and whole.content == http.get(f"/v1/generations/{done.json()['id']}/audio").content
        )


def test_a_store_fault_is_a_typed_500_not_plain_text(tmp_path) -> None:
    """The index failing under a request (a locked or dropped database): the error shape, with the reason."""
    import sqlite3

    with serving(tmp_path, engine="inline") as (url, app), httpx.Client(base_url=url, timeout=30) as http:
        job = http.post("/v1/generations", json={"request": {"prompt": "x", "duration": 1}, "provider": "synth"})
        assert wait(http, job.json()["id"])["status"] == "succeeded"
        store = app.state.jobs.store

        def locked(job_id):
            raise sqlite3.OperationalError("database is locked")

        store._memory.clear()
        store.index.get = locked
        answer = http.get(f"/v1/generations/{job.json()['id']}")
        assert answer.status_code == 500 and answer.headers["content-type"].startswith("application/json")
        assert answer.json()["error"]["code"] == "internal_error" and "database is locked" in answer.text


def test_the_audio_of_an_unknown_job_is_not_found_not_not_ready(tmp_path) -> None:
    with serving(tmp_path, engine="inline") as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        answer = http.get("/v1/generations/no-such-job/audio")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_malformed_json_names_no_field(tmp_path) -> None:
    """A body that is not JSON: its error says so, with the character offset in words, not as `field: "11"`."""
    with serving(tmp_path, engine="inline") as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        answer = http.post(
            "/v1/generations", content='{"request": {"prompt": ', headers={"Content-Type": "application/json"}
        )
        error = answer.json()["error"]
        assert answer.status_code == 422 and error["code"] == "invalid_request"
        assert error["field"] is None and "not valid JSON at character" in error["message"]
