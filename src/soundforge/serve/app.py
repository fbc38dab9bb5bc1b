"""`soundforge serve`: the library's generation, routing and licence policy over HTTP (FastAPI + uvicorn).

Endpoints: `GET /healthz`, `GET /v1/providers`, `POST /v1/generations` (a GenerationRequest as JSON, plus
optional `provider` and `stream`; answers a job id at once), `GET /v1/generations/{id}`, `GET /v1/generations/{id}
/audio?format=wav|flac|ogg|mp3[&stem=NAME]`, `GET /v1/generations/{id}/stream` (the audio while it is made),
`GET /v1/generations/{id}/events` (Server-Sent Events), `DELETE /v1/generations/{id}` (cancel), the web page at `/`.
Jobs wait in a bounded queue (full: 429 with Retry-After) and run on the library's async client in an engine
(`engine.py`: a child process by default); this process keeps HTTP, the queue and the job records.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import iterate_in_threadpool
from starlette.exceptions import HTTPException

from .._version import __version__
from ..audio import FORMATS
from ..client import Client
from ..errors import (
    SoundforgeError,
)
from ..ops.budget import Budget
from ..request import GenerationRequest, explain_validation_error
from . import elevenlabs_api
from .engine import Engine
from .feeds import sse_event
from .jobs import JobManager
from .settings import ServeSettings


class GenerationJob(BaseModel):
    """Body of `POST /v1/generations`: a request and, optionally, the provider spec."""

    model_config = ConfigDict(extra="forbid")

    request: GenerationRequest
    provider: str | None = Field(None, description="provider spec, e.g. synth or musicgen:MODEL; default: config")
    stream: bool = Field(
        False,
        description="route to a provider that streams, so GET .../stream plays the audio while it is made "
        "(refused with 422 unsupported_feature when the provider cannot)",
    )

    @model_validator(mode="before")
    @classmethod
    def _audio_sent_not_named(cls, data: Any) -> Any:
        """Melody and audio prompt must come in the body: a path would let a caller make the server read (and,
        through a continuation, hand back) any audio file it can open, or probe which files exist. Checked before
        the request's own validation, which would look the path up."""
        request = data.get("request") if isinstance(data, dict) else None
        if isinstance(request, dict):
            for name in ("melody", "audio_prompt"):
                value = request.get(name)
                if value is not None and not (isinstance(value, dict) and set(value) == {"wav"}):
                    raise ValueError(
                        f'request.{name} must be the audio itself, {{"wav": "<base64 WAV>"}}: '
                        "the service does not read files named by path"
                    )
        return data


async def _ended(record: dict[str, Any]) -> AsyncIterator[str]:
    """The events of a job that has ended: its `end` alone."""
    yield sse_event("end", record)


log = logging.getLogger("soundforge.serve")


def error_response(exc: SoundforgeError) -> JSONResponse:
    """The typed error body the library's `to_dict` gives, with a matching status code."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)


def _ended_without_audio(record: dict[str, Any]) -> JSONResponse:
    """A streamed job that ended (failed, cancelled) before its first chunk: its own error, as a 409."""
    error = record.get("error") or {}
    status = record.get("status", "ended")
    message = f"the job {status} before any audio was made" + (f": {error['message']}" if error.get("message") else "")
    return service_error(409, f"job_{status}", message, job_error=error or None)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`first`, then the rest of a stream."""
    yield first
    async for block in rest:
        yield block


def service_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **more: Any
) -> JSONResponse:
    """The error body of a refusal that belongs to the service (not found, not ready, queue full, rate limited):
    the same shape as `error_response`'s, `{"error": {"code", "message", ...}}`. The one place such bodies are made."""
    return JSONResponse({"error": {"code": code, "message": message, **more}}, status_code=status, headers=headers)


class ErrorDetail(BaseModel):
    """One problem of a refused request."""

    field: str | None = None
    message: str


