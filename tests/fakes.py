"""Fake Stability and ElevenLabs servers on 127.0.0.1 that follow the vendors' wire contracts.

Real TCP, real HTTP/1.1 (stdlib ThreadingHTTPServer). Each server checks auth, validates like the vendor,
refuses moderated prompts, and can inject faults from a queue: 429 with Retry-After, 500, 503, slow
answers, cut-off bodies, malformed bodies. It counts requests, complete deliveries and peak concurrency.
Contracts: docs/providers/stability.md and docs/providers/elevenlabs.md.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import threading
import time
import uuid
from collections import deque
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import numpy as np
import soundfile as sf

KEY = "test-key-123"


@functools.lru_cache(maxsize=32)
def audio_bytes(seconds: float, fmt: str = "wav", rate: int = 44100, channels: int = 2) -> bytes:
    """A stereo (or mono) chord of the given length, encoded as WAV or MP3 (cached: a service's encoding time is not
    ours)."""
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 277 * t)
    right = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.2 * np.sin(2 * np.pi * 277 * t)
    samples = np.stack([left, right], axis=1)[:, :channels]
    buffer = io.BytesIO()
    if fmt == "mp3":
        sf.write(buffer, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
    else:
        sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def multipart_form(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body as {field: text, or bytes for a file} (the stdlib's email parser)."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        form[name] = part.get_content() if part.get_filename() is None else part.get_payload(decode=True)
    return form


class FakeServer:
    """Base: the HTTP plumbing, fault queue and counters; subclasses implement `handle`."""

    def __init__(self) -> None:
        self.faults: deque[str] = deque()
        self.retry_after = "0.05"
        self.latency = 0.01
        self.requests = 0
        self.delivered = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.bodies: list[Any] = []
        self.auth_seen: list[str | None] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server._dispatch(self)

            do_GET = do_PUT = do_POST

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many concurrent clients: the default backlog of 5 resets connections

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # clients that time out or cancel: expected
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- plumbing ---
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            fault = self.faults.popleft() if self.faults else None
            self.auth_seen.append(h.headers.get("Authorization") or h.headers.get("xi-api-key"))
        try:
            length = int(h.headers.get("Content-Length", 0))
            raw = h.rfile.read(length)
            time.sleep(self.latency)  # service time, so concurrency is visible
            if fault == "429":
                return self.send(h, 429, {"message": "rate limited"}, headers={"Retry-After": self.retry_after})
            if fault in ("500", "503"):
                return self.send(h, int(fault), {"message": "internal error"})
            if fault == "slow":
                time.sleep(1.0)
            self.handle(h, raw, fault)
        finally:
            with self.lock:
                self.in_flight -= 1

    def send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        fault: str | None = None,
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if fault == "malformed":
            data = b"\x00garbage" * 50
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("x-request-id", uuid.uuid4().hex)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        if fault == "truncate":
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(data[: len(data) // 3])
            h.wfile.flush()
            h.close_connection = True
            return
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if fault == "slow_body":
            for start in range(0, len(data), 4096):
                h.wfile.write(data[start : start + 4096])
                h.wfile.flush()
                time.sleep(0.05)
        else:
            h.wfile.write(data)
        if status == 200 and fault != "malformed":
            with self.lock:
                self.delivered += 1

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: str | None) -> None:
        raise NotImplementedError


class FakeStability(FakeServer):
    """`POST /v2beta/audio/stable-audio-2/{text-to-audio,audio-to-audio,inpaint}`, multipart form, Bearer auth.

    The input clip of audio-to-audio and inpaint: mp3 or wav, 6-190 s (ComfyUI's nodes check both endpoints); the
    request at most 50 MB (413 `payload_too_large` above). Inpaint, from Stability's OpenAPI text for
    CreateAudioStableAudio2Inpaint (as reproduced in a generated client)
    and ComfyUI's partner node (comfy_api_nodes/apis/stability.py, nodes_stability.py @65c7777): `audio` required
    (mp3 or wav, 6-190 s), `mask_start` (default 30) and `mask_end` (default 190) in 0-190 s with mask_end >
    mask_start, `model` stable-audio-2.5.
    """

    def error(self, h: BaseHTTPRequestHandler, status: int, name: str, message: str) -> None:
        self.send(h, status, {"id": uuid.uuid4().hex, "name": name, "errors": [message]})

    #: "Requests are at most 50 MB" (the same OpenAPI text).
    max_request_bytes = 50 * 1000 * 1000

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: str | None) -> None:
        if h.headers.get("Authorization") != f"Bearer {KEY}":
            return self.error(h, 401, "unauthorized", "authorization failed")
        if len(raw) > self.max_request_bytes:
            return self.error(h, 413, "payload_too_large", "request body is over 50 MB")
        if fault == "invalid":
            return self.error(h, 400, "bad_request", "cfg_scale: must be between 1 and 25")
        if fault == "proxy_413":  # a proxy in front of the API answers in plain text, without the API's error shape
            return self.send(h, 413, b"Request Entity Too Large", content_type="text/plain")
        path = urlsplit(h.path).path
        endpoints = ("text-to-audio", "audio-to-audio", "inpaint")
        if path not in {f"/v2beta/audio/stable-audio-2/{name}" for name in endpoints}:
            return self.error(h, 404, "not_found", f"{path} not found")
        content_type = h.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            return self.error(h, 400, "bad_request", "content-type must be multipart/form-data")
        form = multipart_form(content_type, raw)
        self.bodies.append(form)
        problems = []
        if not form.get("prompt"):
            problems.append("prompt: required")
        duration = int(form.get("duration", 190))
        if not 1 <= duration <= 190:
            problems.append("duration: must be between 1 and 190")
        if form.get("model", "stable-audio-2") not in ("stable-audio-2", "stable-audio-2.5"):
            problems.append("model: invalid")
        if path.endswith(("audio-to-audio", "inpaint")) and "audio" not in form:
            problems.append("audio: required")
        if "audio" in form:
            head = form["audio"][:4]
            if not (head == b"RIFF" or head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")):
                problems.append("audio: must be mp3 or wav")
            elif not 6 <= sf.info(io.BytesIO(form["audio"])).duration <= 190:
                problems.append("audio: must be 6-190 seconds long")
        if path.endswith("inpaint") and "audio" in form:
            start, end = float(form.get("mask_start", 30)), float(form.get("mask_end", 190))
            if not (0 <= start <= 190 and 0 <= end <= 190 and end > start):
                problems.append("mask_start/mask_end: 0-190 s with mask_end > mask_start")
            if form.get("model") != "stable-audio-2.5":
                problems.append("model: inpaint is stable-audio-2.5")
        if problems:
            return self.error(h, 400, "bad_request", "; ".join(problems))
        if "forbidden" in form["prompt"]:
            return self.error(h, 403, "content_moderation", "Your request was flagged by our content moderation system")
        fmt = form.get("output_format", "mp3")
        accept = h.headers.get("Accept", "")
        # "short": an answer a few milliseconds under the duration asked for (an encoder's frame rounding).
        audio = audio_bytes(duration - 0.02 if fault == "short" else duration, fmt)
        if accept.startswith("application/json"):
            import base64

            return self.send(
                h,
                200,
                {
                    "audio": base64.b64encode(audio).decode(),
                    "finish_reason": "SUCCESS",
                    "seed": int(form.get("seed", 0)),
                },
                fault=fault,
            )
        self.send(
            h,
            200,
            audio,
            content_type="audio/mpeg" if fmt == "mp3" else "audio/wav",
            # "filtered": the moderation outcome the v2beta API documents in the finish-reason header (200 OK).
            headers={
                "finish-reason": "CONTENT_FILTERED" if fault == "filtered" else "SUCCESS",
                "seed": str(form.get("seed", 0)),
            },
            fault=fault,
        )


#: The stems of each separation variation. The SDK documents only "a ZIP archive containing separated audio stems,
#: each ... in the requested output format": these file names are the fake's guess (UNCONFIRMED).
ELEVEN_STEMS = {
    "two_stems_v1": ("vocals", "instrumental"),
    "six_stems_v1": ("vocals", "drums", "bass", "guitar", "piano", "other"),
}


class FakeElevenLabs(FakeServer):
    """`POST /v1/music?output_format=…`, JSON body, `xi-api-key` auth, audio bytes back; `POST
    /v1/music/stem-separation` (multipart `file`, `stem_variation_id`; elevenlabs 2.78 `music/raw_client.py`
    `separate_stems`), a ZIP of stems back; `POST /v1/music/stream` (`stream_mp3`)."""

    #: Set by a test to hold a stream after its first pieces until the test has seen them arrive.
    stream_gate: threading.Event | None = None

    def separate(self, h: BaseHTTPRequestHandler, raw: bytes, query: dict[str, list[str]], fault: str | None) -> None:
        import zipfile

        content_type = h.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            return self.send(
                h, 422, {"detail": [{"loc": ["body"], "msg": "multipart required", "type": "value_error"}]}
            )
        form = multipart_form(content_type, raw)
        self.bodies.append(form)
        variation = form.get("stem_variation_id", "six_stems_v1")
        if "file" not in form or variation not in ELEVEN_STEMS:
            problem = {"loc": ["body", "file" if "file" not in form else "stem_variation_id"], "msg": "invalid"}
            return self.send(h, 422, {"detail": [{**problem, "type": "value_error"}]})
        seconds = sf.info(io.BytesIO(form["file"])).duration
        fmt = query.get("output_format", ["mp3_44100_128"])[0]
        rate = int(fmt.split("_")[1])
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            for stem in ELEVEN_STEMS[variation]:
                z.writestr(f"{stem}.mp3", audio_bytes(round(seconds, 2), "mp3", rate))
        self.send(h, 200, archive.getvalue(), content_type="application/zip", fault=fault)

    def sound_effect(
        self, h: BaseHTTPRequestHandler, raw: bytes, query: dict[str, list[str]], fault: str | None
    ) -> None:
        """`POST /v1/sound-generation` (elevenlabs 2.78 `text_to_sound_effects/raw_client.py`): `text` required,
        `duration_seconds` 0.5-30 or null, `prompt_influence` 0-1, `loop`, `model_id` of `SfxModelId`."""
        body = json.loads(raw or b"{}")
        self.bodies.append(body)
        problems = []
        if not isinstance(body.get("text"), str) or not body["text"]:
            problems.append((["body", "text"], "field required"))
        seconds = body.get("duration_seconds")
        if seconds is not None and not 0.5 <= seconds <= 30:
            problems.append((["body", "duration_seconds"], "must be between 0.5 and 30"))
        influence = body.get("prompt_influence", 0.3)
        if not 0 <= influence <= 1:
            problems.append((["body", "prompt_influence"], "must be between 0 and 1"))
        if body.get("model_id", "eleven_text_to_sound_v2") not in (
            "eleven_text_to_sound_v2",
            "eleven_text_to_sound_v3",
        ):
            problems.append((["body", "model_id"], "unknown model"))
        fmt = query.get("output_format", ["mp3_44100_128"])[0]
        kind, rate = fmt.split("_")[0], int(fmt.split("_")[1])
        if kind not in ("mp3", "wav"):
            problems.append((["query", "output_format"], "unsupported here"))
        if problems:
            return self.send(
                h, 422, {"detail": [{"loc": loc, "msg": msg, "type": "value_error"} for loc, msg in problems]}
            )
        if "forbidden" in body["text"]:
            refusal = {"status": "bad_prompt", "message": "The prompt was flagged", "data": {}}
            return self.send(h, 400, {"detail": refusal})
        data = audio_bytes(float(seconds or 5.0), kind, rate)
        self.send(h, 200, data, content_type="audio/mpeg" if kind == "mp3" else "audio/wav", fault=fault)

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: str | None) -> None:
        if h.headers.get("xi-api-key") != KEY:
            return self.send(h, 401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
        if fault == "invalid":
            return self.send(
                h, 422, {"detail": [{"loc": ["body", "model_id"], "msg": "unknown model", "type": "value_error"}]}
            )
        parts = urlsplit(h.path)
        if parts.path == "/v1/music/stem-separation":
            return self.separate(h, raw, parse_qs(parts.query), fault)
        if parts.path == "/v1/sound-generation":
            return self.sound_effect(h, raw, parse_qs(parts.query), fault)
        if parts.path not in ("/v1/music", "/v1/music/stream"):
            return self.send(h, 404, {"detail": "Not Found"})
        try:
            body = json.loads(raw)
        except ValueError:
            return self.send(h, 422, {"detail": [{"loc": ["body"], "msg": "invalid JSON", "type": "json_invalid"}]})
        self.bodies.append(body)
        query = parse_qs(parts.query)
        fmt = query.get("output_format", ["mp3_44100_128"])[0]
        if ("prompt" in body) == ("composition_plan" in body):
            return self.send(
                h, 422, {"detail": [{"loc": ["body"], "msg": "give prompt or composition_plan", "type": "value_error"}]}
            )
        if "prompt" in body and "seed" in body:
            return self.send(
                h,
                422,
                {
                    "detail": [
                        {"loc": ["body", "seed"], "msg": "seed cannot be used with prompt", "type": "value_error"}
                    ]
                },
            )
        length = body.get("music_length_ms", 10000)
        if "composition_plan" in body:
            problems = _plan_problems(body["composition_plan"], body.get("model_id", "music_v1"))
            if problems:
                return self.send(
                    h,
                    422,
                    {
                        "detail": [
                            {"loc": ["body", "composition_plan", *where], "msg": msg, "type": "value_error"}
                            for where, msg in problems
                        ]
                    },
                )
            length = _plan_ms(body["composition_plan"])
        if not 3000 <= length <= 600000:
            return self.send(
                h,
                422,
                {
                    "detail": [
                        {
                            "loc": ["body", "music_length_ms"],
                            "msg": "must be between 3000 and 600000",
                            "type": "value_error",
                        }
                    ]
                },
            )
        if "forbidden" in body.get("prompt", ""):
            return self.send(
                h,
                400,
                {
                    "detail": {
                        "status": "bad_prompt",
                        "message": "The prompt references a copyrighted artist",
                        "data": {"prompt_suggestion": "upbeat pop"},
                    }
                },
            )
        if not fmt.startswith("mp3_"):
            return self.send(
                h,
                422,
                {"detail": [{"loc": ["query", "output_format"], "msg": "unsupported here", "type": "value_error"}]},
            )
        rate = int(fmt.split("_")[1])
        # `store_for_inpainting` returns the stored song's id in a `song-id` header (the SDK's music_custom.py reads
        # `r.headers.get("song-id")`).
        headers = {"song-id": uuid.uuid4().hex} if body.get("store_for_inpainting") else {}
        if parts.path == "/v1/music/stream":
            return self.stream_mp3(h, audio_bytes(length / 1000, "mp3", rate), headers, fault)
        self.send(
            h, 200, audio_bytes(length / 1000, "mp3", rate), content_type="audio/mpeg", headers=headers, fault=fault
        )

    def stream_mp3(self, h: BaseHTTPRequestHandler, data: bytes, headers: dict[str, str], fault: str | None) -> None:
        """`POST /v1/music/stream`: the SDK reads it with `httpx_client.stream()` and yields `iter_bytes()` pieces
        (elevenlabs 2.78 `music/raw_client.py` `stream()`): a chunked answer of audio/mpeg. An encoder that streams
        cannot know the total length for a Xing/Info frame, so none is sent (its presence in a live stream is
        UNCONFIRMED either way); the first piece is sent, then the rest once `stream_gate` (when set by a test) is
        released, so a test can see audio arrive before the whole has been sent. `fault="drop"` closes the
        connection after the first piece; `fault="garbage"` streams bytes that are no MP3 (a broken encoder)."""
        first = _without_info_frame(data) if fault != "garbage" else bytes(range(256)) * 400
        h.send_response(200)
        h.send_header("Content-Type", "audio/mpeg")
        h.send_header("Transfer-Encoding", "chunked")
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        pieces = [first[i : i + 16384] for i in range(0, len(first), 16384)]
        for index, piece in enumerate(pieces):
            h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            h.wfile.flush()
            if index == 3:
                if fault == "drop":
                    h.close_connection = True
                    return
                if self.stream_gate is not None:
                    self.stream_gate.wait(30)
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


def _without_info_frame(mp3: bytes) -> bytes:
    """The MP3 without its leading ID3 tag and Xing/Info frame (what a live encoder would send)."""
    start = 0
    if mp3[:3] == b"ID3":
        start = 10 + ((mp3[6] << 21) | (mp3[7] << 14) | (mp3[8] << 7) | mp3[9])
    header = int.from_bytes(mp3[start : start + 4], "big")
    rates = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)
    size = 144 * rates[(header >> 12) & 0xF] * 1000 // (44100, 48000, 32000, 0)[(header >> 10) & 3] + (
        (header >> 9) & 1
    )
    if b"Xing" in mp3[start : start + size] or b"Info" in mp3[start : start + size]:
        start += size
    return mp3[start:]


def _plan_problems(plan: Any, model: str) -> list[tuple[list[str | int], str]]:
    """What the API refuses in a composition plan, from the official SDK's types (elevenlabs 2.x,
    `types/music_prompt.py`: "Composition plan for the `music_v1` model. Using this field with any other model
    will result in an error"; `types/song_section.py`: every field required, a name of 1-100 characters,
    3000-120000 ms, at most 30 lines of at most 200 characters); for music_v2/music_v2_5 `types/composition_plan.py`
    ("Composition plan for the `music_v2` and `music_v2_5` models"), `generation_chunk_input.py`,
    `audio_ref_chunk.py`, `time_range.py`)."""
    if not isinstance(plan, dict):
        return [([], "must be an object")]
    if model in ("music_v2", "music_v2_5"):
        return _chunk_problems(plan)
    if model != "music_v1":
        return [([], f"a composition plan of this shape is for music_v1, not {model}")]
    problems: list[tuple[list[str | int], str]] = []
    for key in ("positive_global_styles", "negative_global_styles", "sections"):
        if not isinstance(plan.get(key), list):
            problems.append(([key], "field required (a list)"))
    for i, section in enumerate(plan.get("sections") or []):
        for key, kind in (
            ("section_name", str),
            ("positive_local_styles", list),
            ("negative_local_styles", list),
            ("duration_ms", int),
            ("lines", list),
        ):
            if not isinstance(section.get(key), kind):
                problems.append((["sections", i, key], f"field required ({kind.__name__})"))
        if problems:
            continue
        if not 1 <= len(section["section_name"]) <= 100:
            problems.append((["sections", i, "section_name"], "must be 1-100 characters"))
        if not 3000 <= section["duration_ms"] <= 120000:
            problems.append((["sections", i, "duration_ms"], "must be between 3000 and 120000"))
        if len(section["lines"]) > 30 or any(len(line) > 200 for line in section["lines"]):
            problems.append((["sections", i, "lines"], "at most 30 lines of at most 200 characters"))
    return problems


def _chunk_problems(plan: dict[str, Any]) -> list[tuple[list[str | int], str]]:
    """`CompositionPlan.chunks`: each a GenerationChunkInput (`text`, `duration_ms` 3000-120000, `positive_styles`
    required; a text of at most 30 lines of at most 200 characters) or an AudioRefChunk (`song_id`, `range`)."""
    chunks = plan.get("chunks")
    if not isinstance(chunks, list) or not chunks:
        return [(["chunks"], "field required (a non-empty list)")]
    problems: list[tuple[list[str | int], str]] = []
    for i, chunk in enumerate(chunks):
        if not isinstance(chunk, dict):
            problems.append((["chunks", i], "must be an object"))
        elif "song_id" in chunk:
            window = chunk.get("range") or {}
            if not (isinstance(window.get("start_ms"), int) and isinstance(window.get("end_ms"), int)):
                problems.append((["chunks", i, "range"], "field required (start_ms, end_ms)"))
        else:
            for key, kind in (("text", str), ("duration_ms", int), ("positive_styles", list)):
                if not isinstance(chunk.get(key), kind):
                    problems.append((["chunks", i, key], f"field required ({kind.__name__})"))
            if problems:
                continue
            if not 3000 <= chunk["duration_ms"] <= 120000:
                problems.append((["chunks", i, "duration_ms"], "must be between 3000 and 120000"))
            lines = chunk["text"].splitlines()
            if len(lines) > 30 or any(len(line) > 200 for line in lines):
                problems.append((["chunks", i, "text"], "at most 30 lines of at most 200 characters"))
    return problems


def _plan_ms(plan: dict[str, Any]) -> int:
    """A plan's total length: its sections' or its chunks' durations (a song reference: its range)."""
    if "sections" in plan:
        return sum(s.get("duration_ms", 0) for s in plan["sections"])
    return sum(
        c["range"]["end_ms"] - c["range"]["start_ms"] if "song_id" in c else c.get("duration_ms", 0)
        for c in plan.get("chunks", [])
    )


