"""A fake Lyria RealTime (`BidiGenerateMusic`) on 127.0.0.1, over TLS, as Google's client and API reference describe it.

Written from google-genai 3.6.1 `live_music.py` (the URL, the `x-goog-api-key` header, one JSON message per frame:
`setup` first, then `clientContent.weightedPrompts`, `musicGenerationConfig` in camelCase, `playbackControl`
`PLAY`/`PAUSE`/`STOP`/`RESET_CONTEXT`; a close frame becomes `errors.APIError(code, reason)`), `types.py`
(`LiveMusicServerMessage`: `setupComplete`, `serverContent.audioChunks[{data, mimeType}]`, `filteredPrompt`) and the
API reference (ai.google.dev/gemini-api/docs/music-generation: 16-bit PCM, 48 kHz, stereo; bpm 60-200, density and
brightness 0-1, guidance 0-6). Not from soundforge's adapter.

The audio says what the session was told: each chunk is a sine whose frequency is `100 + bpm` Hz (no bpm: 100 Hz)
and whose amplitude is `0.1 + 0.5 * density` (no density: 0.1), so a test hears a steering change in the samples
that follow it. A prompt with "forbidden" is answered with a `filteredPrompt`; an out-of-range config closes the
session with code 1007, as a refused argument; a wrong key is refused at the handshake (HTTP 403).

The SDK always connects with `wss://` (it rewrites the base URL's scheme), so the fake serves TLS with a certificate
made here; `trust_file` is the PEM a client trusts (tests set `SSL_CERT_FILE` to it).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

PATH = "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateMusic"
RATE = 48000
#: Seconds of audio per chunk, and how long the fake waits between chunks (it runs faster than real time).
CHUNK_SECONDS = 0.25
CHUNK_EVERY = 0.01


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class FakeLyriaRealtime:
    """The fake service on a thread of its own; `url` is the base URL (https://127.0.0.1:PORT)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.messages: list[dict[str, Any]] = []  # every client message, in order
        self.sessions = 0
        self.closed_sessions = 0
        self.lock = threading.Lock()
        self.session_ended = threading.Condition(self.lock)
        self.folder = Path(tempfile.mkdtemp(prefix="fake-lyria-rt-"))
        self.trust_file, key_file = _certificate(self.folder)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(self.trust_file, key_file)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="fake-lyria-realtime", daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the fake Lyria RealTime did not start")
        self.url = f"https://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        self.server = await serve(
            self._session, "127.0.0.1", 0, ssl=self.tls, process_request=self._handshake, max_size=2**24
        )
        self.port = self.server.sockets[0].getsockname()[1]

    def _handshake(self, connection: Any, request: Any) -> Any:
        """Refuse a wrong path or key before the WebSocket opens (the SDK sends the key as a header only)."""
        if request.path.split("?", 1)[0] != PATH:
            return connection.respond(404, "not found\n")
        if "key=" in request.path or request.headers.get("x-goog-api-key") != self.key:
            return connection.respond(403, "API key not valid\n")
        return None

    async def _session(self, ws: Any) -> None:
        with self.lock:
            self.sessions += 1
        state: dict[str, Any] = {"config": {}, "prompts": [], "playing": False, "offset": 0}
        try:
            setup = json.loads(await ws.recv())
            self._keep(setup)
            if set(setup) != {"setup"} or setup["setup"].get("model") != "models/lyria-realtime-exp":
                await ws.close(1007, "the first message must be setup with a known model")
                return
            await ws.send(json.dumps({"setupComplete": {}}))
            player = asyncio.create_task(self._play(ws, state))
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    self._keep(message)
                    problem = self._apply(message, state)
                    if problem:
                        await ws.close(1007, problem)
                        return
                    if "forbidden" in " ".join(p.get("text", "") for p in state["prompts"]):
                        text = next(p["text"] for p in state["prompts"] if "forbidden" in p["text"])
                        reason = "the prompt was flagged by the safety filter"
                        await ws.send(json.dumps({"filteredPrompt": {"text": text, "filteredReason": reason}}))
                        state["prompts"] = []
            finally:
                player.cancel()
        except Exception:  # a client that went away: the session ends
            return
        finally:
            with self.session_ended:
                self.closed_sessions += 1
                self.session_ended.notify_all()

    def _keep(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(message)

    @staticmethod
    def _apply(message: dict[str, Any], state: dict[str, Any]) -> str | None:
        """Apply one client message; a message the service would refuse returns why."""
        if len(message) != 1:
            return "each message carries exactly one field"
        ((kind, body),) = message.items()
        if kind == "clientContent":
            prompts = body.get("weightedPrompts")
            if not isinstance(prompts, list) or not all(isinstance(p, dict) and p.get("text") for p in prompts):
                return "weightedPrompts must be a list of {text, weight}"
            state["prompts"] = prompts
        elif kind == "musicGenerationConfig":
            limits = {"bpm": (60, 200), "density": (0, 1), "brightness": (0, 1), "guidance": (0, 6)}
            for field, (low, high) in limits.items():
                if field in body and not low <= body[field] <= high:
                    return f"{field} out of range [{low}, {high}]"
            state["config"] = body  # the whole config is replaced
        elif kind == "playbackControl":
            if body not in ("PLAY", "PAUSE", "STOP", "RESET_CONTEXT"):
                return f"unknown playbackControl {body!r}"
            if body in ("PLAY", "PAUSE", "STOP"):
                state["playing"] = body == "PLAY"  # RESET_CONTEXT keeps playing as it was
        else:
            return f"unknown message {kind!r}"
        return None

    async def _play(self, ws: Any, state: dict[str, Any]) -> None:
        """While playing and prompted: a chunk of the config's sine every few milliseconds."""
        samples = round(CHUNK_SECONDS * RATE)
        while True:
            await asyncio.sleep(CHUNK_EVERY)
            if not state["playing"] or not state["prompts"]:
                continue
            config = state["config"]
            frequency = 100 + config.get("bpm", 0)
            amplitude = 0.1 + 0.5 * config.get("density", 0)
            t = (state["offset"] + np.arange(samples)) / RATE
            wave = amplitude * np.sin(2 * np.pi * frequency * t)
            pcm = (np.stack([wave, wave]).T * 32767).astype("<i2").tobytes()
            state["offset"] += samples
            chunk = {"data": base64.b64encode(pcm).decode("ascii"), "mimeType": "audio/l16;rate=48000;channels=2"}
            await ws.send(json.dumps({"serverContent": {"audioChunks": [chunk]}}))

    def wait_all_closed(self, timeout: float) -> bool:
        """Wait until every session opened so far has ended; False when `timeout` passed first."""
        with self.session_ended:
            return self.session_ended.wait_for(lambda: self.closed_sessions >= self.sessions, timeout)

    def kinds(self) -> list[str]:
        """The kind of each client message so far (`setup`, `clientContent`, ..., or the playback control)."""
        with self.lock:
            return [
                message["playbackControl"] if "playbackControl" in message else next(iter(message))
                for message in self.messages
            ]

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
