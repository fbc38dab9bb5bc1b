"""`soundforge mcp` driven by the official `mcp` client, as an agent's host drives it: over stdio (the server a
subprocess, as Claude Desktop and other hosts start it), over streamable HTTP behind the bearer token, and in-process
for a tiny local model with progress and cancellation. The config's licence policy applies; refusals come back as
tool errors carrying the typed error's code and hint."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("mcp")

from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters

from soundforge.agents.mcp import build_server
from soundforge.client import Client as SoundforgeClient
from soundforge.config import Config

COMMERCIAL = "[policy]\nrequire_commercial_use = true\n"


def stdio_server(out: Path, config: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "soundforge.cli", "--config", str(config), "mcp", "--out", str(out)],
        env=dict(os.environ),
    )


def test_the_tools_over_stdio_under_a_commercial_policy(tmp_path) -> None:
    out, config = tmp_path / "out", tmp_path / "soundforge.toml"
    config.write_text(COMMERCIAL, "utf-8")

    async def session() -> None:
        async with Client(stdio_server(out, config)) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert names == {"generate", "separate", "verify", "providers", "estimate_cost"}
            schema = next(t for t in (await client.list_tools()).tools if t.name == "generate").input_schema
            assert {"prompt", "provider", "duration", "seed", "lyrics", "fields"} <= set(schema["properties"])
            # Generated, saved in the output folder with its licence; the answer says what an agent acts on.
            made = await client.call_tool(
                "generate", {"prompt": "lofi 85 BPM", "provider": "synth", "duration": 2, "seed": 3}
            )
            assert not made.is_error, made.content
            answer = made.structured_content
            file = answer["files"][0]
            assert Path(file["path"]).parent == out and file["uri"].startswith("file://")
            assert answer["license"]["commercial_use"] == "allowed" and answer["license"]["id"] == "CC0-1.0"
            assert file["provider"] == "synth" and file["seed"] == 3 and answer["cost"]["amount"] == 0
            data, rate = sf.read(file["path"])
            assert rate == 44100 and data.shape[0] == 2 * 44100
            # The policy refuses a non-commercial model before anything runs: a tool error with the typed error.
            refused = await client.call_tool("generate", {"prompt": "x", "provider": "musicgen", "duration": 1})
            assert refused.is_error and refused.content[0].text.startswith("license_policy: ")
            error = refused.structured_content["error"]
            assert error["code"] == "license_policy" and "synth" in error["allowed_providers"]
            # A bad field: invalid_request naming it, no traceback.
            bad = await client.call_tool("generate", {"prompt": "x", "provider": "synth", "duration": -1})
            assert bad.is_error and "Traceback" not in bad.content[0].text
            bad = await client.call_tool("generate", {"prompt": "x", "provider": "synth", "fields": {"bpm": 9999}})
            assert bad.is_error and bad.structured_content["error"]["field"] == "bpm"
            # The file as an MCP resource (for a host that cannot open the server's paths), and nothing else.
            assert file["resource"] == f"soundforge://output/{Path(file['path']).name}"
            read = (await client.read_resource(file["resource"])).contents[0]
            assert read.mime_type == "audio/wav" and base64.b64decode(read.blob) == Path(file["path"]).read_bytes()
            for outside in ("soundforge://output/..%2Fsoundforge.toml.wav", "soundforge://output/none.wav"):
                with pytest.raises(MCPError):
                    await client.read_resource(outside)
            # Verify reads only the output folder.
            checked = await client.call_tool("verify", {"path": Path(file["path"]).name})
            assert not checked.is_error and checked.structured_content["status"] == "ok"
            outside = await client.call_tool("verify", {"path": str(config)})
            assert outside.is_error and "outside the output folder" in outside.content[0].text
            rows = (await client.call_tool("providers", {})).structured_content["providers"]
            verdict = {row["name"]: row["policy_allows"] for row in rows}
            assert verdict["synth"] and not verdict["musicgen"]
            estimate = await client.call_tool("estimate_cost", {"prompt": "x", "provider": "synth", "duration": 3})
            assert estimate.structured_content["provider"] == "synth"
            assert estimate.structured_content["cost"]["amount"] == 0

    asyncio.run(session())
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".wav"]  # the track and its sidecar, nothing else


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"soundforge mcp exited: {process.stderr.read() if process.stderr else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("soundforge mcp did not start listening")


def test_the_tools_over_streamable_http_behind_the_token(tmp_path) -> None:
    import httpx
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    port, out = _free_port(), tmp_path / "out"
    env = {**os.environ, "SOUNDFORGE_SERVE_TOKEN": "s3cret-token"}
    process = subprocess.Popen(
        [sys.executable, "-m", "soundforge.cli", "mcp", "--http", f"127.0.0.1:{port}", "--out", str(out)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/mcp"
        denied = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        wrong = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401

        async def session() -> dict:
            http = httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret-token"}, timeout=60)
            async with http, Client(streamable_http_client(url, http_client=http)) as client:
                made = await client.call_tool("generate", {"prompt": "rain", "provider": "synth", "duration": 1})
                assert not made.is_error, made.content
                return made.structured_content

        answer = asyncio.run(session())
        assert Path(answer["files"][0]["path"]).is_file() and answer["license"]["id"] == "CC0-1.0"
    finally:
        process.terminate()
        process.wait(20)
    assert "s3cret-token" not in (process.stderr.read() or "")


@pytest.fixture(scope="module")
def tiny_musicgen(tmp_path_factory) -> str:
    pytest.importorskip("transformers")
    from soundforge.testing.musicgen import build_musicgen

    return str(build_musicgen(tmp_path_factory.mktemp("mcp-musicgen") / "tiny"))


def test_a_tiny_local_model_reports_progress_and_is_the_librarys_audio(tiny_musicgen, tmp_path) -> None:
    server = build_server(SoundforgeClient(Config.load(user_file=False)), tmp_path / "out")
    spec = f"musicgen:{tiny_musicgen}"
    steps: list[tuple[float, float | None, str | None]] = []

    async def session() -> dict:
        async with Client(server) as client:

            async def progress(done: float, total: float | None, message: str | None) -> None:
                steps.append((done, total, message))

            made = await client.call_tool(
                "generate",
                {"prompt": "calm piano", "provider": spec, "duration": 0.1, "seed": 42},
                progress_callback=progress,
            )
            assert not made.is_error, made.content
            return made.structured_content

    answer = asyncio.run(session())
    saved, _ = sf.read(answer["files"][0]["path"], dtype="float32", always_2d=True)
    direct = SoundforgeClient(Config.load(user_file=False)).generate("calm piano", provider=spec, duration=0.1, seed=42)
    # The WAV holds 16-bit samples: the same audio as the library's call, to that precision.
    assert np.abs(saved[:, 0] - direct.audio[0]).max() <= 1 / 32768 + 1e-7
    assert steps and steps[-1][0] == steps[-1][1] and all(m == "generate" or m for _, _, m in steps)


def test_a_cancelled_call_stops_the_generation(tiny_musicgen, tmp_path) -> None:
    """The client cancels a long call after its first progress: the server cancels the generation, which stops at
    the engine's next step (far from its last), and nothing is saved."""
    from soundforge.backends.runtime import run_on_device_thread

    steps: list[tuple[int, int]] = []
    library = SoundforgeClient(
        Config.load(user_file=False),
        callbacks=[lambda e: steps.append((e.done, e.total)) if e.kind == "progress" else None],
    )
    server = build_server(library, tmp_path / "out")
    first_step = asyncio.Event()

    async def session() -> None:
        async with Client(server) as client:

            async def progress(done: float, total: float | None, message: str | None) -> None:
                first_step.set()

            call = asyncio.ensure_future(
                client.call_tool(
                    "generate",
                    {"prompt": "long piano", "provider": f"musicgen:{tiny_musicgen}", "duration": 30, "seed": 1},
                    progress_callback=progress,
                )
            )
            await first_step.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # The engine's thread takes the next job once the generation has ended: wait for that, session open.
            await asyncio.to_thread(run_on_device_thread, "cpu", lambda: None)

    asyncio.run(session())
    done, total = steps[-1]
    assert done < total / 2, f"the generation ran on to step {done} of {total}"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