class JobServer(FakeServer):
    """Shared job life cycle: queued, running, then succeeded; prompts containing `fail`, `lost` or `slow`
    make the job fail, vanish (404 on status) or run for 100 s. Output files are served from /files/."""

    job_seconds = 0.2
    #: The rate of the model the fake stands for (MusicGen on Replicate: 32 kHz).
    output_rate = 32000

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.cancelled: list[str] = []
        super().__init__()

    def new_job(self, job_input: dict[str, Any]) -> dict[str, Any]:
        prompt = str(job_input.get("prompt", ""))
        job = {
            "id": uuid.uuid4().hex[:12],
            "input": job_input,
            "created": time.monotonic(),
            "canceled": False,
            "fail": "fail" in prompt,
            "lost": "lost" in prompt,
            "seconds": 100.0 if "slow" in prompt else self.job_seconds,
        }
        self.jobs[job["id"]] = job
        return job

    def phase(self, job: dict[str, Any]) -> str:
        if job["canceled"]:
            return "canceled"
        elapsed = time.monotonic() - job["created"]
        if elapsed < job["seconds"] / 2:
            return "queued"
        if elapsed < job["seconds"]:
            return "running"
        return "failed" if job["fail"] else "succeeded"

    def serve_file(self, h: BaseHTTPRequestHandler, job_id: str, fault: str | None) -> None:
        job_input = self.jobs[job_id]["input"] if job_id in self.jobs else {}
        seconds = float(job_input.get("duration", job_input.get("seconds_total", 3)))
        self.send(h, 200, audio_bytes(seconds, "wav", self.output_rate), content_type="audio/wav", fault=fault)