class ErrorInfo(BaseModel):
    """The error itself: a stable `code`, the exception `type`, a message and what to do about it."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    type: str | None = None
    hint: str | None = None
    field: str | None = None
    errors: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the service has this shape."""

    error: ErrorInfo


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error answers a route really gives."""
    return {status: {"model": ErrorBody} for status in statuses}


def validation_error_response(exc: Any) -> JSONResponse:
    """A 422 in the service's own error shape for a body that fails validation.

    The caller's input is never echoed back: a 31 MB prompt would come back as a 32 MB error, and a value that is
    not valid JSON output (NaN) would turn a 422 into a 500.
    """
    details: list[dict[str, str | None]] = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":  # its location is a character offset, not a field
            offset = next((p for p in error.get("loc", ()) if isinstance(p, int)), None)
            where = f" at character {offset}" if offset is not None else ""
            details.append({"field": None, "message": f"the body is not valid JSON{where}"})
            continue
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        details.append({"field": ".".join(loc) or None, "message": explain_validation_error(error)})
    text = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else str(d["message"]) for d in details[:10])
    return JSONResponse(
        {
            "error": {
                "code": "invalid_request",
                "type": "InvalidRequestError",
                "message": f"invalid request: {text}"[:2000],
                "field": details[0]["field"] if details else None,
                "errors": details[:50],
            }
        },
        status_code=422,
    )


class _BodyTooLarge(HTTPException):
    """Raised from the guarded `receive` once a body sent without a length passes the limit; an HTTPException so
    that FastAPI passes it on while it reads the body, to the handler `create_app` registers."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class _Guard:
    """Bearer token and body size, checked before any route runs.

    A plain ASGI middleware rather than `@app.middleware("http")`: it adds no task or stream per request and
    can count a body that arrives without a Content-Length. CORS preflights (OPTIONS) carry no credentials by
    design, so they pass to the CORS middleware unchecked; every other method needs the token.
    """

    OPEN_PATHS = ("/healthz", "/", "/studio.js", "/favicon.ico")

    def __init__(
        self, app: Any, *, token: str | None, max_body_bytes: int, named: dict[str, str] | None = None
    ) -> None:
        self.app = app
        #: Accepted Authorization headers -> the token's name ("" for the main token, which has no limits).
        self.accepted = {f"Bearer {token}".encode(): ""} if token else {}
        self.accepted |= {f"Bearer {value}".encode(): name for value, name in (named or {}).items()}
        self.max_body_bytes = max_body_bytes

    def _who(self, presented: bytes) -> str | None:
        """The name of the token presented (compared in constant time with each), or None."""
        found = None
        for expected, name in self.accepted.items():
            if hmac.compare_digest(presented, expected):
                found = name
        return found

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        presented = headers.get(b"authorization", b"")
        if not presented and b"xi-api-key" in headers:  # ElevenLabs' SDK sends its key here (/v1/music…)
            presented = b"Bearer " + headers[b"xi-api-key"]
        who = self._who(presented) if self.accepted else ""
        scope.setdefault("state", {})["token_name"] = who or ""
        if self.accepted and scope["path"] not in self.OPEN_PATHS and scope["method"] != "OPTIONS" and who is None:
            await _reply(
                scope,
                receive,
                send,
                401,
                "unauthorized",
                "missing or wrong bearer token",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _reply(scope, receive, send, 413, "too_large", f"request body over {self.max_body_bytes} bytes")
            return
        received = 0

        async def bounded_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, bounded_receive, send)