class FakeReplicate(JobServer):
    """Replicate predictions API (see docs/providers/replicate.md).

    Models, from Replicate's HTTP API reference (models.get) and replicate-python's `Model`/`Version` types: a
    community model (meta/musicgen) has versions and refuses the official-model route with 422 "Invalid version or
    not permitted" (as users of the client report); an official model without published versions runs through
    `/v1/models/{owner}/{name}/predictions`, or `/v1/predictions {"version": "owner/name"}` (Replicate changelog
    2025-08-05). A prompt with "forbidden" fails the prediction the way a safety checker does: status `failed`,
    `error` "E005 ... flagged as sensitive" (a plain string; the wording users report, not in Replicate's docs).
    """

    #: owner/name -> latest version id (None: an official model that publishes no version).
    models: ClassVar[dict[str, str | None]] = {
        "meta/musicgen": "671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb",
        "someone/sfx-model": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
        "official-lab/official-audio": None,
    }

    #: Older versions a caller may pin (version id -> model).
    pinned: ClassVar[dict[str, str]] = {
        "b05b1dff1d8c6dc63d14b0cdb42135378dcb87f6373b0d3d341ede46e59e2b38": "meta/musicgen"
    }

    def __init__(self) -> None:
        self.model_lookups = 0
        self.polled = threading.Event()  # set by the first status poll of any prediction
        super().__init__()

    def model_of(self, version: str) -> str | None:
        """The model a version id belongs to (None: no such version)."""
        owners = {v: m for m, v in self.models.items() if v is not None} | self.pinned
        return owners.get(version)

    def model(self, name: str) -> dict[str, Any]:
        owner, _, short = name.partition("/")
        latest = self.models[name]
        version = (
            None
            if latest is None
            else {"id": latest, "created_at": "2026-01-01T00:00:00Z", "cog_version": "0.16.8", "openapi_schema": {}}
        )
        return {
            "url": f"https://replicate.com/{name}",
            "owner": owner,
            "name": short,
            "description": "a model",
            "visibility": "public",
            "github_url": None,
            "paper_url": None,
            "license_url": None,
            "run_count": 1,
            "cover_image_url": None,
            "default_example": None,
            "latest_version": version,
        }

    def prediction(self, job: dict[str, Any]) -> dict[str, Any]:
        phase = self.phase(job)
        status = {"queued": "starting", "running": "processing"}.get(phase, phase)
        # "aborted: the prediction exceeded its deadline before it could start running" (Replicate's prediction
        # lifecycle docs; replicate-python PR #460 added it to the terminal statuses): a prompt with "deadline".
        prompt = str(job["input"].get("prompt", ""))
        if "deadline" in prompt and phase != "queued":
            status = "aborted"
        refused = "forbidden" in prompt and phase not in ("queued", "canceled")
        if refused:
            status = "failed"
        urls = {
            "get": f"{self.url}/v1/predictions/{job['id']}",
            "cancel": f"{self.url}/v1/predictions/{job['id']}/cancel",
        }
        error = None
        if refused:
            error = "E005: The input or output was flagged as sensitive. Please try again with different inputs."
        elif status == "failed":
            error = "CUDA out of memory"
        return {
            "id": job["id"],
            "model": job.get("model"),
            "version": job.get("version") or "hidden",
            "status": status,
            "input": job["input"],
            "logs": "",
            "output": f"{self.url}/files/{job['id']}.wav" if status == "succeeded" else None,
            "error": error,
            # Replicate's prediction docs: metrics.predict_time, the seconds the model ran (what is billed).
            "metrics": {"predict_time": job["seconds"]} if status == "succeeded" else {},
            "created_at": "2026-11-27T00:00:00Z",
            "urls": urls,
        }

    def problem(self, h: BaseHTTPRequestHandler, status: int, title: str, detail: str) -> None:
        self.send(h, status, {"title": title, "detail": detail, "status": status})

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: str | None) -> None:
        path = urlsplit(h.path).path
        if path.startswith("/files/"):
            return self.serve_file(h, path.removeprefix("/files/").removesuffix(".wav"), fault)
        if h.headers.get("Authorization") != f"Bearer {KEY}":
            return self.problem(h, 401, "Unauthenticated", "You did not pass a valid token")
        parts = path.strip("/").split("/")
        if h.command == "GET" and len(parts) == 4 and parts[:2] == ["v1", "models"]:
            name = "/".join(parts[2:4])
            if name not in self.models:
                return self.problem(h, 404, "Not found", "Not found.")
            with self.lock:
                self.model_lookups += 1
            return self.send(h, 200, self.model(name))
        if h.command == "POST" and (path == "/v1/predictions" or (len(parts) == 5 and parts[4] == "predictions")):
            body = json.loads(raw or b"{}")
            self.bodies.append(body)
            if not isinstance(body.get("input"), dict) or "prompt" not in body["input"]:
                return self.problem(h, 422, "Input validation failed", "input.prompt is required")
            model, version = ("/".join(parts[2:4]), None) if len(parts) == 5 else (None, body.get("version"))
            if model is None:
                if not isinstance(version, str) or not version:
                    return self.problem(h, 422, "Invalid version", "version is required")
                if ":" in version:  # owner/name:version
                    version = version.rpartition(":")[2]
                elif "/" in version:  # "owner/name": official models only (changelog 2025-08-05)
                    model, version = version, None
                if version is not None:
                    model = self.model_of(version)
                    if model is None:
                        return self.problem(h, 422, "Invalid version or not permitted", "no such version")
            if version is None and self.models.get(str(model), "unknown") is not None:
                return self.problem(h, 422, "Invalid version or not permitted", "Invalid version or not permitted")
            job = self.new_job(body["input"])
            job["model"], job["version"] = model, version
            if h.headers.get("Prefer", "").startswith("wait") and job["seconds"] < 1:
                time.sleep(job["seconds"] + 0.01)
            return self.send(h, 201, self.prediction(job))
        if len(parts) >= 3 and parts[:2] == ["v1", "predictions"]:
            job = self.jobs.get(parts[2])
            if job is None or job["lost"]:
                return self.problem(h, 404, "Not found", "Prediction not found")
            if h.command == "POST" and parts[-1] == "cancel":
                job["canceled"] = True
                self.cancelled.append(job["id"])
            else:
                self.polled.set()
            return self.send(h, 200, self.prediction(job))
        self.problem(h, 404, "Not found", path)


#: fal app input schemas, from the apps' pages on fal.ai (fal.ai/models/{app}/llms.txt and /api, read 2026-12-02):
#: field -> (type, minimum, maximum).
#: Real apps ignore keys they do not define, so the fake records them in `FakeFal.ignored` instead of refusing.
FAL_APPS: dict[str, dict[str, Any]] = {
    "fal-ai/stable-audio": {
        "fields": {
            "prompt": (str, None, None),
            "seconds_start": (int, 0, 47),
            "seconds_total": (int, 0, 47),
            "steps": (int, 2, 1000),
        },
        "rate": 44100,
        "key": "audio_file",
    },
    "fal-ai/stable-audio-25/text-to-audio": {
        "fields": {
            "prompt": (str, None, None),
            "seconds_total": (int, 1, 190),
            "num_inference_steps": (int, 4, 8),
            "guidance_scale": ((int, float), 1, 25),
            "sync_mode": (bool, None, None),
            "seed": (int, None, None),
        },
        "rate": 44100,
        "key": "audio",
    },
    # fal.ai/models/fal-ai/elevenlabs/music/llms.txt and fal.ai/models/elevenlabs/music/v2/llms.txt.
    "fal-ai/elevenlabs/music": {
        "fields": {
            "prompt": (str, None, None),
            "composition_plan": (dict, None, None),
            "music_length_ms": (int, 3000, 600000),
            "force_instrumental": (bool, None, None),
        },
        "rate": 44100,
        "key": "audio",
    },
    "elevenlabs/music/v2": {
        "fields": {
            "prompt": (str, None, None),
            "composition_plan": (dict, None, None),
            "music_length_ms": (int, 3000, 600000),
            "force_instrumental": (bool, None, None),
        },
        "rate": 48000,
        "key": "audio",
    },
    # fal's own client's types (@fal-ai/client 1.10.1 src/types/endpoints.d.ts, `AceStepInput`): `tags` is required.
    "fal-ai/ace-step": {
        "fields": {
            "tags": (str, None, None),
            "lyrics": (str, None, None),
            "duration": ((int, float), None, None),  # the types give no ranges
            "number_of_steps": (int, None, None),
            "guidance_scale": ((int, float), None, None),
            "granularity_scale": ((int, float), None, None),
            "guidance_interval": ((int, float), None, None),
            "guidance_type": (str, None, None),
            "scheduler": (str, None, None),
            "seed": (int, None, None),
        },
        "required": "tags",
        "rate": 48000,
        "key": "audio",
    },
    "fal-ai/lyria2": {
        "fields": {"prompt": (str, None, None), "negative_prompt": (str, None, None), "seed": (int, None, None)},
        "rate": 48000,
        "key": "audio",
        "clip": 30.0,
    },
}