async def _reply(
    scope: Any, receive: Any, send: Any, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    await service_error(status, code, message, headers=headers)(scope, receive, send)


class TokenLimits:
    """Per-token limits: a sliding one-minute window of submissions, and a running budget (`soundforge.Budget`)."""

    def __init__(self, tokens: dict[str, tuple[str, float | None, int | None]]) -> None:
        self.rates = {name: rpm for name, _, rpm in tokens.values() if rpm}
        self.budgets = {name: Budget(limit) for name, limit, _ in tokens.values() if limit is not None}
        self._seen: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def admit(self, name: str) -> float | None:
        """Count a submission for the token; None when allowed, else the seconds until one is."""
        rate = self.rates.get(name)
        if rate is None:
            return None
        now = time.monotonic()
        seen = self._seen[name]
        while seen and now - seen[0] >= 60:
            seen.popleft()
        if len(seen) >= rate:
            return 60 - (now - seen[0])
        seen.append(now)
        return None

    def budget(self, name: str) -> Budget | None:
        return self.budgets.get(name)


def _static(name: str) -> str:
    """One of the page's files (`serve/static/`), as shipped in the package."""
    return resources.files("soundforge.serve").joinpath("static", name).read_text("utf-8")


def create_app(client: Client, settings: ServeSettings, engine: Engine | None = None) -> FastAPI:
    """Build the ASGI app around a client (its config, policy, batching and cloud bounds): thin routes over a
    `JobManager`. `engine` runs the jobs where it is given (Ray Serve's engine deployments); else `[serve]`'s."""
    jobs = JobManager(client, settings, engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await jobs.start()
        yield
        await jobs.close()

    app = FastAPI(
        title="soundforge",
        version=__version__,
        lifespan=lifespan,
        description="Licence-aware generative audio over HTTP.",
    )
    app.state.jobs = jobs
    app.state.engine = jobs.engine
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"], allow_headers=["*"]
        )

    app.add_middleware(
        _Guard,
        token=settings.token,
        max_body_bytes=settings.max_body_bytes,
        named={value: name for value, (name, _, _) in settings.tokens.items()},
    )
    limits = TokenLimits(settings.tokens)

    @app.exception_handler(_BodyTooLarge)
    async def too_large(request: Request, exc: _BodyTooLarge) -> Response:
        return service_error(413, "too_large", exc.detail)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A store or index fault (a full disk, a dropped database): the typed error shape, the reason, and the
        # traceback in the server's log; never a plain-text 500.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return service_error(500, "internal_error", f"the server could not answer: {type(exc).__name__}: {exc}")

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> Response:
        # A JSON body nested thousands of levels deep: the parser gives up; the client hears why, not a 500.
        return service_error(422, "invalid_request", "the request body is nested too deep to read", field="request")

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> Response:
        return validation_error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        # 400: a body that is not JSON, or nests deeper than the parser reads: the client's to fix.
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return service_error(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    def not_found(job_id: str) -> Response:
        return service_error(404, "not_found", f"no job {job_id}")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        # 503 while the job store cannot be written: a load balancer stops sending work to a replica that would fail it.
        state = {**jobs.health(), "version": __version__, "queued": jobs.queue.qsize()}
        return JSONResponse(state, status_code=200 if state["status"] == "ok" else 503)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return _static("index.html")

    @app.get("/studio.js", include_in_schema=False)
    async def page_script() -> Response:
        return Response(_static("studio.js"), media_type="text/javascript")

    @app.get("/metrics")
    async def metrics() -> Response:
        if jobs.metrics is None:
            return service_error(404, "not_found", "metrics need prometheus-client: pip install 'soundforge[metrics]'")
        body, content_type = jobs.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/providers")
    async def providers() -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(client.providers)
        return [row.to_dict() for row in rows]

    def admit(request: Request) -> tuple[Response | None, Budget | None, str]:
        """The token's admission, for every route that submits work: a 429 when it is over its rate, else None,
        with the token's budget and name."""
        name = getattr(request.state, "token_name", "")
        wait = limits.admit(name)
        if wait is not None:
            refused = service_error(
                429,
                "rate_limited",
                f"token {name!r} is over its requests per minute",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
            return refused, None, name
        return None, limits.budget(name), name

    if settings.config.elevenlabs.enabled:
        elevenlabs_api.register(app, jobs, settings, admit)

    @app.post("/v1/generations", status_code=202, responses=_errors(401, 403, 404, 413, 422, 429, 500, 503))
    async def submit(job: GenerationJob, request: Request) -> Response:
        refused, budget, name = admit(request)
        if refused is not None:
            return refused
        try:
            job_id = await jobs.submit(job.request, job.provider, budget=budget, stream=job.stream, token=name or None)
        except SoundforgeError as exc:
            return error_response(exc)
        if job_id is None:
            return service_error(429, "queue_full", "too many jobs waiting; retry later", headers={"Retry-After": "5"})
        body = {"id": job_id, "status": "queued", "url": f"/v1/generations/{job_id}"}
        if job.stream:
            body["stream_url"] = f"/v1/generations/{job_id}/stream"
        return JSONResponse(body, status_code=202)

    @app.get("/v1/generations", responses=_errors(401, 422))
    async def history(
        request: Request,
        limit: int = Query(20, ge=1, le=100, description="how many jobs, newest first"),
    ) -> JSONResponse:
        """The caller's jobs, newest first, as their records stand (what the page's history lists): a named token
        sees the jobs it submitted; without named tokens, every job."""
        name = getattr(request.state, "token_name", "") or None
        records = await jobs.on_side(jobs.history, name if settings.tokens else None, limit)
        return JSONResponse({"jobs": records})

    @app.get("/v1/generations/{job_id}", responses=_errors(401, 404, 422))
    async def status(
        job_id: str,
        wait: float = Query(
            0, ge=0, le=60, description="long poll: hold the answer up to this many seconds until the job has finished"
        ),
    ) -> Response:
        record = jobs.record(job_id)
        if record is None:
            return not_found(job_id)
        return JSONResponse(await jobs.wait(job_id, record, wait))

    @app.get("/v1/generations/{job_id}/audio", responses=_errors(401, 404, 422))
    async def audio(
        job_id: str,
        format: str = "wav",
        wait: float = Query(
            0,
            ge=0,
            le=60,
            description="hold the answer up to this many seconds until the job has finished: submit, then one download",
        ),
        stem: str | None = Query(
            None, description="one of the job's stems (a request with stems), e.g. drums: its own file and licence"
        ),
    ) -> Response:
        record = jobs.record(job_id)
        if record is None:  # no such job: not "not ready", which says it will be
            return not_found(job_id)
        record = await jobs.wait(job_id, record, wait)
        if record.get("status") != "succeeded":
            return service_error(404, "not_ready", "no finished audio for this job")
        if format not in FORMATS:
            return service_error(422, "invalid_request", f"format must be one of {', '.join(FORMATS)}", field="format")
        if stem is not None and jobs.stem_of(record, stem) is None:
            return service_error(404, "not_found", f"job {job_id} has no stem {stem!r}", field="stem")
        name = f"{job_id}.{stem}.{format}" if stem is not None else f"{job_id}.{format}"
        file = await jobs.download(job_id, record, format, stem)
        size = await jobs.on_side(jobs.store.size, job_id, file)
        return StreamingResponse(  # from the store in pieces: a long file never sits whole in memory
            iterate_in_threadpool(jobs.store.chunks(job_id, file)),
            media_type=FORMATS[format].mime,
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Content-Length": str(size)},
        )

    @app.get(
        "/v1/generations/{job_id}/stream",
        responses={200: {"content": {"audio/wav": {}}}, **_errors(401, 404, 409)},
        response_class=Response,
    )
    async def stream(job_id: str) -> Response:
        """The job's audio while it is made: a WAV whose header leaves the length open, then the samples as
        they come (browsers and ffmpeg play it progressively). A job that has finished answers its whole WAV."""
        feed = jobs.feed(job_id)  # before the record: a job that ends in between still has its feed here
        record = jobs.record(job_id)
        if record is None:
            return not_found(job_id)
        if feed is not None and record.get("stream"):
            body = feed.wav()
            first = await anext(body, None)  # the status is sent with the first bytes: wait for audio first
            if first is None:  # the job ended before any audio: say why, not an empty 200 audio/wav
                return _ended_without_audio(jobs.record(job_id) or record)
            return StreamingResponse(
                _prepend(first, body), media_type="audio/wav", headers={"Cache-Control": "no-store"}
            )
        if record["status"] == "succeeded":
            file = await jobs.download(job_id, record, "wav")
            return StreamingResponse(  # from the store in pieces, as /audio: never the whole file in memory
                iterate_in_threadpool(jobs.store.chunks(job_id, file)), media_type="audio/wav"
            )
        if record["status"] in ("queued", "running"):
            return service_error(
                409,
                "not_streamed",
                "this job was not submitted with stream: true",
                hint="download /audio once it has finished, or submit with stream: true to listen to it",
            )
        return service_error(404, "not_ready", "no finished audio for this job")

    @app.get(
        "/v1/generations/{job_id}/events",
        responses={200: {"content": {"text/event-stream": {}}}, **_errors(401, 404)},
        response_class=Response,
    )
    async def events(job_id: str) -> Response:
        """Server-Sent Events of one job: `progress` ({phase, done, total}), `chunk` ({offset, samples,
        sample_rate, seconds}) for streamed jobs, and `end` (the final record), from the job's start."""
        feed = jobs.feed(job_id)
        record = jobs.record(job_id)
        if record is None:
            return not_found(job_id)
        body = feed.sse() if feed is not None else _ended(record)
        return StreamingResponse(
            body, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    @app.delete("/v1/generations/{job_id}", responses=_errors(401, 404))
    async def cancel(job_id: str) -> Response:
        record = jobs.record(job_id)
        if record is None:
            return not_found(job_id)
        record = await jobs.cancel(job_id, record)
        return JSONResponse(
            {"id": job_id, "status": "cancelling" if record["status"] == "running" else record["status"]},
            status_code=202,
        )

    return app