class FakeFal(JobServer):
    """fal queue API (see docs/providers/fal.md), with the app schemas of `FAL_APPS`.

    Errors as fal documents them (fal.ai/docs/documentation/model-apis/errors and .../request-errors): input problems
    are a 422 whose `detail` is a list of typed objects (`content_policy_violation` for a prompt with "forbidden"),
    returned from the response URL once the request completed; a runner failure is a flat `{detail, error_type}`
    with `X-Fal-Error-Type` and `X-Fal-Retryable: false`.
    """

    output_rate = 44100  # fal-ai/stable-audio runs Stable Audio Open: 44.1 kHz stereo (its model card)

    def __init__(self) -> None:
        self.ignored: list[str] = []
        self.result_fetches: dict[str, int] = {}
        super().__init__()

    def validate(self, app: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []
        schema = FAL_APPS.get(app)
        required = (schema or {}).get("required", "prompt")
        if not isinstance(body.get(required), str):
            problems.append({"loc": ["body", required], "msg": "field required", "type": "missing"})
        if schema is None:
            return problems
        for key, value in body.items():
            if key not in schema["fields"]:
                self.ignored.append(key)
                continue
            kind, low, high = schema["fields"][key]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                problems.append({"loc": ["body", key], "msg": "wrong type", "type": "type_error"})
            elif (low is not None and value < low) or (high is not None and value > high):
                problems.append({"loc": ["body", key], "msg": f"must be in {low}..{high}", "type": "value_error"})
        return problems

    def serve_file(self, h: BaseHTTPRequestHandler, job_id: str, fault: str | None) -> None:
        job = self.jobs.get(job_id, {"input": {}, "app": ""})
        schema = FAL_APPS.get(job["app"], {})
        given = job["input"]
        seconds = schema.get("clip") or (
            given["music_length_ms"] / 1000
            if "music_length_ms" in given
            else float(given.get("seconds_total", given.get("duration", 3)))
        )
        data = audio_bytes(seconds, "wav", schema.get("rate", self.output_rate))
        self.send(h, 200, data, content_type="audio/wav", fault=fault)

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: str | None) -> None:
        path = urlsplit(h.path).path
        if path.startswith("/files/"):
            return self.serve_file(h, path.removeprefix("/files/").removesuffix(".wav"), fault)
        if h.headers.get("Authorization") != f"Key {KEY}":
            return self.send(h, 401, {"detail": "Unauthorized"})
        parts = path.strip("/").split("/")
        if h.command == "POST" and "requests" not in parts:
            body = json.loads(raw or b"{}")
            self.bodies.append(body)
            app = "/".join(parts)
            problems = self.validate(app, body)
            if problems:
                return self.send(h, 422, {"detail": problems})
            job = self.new_job(body)
            job["app"] = app
            base = f"{self.url}/{parts[0]}/{parts[1]}/requests/{job['id']}"
            return self.send(
                h,
                200,
                {
                    "request_id": job["id"],
                    "status_url": f"{base}/status",
                    "response_url": base,
                    "cancel_url": f"{base}/cancel",
                    "queue_position": 0,
                },
            )
        if len(parts) >= 4 and parts[2] == "requests":
            job = self.jobs.get(parts[3])
            if job is None or job["lost"]:
                return self.send(h, 404, {"detail": "Request not found"})
            phase = self.phase(job)
            refused = "forbidden" in str(job["input"].get("prompt", ""))
            if h.command == "PUT" and parts[-1] == "cancel":
                job["canceled"] = True
                self.cancelled.append(job["id"])
                return self.send(h, 202, {"status": "CANCELLATION_REQUESTED"})
            if parts[-1] == "status":
                # The first status poll always finds the job in the queue, as a fresh fal request is: on a loaded
                # machine the first poll may come after the job's queued time, and a test of the queued phase flaked.
                first_poll = not job.get("polled")
                job["polled"] = True
                if phase == "queued" or (first_poll and phase in ("running", "succeeded", "failed")):
                    return self.send(h, 200, {"status": "IN_QUEUE", "queue_position": 0})
                if phase == "running":
                    return self.send(h, 200, {"status": "IN_PROGRESS", "logs": []})
                done: dict[str, Any] = {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 0.1}}
                if phase in ("failed", "canceled"):
                    done |= {"error": "job " + phase, "error_type": "runner_error"}
                elif refused:
                    done |= {"error": "Unprocessable Entity", "error_type": "content_policy_violation"}
                return self.send(h, 200, done)
            if phase in ("queued", "running"):
                return self.send(h, 400, {"detail": "Request is still in progress"})
            with self.lock:
                self.result_fetches[job["id"]] = self.result_fetches.get(job["id"], 0) + 1
            if refused:
                flagged = {
                    "loc": ["body", "prompt"],
                    "msg": "The content was flagged by a content checker.",
                    "type": "content_policy_violation",
                    "url": "https://docs.fal.ai/errors#content_policy_violation",
                    "input": job["input"]["prompt"],
                    "categories": ["violence"],
                }
                return self.send(h, 422, {"detail": [flagged]}, headers={"X-Fal-Retryable": "false"})
            if phase != "succeeded":
                failure = {"detail": "the runner failed", "error_type": "runner_error"}
                headers = {"X-Fal-Error-Type": "runner_error", "X-Fal-Retryable": "false"}
                return self.send(h, 500, failure, headers=headers)
            url = f"{self.url}/files/{job['id']}.wav"
            key = FAL_APPS.get(job["app"], {}).get("key", "audio")
            return self.send(
                h,
                200,
                {key: {"url": url, "content_type": "audio/wav", "file_name": "out.wav", "file_size": 1}},
            )
        self.send(h, 404, {"detail": "Not Found"})


class FakeLyria(FakeServer):
    """Vertex AI `lyria-002:predict` (see docs/providers/lyria.md); `audio_key` picks the base64 field name."""

    audio_key = "bytesBase64Encoded"

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: str | None) -> None:
        import base64

        if h.headers.get("Authorization") != f"Bearer {KEY}":
            return self.send(
                h,
                401,
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
            )
        path = urlsplit(h.path).path
        if not path.endswith("/publishers/google/models/lyria-002:predict"):
            return self.send(h, 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
        body = json.loads(raw or b"{}")
        self.bodies.append(body)
        instance = (body.get("instances") or [{}])[0]
        count = body.get("parameters", {}).get("sample_count", 1)
        if "seed" in instance and count > 1:
            return self.send(
                h,
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "seed and sample_count are mutually exclusive",
                        "status": "INVALID_ARGUMENT",
                    }
                },
            )
        if "forbidden" in instance.get("prompt", ""):
            return self.send(
                h,
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "The prompt was blocked by safety filters",
                        "status": "INVALID_ARGUMENT",
                    }
                },
            )
        clip = base64.b64encode(audio_bytes(32.8, "wav", 48000)).decode()
        predictions = [{self.audio_key: clip, "mimeType": "audio/wav"} for _ in range(count)]
        model = "projects/p/locations/l/publishers/google/models/lyria-002"
        self.send(h, 200, {"predictions": predictions, "deployedModelId": "1", "model": model}, fault=fault)


def _google_error(code: int, status: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """Google's error body (google.rpc.Status as JSON), as google-genai's `errors.APIError` reads it."""
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


class FakeGemini(FakeServer):
    """Lyria 3 / 3.5 on the Gemini API (see docs/providers/gemini.md).

    From google-genai 3.6.1 (`models.generate_content`: `POST /{version}/models/{model}:generateContent`, the key in
    `x-goog-api-key`, camelCase proto-JSON; `interactions.create`: `POST /{version}/interactions`; `errors.py`) and
    ai.google.dev's music-generation page: `lyria-3-clip-preview` makes a 30 s MP3, `lyria-3-pro-preview` a song in MP3
    or WAV, `lyria-3.5` answers through interactions (`steps[].content[]` with text and audio blocks). Both answer the
    lyrics/structure as text. A bad key is 400 `API_KEY_INVALID`; a prompt with "forbidden" is blocked
    (`promptFeedback.blockReason`), one with "unsafe" stops with `finishReason: SAFETY`; the `quota` fault is a 429
    `RESOURCE_EXHAUSTED` with a `google.rpc.RetryInfo` delay.
    """

    models = ("lyria-3-clip-preview", "lyria-3-pro-preview")
    #: model -> (seconds, format, sample rate) of what it answers.
    audio: ClassVar[dict[str, tuple[float, str, int]]] = {
        "lyria-3-clip-preview": (30.0, "mp3", 44100),
        "lyria-3-pro-preview": (40.0, "wav", 48000),
        "lyria-3.5": (40.0, "mp3", 44100),
    }

    def __init__(self) -> None:
        self.billed: list[str] = []  # the prompt of every song made (what Google would charge for)
        super().__init__()

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: str | None) -> None:
        import base64

        if h.headers.get("x-goog-api-key") != KEY:
            reason = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            error = _google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [reason])
            return self.send(h, 400, error)
        if fault in ("quota", "daily-quota"):  # a daily quota asks for a wait of hours, in the body
            wait = "0.05s" if fault == "quota" else "36000s"
            delay = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": wait}
            return self.send(h, 429, _google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", [delay]))
        path = urlsplit(h.path).path
        body = json.loads(raw or b"{}")
        self.bodies.append(body)
        version, _, rest = path.strip("/").partition("/")
        if version not in ("v1beta", "v1"):
            return self.send(h, 404, _google_error(404, "NOT_FOUND", f"{path} not found"))
        if rest == "interactions":
            return self.interaction(h, body, fault)
        model, _, method = rest.removeprefix("models/").partition(":")
        if model not in self.models or method != "generateContent":
            message = f"models/{model} is not found for API version {version}, or is not supported for {method}."
            return self.send(h, 404, _google_error(404, "NOT_FOUND", message))
        try:
            text = body["contents"][0]["parts"][0]["text"]
        except (KeyError, IndexError, TypeError):
            return self.send(h, 400, _google_error(400, "INVALID_ARGUMENT", "contents[0].parts[0].text is required"))
        config = body.get("generationConfig", {})
        mime = config.get("responseMimeType", "audio/mpeg")
        if "AUDIO" not in config.get("responseModalities", []):
            return self.send(h, 400, _google_error(400, "INVALID_ARGUMENT", "Lyria only answers AUDIO"))
        if mime not in ("audio/mpeg", "audio/wav") or (mime == "audio/wav" and model != "lyria-3-pro-preview"):
            return self.send(h, 400, _google_error(400, "INVALID_ARGUMENT", f"{mime} is not supported by {model}"))
        if "forbidden" in text:
            return self.send(h, 200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "modelVersion": model})
        if "unsafe" in text:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": []}, "finishReason": "SAFETY"}
            return self.send(h, 200, {"candidates": [candidate], "modelVersion": model})
        seconds, _, rate = self.audio[model]
        with self.lock:
            self.billed.append(text)
        fmt = "wav" if mime == "audio/wav" else "mp3"
        audio = base64.b64encode(audio_bytes(seconds, fmt, rate)).decode()
        parts = [{"text": "[Verse]\nrain on the window"}, {"inlineData": {"mimeType": mime, "data": audio}}]
        answer = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
            "modelVersion": model,
            "responseId": uuid.uuid4().hex,
        }
        self.send(h, 200, answer, fault=fault)

    def interaction(self, h: BaseHTTPRequestHandler, body: dict[str, Any], fault: str | None) -> None:
        import base64

        if body.get("model") != "lyria-3.5" or not isinstance(body.get("input"), str):
            return self.send(h, 400, {"error": {"code": "invalid_argument", "message": "model and input are required"}})
        seconds, fmt, rate = self.audio["lyria-3.5"]
        audio = {
            "type": "audio",
            "mime_type": "audio/mp3",
            "data": base64.b64encode(audio_bytes(seconds, fmt, rate)).decode(),
        }
        if "forbidden" in body["input"]:
            # A failed interaction: its reasons in `errors`, a list of {code, message} whose code is a URI naming
            # the error type (google-genai _gaos/types/interactions/interaction.py `errors`, error.py `Error`).
            failed = {
                "id": uuid.uuid4().hex,
                "status": "failed",
                "model": "lyria-3.5",
                "errors": [{"code": "type.googleapis.com/SAFETY", "message": "The prompt was blocked for safety."}],
            }
            return self.send(h, 200, failed, fault=fault)
        answer = {
            "id": uuid.uuid4().hex,
            "status": "completed",
            "model": "lyria-3.5",
            "created": "2026-12-02T00:00:00Z",
            "updated": "2026-12-02T00:00:30Z",
            "steps": [{"type": "model_output", "content": [{"type": "text", "text": "[Chorus]\nla la"}, audio]}],
        }
        self.send(h, 200, answer, fault=fault)


class FakeMiniMax(FakeServer):
    """MiniMax Music, `POST /v1/music_generation` and `POST /v1/music_cover_preprocess` (docs/providers/minimax.md).

    From MiniMax's own clients (MiniMax-AI/MiniMax-MCP `minimax_mcp/client.py`, `server.py` @2910d66: Bearer key,
    `raise_for_status()` then `base_resp`; MiniMax-AI/skills `minimax-music-guide.md`, `minimax_music.py` @60aaae5:
    fields, limits, `data.status == 2`, hex audio, the status codes; mmx-cli 1.0.19 on npm, MiniMax's CLI and SDK:
    the models, a cover's rules in `MusicSDK.validateParams` and its preprocessing step in `music cover`, the
    `data.audio_url` of a URL answer in `MusicResponse`). Every business error is HTTP 200 with
    `base_resp.status_code`: 1004 a bad key, 2013 invalid parameters, 1026 flagged content (a prompt or lyrics with
    "forbidden"), and the faults `busy` (1002 rate limit) and `broke` (1008 insufficient balance). `url_field` is the
    field a URL answer uses ("audio", as the MCP server reads it, or "audio_url", as the SDK types it).
    """

    models = ("music-3.0", "music-2.6", "music-2.6-free", "music-2.5+", "music-2.5", "music-2.0")
    cover_models = ("music-cover", "music-cover-free")
    song_seconds = 20.0

    def __init__(self) -> None:
        self.billed = 0
        self.preprocessed = 0
        self.features: dict[str, float] = {}  # cover_feature_id -> the reference's seconds
        self.url_field = "audio"
        super().__init__()

    def reference_seconds(self, encoded: Any) -> float | None:
        """The length of a base64 reference track, or None when it is not audio MiniMax could read."""
        import soundfile as sf

        try:
            data = base64.b64decode(str(encoded), validate=True)
            info = sf.info(io.BytesIO(data))
        except Exception:
            return None
        return None if len(data) > 50 * 1024 * 1024 else info.frames / info.samplerate

    def cover_problems(self, body: dict[str, Any]) -> list[str]:
        """What `MusicSDK.validateParams` and the CLI's `music cover` refuse in a cover."""
        problems = []
        prompt, lyrics = str(body.get("prompt") or "").strip(), str(body.get("lyrics") or "").strip()
        if not 10 <= len(prompt) <= 300:
            problems.append("prompt must be between 10 and 300 characters for music cover models")
        sources = [key for key in ("audio_url", "audio_base64", "cover_feature_id") if body.get(key)]
        if len(sources) != 1:
            problems.append("exactly one of audio_url, audio_base64, or cover_feature_id is required")
        if body.get("is_instrumental") or body.get("lyrics_optimizer"):
            problems.append("is_instrumental and lyrics_optimizer are only supported by music generation models")
        if body.get("cover_feature_id") and not lyrics:
            problems.append("lyrics is required with cover_feature_id")
        if body.get("cover_feature_id") and body["cover_feature_id"] not in self.features:
            problems.append("unknown cover_feature_id")
        if lyrics and not body.get("cover_feature_id"):
            problems.append("new lyrics need a cover_feature_id from /v1/music_cover_preprocess")
        if lyrics and not 10 <= len(lyrics) <= 1000:
            problems.append("lyrics must be between 10 and 1000 characters for music cover models")
        if "audio_base64" in body:
            seconds = self.reference_seconds(body["audio_base64"])
            if seconds is None or not 6 <= seconds <= 360:
                problems.append("the reference audio must be readable audio of 6 s to 6 min, at most 50 MB")
        seed = body.get("seed")
        if seed is not None and not (isinstance(seed, int) and 0 <= seed <= 1_000_000):
            problems.append("seed must be 0-1000000")
        if body.get("audio_setting", {}).get("channel", 2) not in (1, 2):
            problems.append("channel must be 1 or 2")
        return problems

    def preprocess(self, h: BaseHTTPRequestHandler, body: dict[str, Any], fault: str | None) -> None:
        """`/v1/music_cover_preprocess`: a reference in, a `cover_feature_id` out (top level, as the CLI reads it)."""
        seconds = self.reference_seconds(body.get("audio_base64")) if "audio_base64" in body else None
        if body.get("model") != "music-cover" or seconds is None or not 6 <= seconds <= 360:
            return self.business(h, 2013, "invalid params: a music-cover reference of 6 s to 6 min is required")
        feature = uuid.uuid4().hex
        with self.lock:
            self.preprocessed += 1
            self.features[feature] = seconds
        self.business(h, 0, "success", {"cover_feature_id": feature}, fault=fault)

    def business(
        self, h: BaseHTTPRequestHandler, code: int, message: str, data: Any = None, fault: str | None = None
    ) -> None:
        answer: dict[str, Any] = {
            "trace_id": uuid.uuid4().hex,
            "base_resp": {"status_code": code, "status_msg": message},
        }
        if data is not None:
            answer |= data
        self.send(h, 200, answer, fault=fault)

    def handle(self, h: BaseHTTPRequestHandler, raw: bytes, fault: str | None) -> None:
        path = urlsplit(h.path).path
        if path.startswith("/files/"):
            return self.send(
                h, 200, audio_bytes(self.song_seconds, "mp3", 44100), content_type="audio/mpeg", fault=fault
            )
        if h.headers.get("Authorization") != f"Bearer {KEY}":
            return self.business(h, 1004, "login fail: Please carry the API secret key in the 'Authorization' field")
        if path not in ("/v1/music_generation", "/v1/music_cover_preprocess") or h.command != "POST":
            return self.send(h, 404, {"error": "not found"})
        if fault == "busy":
            return self.business(h, 1002, "rate limit exceeded")
        if fault == "broke":
            return self.business(h, 1008, "insufficient balance")
        body = json.loads(raw or b"{}")
        self.bodies.append(body)
        if path == "/v1/music_cover_preprocess":
            return self.preprocess(h, body, fault)
        problems = []
        model, prompt, lyrics = body.get("model"), body.get("prompt", ""), body.get("lyrics")
        instrumental = body.get("is_instrumental", False)
        if model in self.cover_models:
            problems = self.cover_problems(body)
        elif model not in self.models:
            problems.append("invalid model")
        elif any(key in body for key in ("audio_url", "audio_base64", "cover_feature_id")):
            problems.append("audio_url, audio_base64, and cover_feature_id are only supported by music cover models")
        elif instrumental and lyrics:
            problems.append("cannot use is_instrumental with lyrics")
        elif body.get("lyrics_optimizer") and (lyrics or instrumental):
            problems.append("cannot use lyrics_optimizer with lyrics or is_instrumental")
        if not isinstance(prompt, str) or len(prompt) > 2000:
            problems.append("prompt must be at most 2000 characters")
        if instrumental and (model == "music-2.5" or not prompt):
            problems.append("is_instrumental needs a prompt and a model with instrumental mode")
        if lyrics is None and not instrumental and not body.get("lyrics_optimizer") and model not in self.cover_models:
            problems.append("lyrics is required")
        if lyrics is not None and not 1 <= len(lyrics) <= 3500:
            problems.append("lyrics must be 1-3500 characters")
        setting = body.get("audio_setting", {})
        if setting.get("sample_rate", 44100) not in (16000, 24000, 32000, 44100):
            problems.append("invalid sample_rate")
        if setting.get("bitrate", 256000) not in (32000, 64000, 128000, 256000):
            problems.append("invalid bitrate")
        if setting.get("format", "mp3") not in ("mp3", "wav", "pcm") or body.get("output_format", "hex") not in (
            "hex",
            "url",
        ):
            problems.append("invalid format")
        if problems:
            return self.business(h, 2013, "invalid params: " + "; ".join(problems))
        if "forbidden" in prompt or "forbidden" in (lyrics or ""):
            return self.business(h, 1026, "input new_sensitive")
        with self.lock:
            self.billed += 1
        song_id = uuid.uuid4().hex
        url = body.get("output_format") == "url"
        audio = (
            f"{self.url}/files/{song_id}.mp3"
            if url
            else audio_bytes(
                self.song_seconds, "mp3", setting.get("sample_rate", 44100), setting.get("channel", 2)
            ).hex()
        )
        data = {
            "data": {self.url_field if url else "audio": audio, "status": 2},
            "extra_info": {
                "music_duration": int(self.song_seconds * 1000),
                "music_sample_rate": 44100,
                "music_channel": 2,
            },
        }
        self.business(h, 0, "success", data, fault=fault)
