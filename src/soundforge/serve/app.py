"""`soundforge serve`: the library's generation, routing and licence policy over HTTP (FastAPI + uvicorn).

Endpoints: `GET /healthz`, `GET /v1/providers`, `POST /v1/generations` (a GenerationRequest as JSON, plus
optional `provider`; answers a job id at once), `GET /v1/generations/{id}`, `GET /v1/generations/{id}/audio
?format=wav|flac|ogg|mp3`, `DELETE /v1/generations/{id}` (cancel), and the web page at `/`.
Jobs wait in a bounded queue (full: 429 with Retry-After) and run on the library's async client in an engine
(`engine.py`: a child process by default); this process keeps HTTP, the queue and the job records.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException

from .._version import __version__
from ..audio import FORMATS, load_audio, write_atomic
from ..backends import CancelToken
from ..client import Client, build_request
from ..config import ServeConfig
from ..errors import (
    InvalidRequestError,
    SoundforgeError,
)
from ..licensing import License
from ..provenance import Provenance
from ..request import GenerationRequest, explain_validation_error
from ..result import Track
from .engine import JobOutcome, create_engine
from .store import JobStore


class GenerationJob(BaseModel):
    """Body of `POST /v1/generations`: a request and, optionally, the provider spec."""

    model_config = ConfigDict(extra="forbid")

    request: GenerationRequest
    provider: str | None = Field(None, description="provider spec, e.g. synth or musicgen:MODEL; default: config")

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


@dataclass
class ServeSettings:
    """Service settings (CLI flags or `[serve]` in config)."""

    store: Path
    token: str | None = None
    max_queue: int = 64
    workers: int = 4
    max_body_bytes: int = 32 * 1024 * 1024
    retention_s: float = 7 * 24 * 3600
    cors_origins: tuple[str, ...] = ()
    engine: str = "auto"  # "process" (auto on POSIX): jobs run in a child process; "inline": in this one
    max_job_seconds: float = 600.0  # the most audio one job may ask for: a bound on what a caller can make us compute

    @classmethod
    def from_config(
        cls,
        serve: ServeConfig,
        *,
        store: str | Path | None = None,
        token: str | None = None,
        max_queue: int | None = None,
        workers: int | None = None,
        engine: str | None = None,
    ) -> ServeSettings:
        """Settings from the `[serve]` section, with explicit arguments (CLI flags) winning."""
        from platformdirs import user_data_dir

        folder = store or serve.store or Path(user_data_dir("soundforge")) / "jobs"
        return cls(
            store=Path(folder),
            token=token or serve.token(),
            max_queue=serve.max_queue if max_queue is None else max_queue,
            workers=serve.workers if workers is None else workers,
            max_body_bytes=int(serve.max_body_mb * 1024 * 1024),
            retention_s=serve.retention_days * 86400,
            cors_origins=tuple(serve.cors_origins),
            engine=engine or serve.engine,
            max_job_seconds=serve.max_job_seconds,
        )


def error_response(exc: SoundforgeError) -> JSONResponse:
    """The typed error body the library's `to_dict` gives, with a matching status code."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)


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

    OPEN_PATHS = ("/healthz", "/", "/favicon.ico")

    def __init__(self, app: Any, *, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if (
            self.expected is not None
            and scope["path"] not in self.OPEN_PATHS
            and scope["method"] != "OPTIONS"
            and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected)
        ):
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
    await JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)(
        scope, receive, send
    )


def create_app(client: Client, settings: ServeSettings) -> FastAPI:
    """Build the ASGI app around a client (its config, policy, batching and cloud bounds)."""
    store = JobStore(settings.store, settings.retention_s)
    engine = create_engine(client, settings.engine)
    queue: asyncio.Queue[tuple[str, GenerationRequest, str | None]] = asyncio.Queue(maxsize=settings.max_queue)
    cancels: dict[str, CancelToken] = {}
    encoding: dict[tuple[str, str], asyncio.Lock] = {}  # downloads being encoded into a new format
    finished: dict[str, asyncio.Event] = {}  # set when a job ends: long polls (`?wait=`) wake on it
    workers: list[asyncio.Task[None]] = []
    reserved = 0  # submissions between the queue-full check and their place in the queue
    # Short blocking work (routing checks, durable writes ending in an fsync) gets threads of its own: it must not
    # queue behind generation in the default executor, nor block the event loop.
    side_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="soundforge-serve")

    async def on_side(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(side_pool, functools.partial(fn, *args, **kwargs))

    async def worker() -> None:
        while True:
            job_id, request, provider = await queue.get()
            try:
                await run_job(job_id, request, provider)
            finally:
                queue.task_done()

    async def run_job(job_id: str, request: GenerationRequest, provider: str | None) -> None:
        token = cancels.setdefault(job_id, CancelToken())
        if token.cancelled:  # cancelled while queued: its record already says so
            cancels.pop(job_id, None)
            return
        # In memory only: on disk the job stays "queued", and either way a restart reports it failed.
        store.remember({**store.load(job_id), "status": "running", "started_at": time.time()})

        def on_progress(phase: str, done: int, total: int) -> None:
            current = store.load(job_id)
            if current["status"] == "running":
                store.remember({**current, "progress": {"phase": phase, "done": done, "total": total}})

        try:
            outcome = await engine.run(
                job_id, request, provider, store.folder(job_id) / "audio.wav", token, on_progress
            )
        except Exception as exc:  # the engine itself failed (it could not start): the job still ends
            outcome = JobOutcome(
                "failed",
                error={
                    "code": "engine_error",
                    "type": type(exc).__name__,
                    "message": f"the engine could not run the job: {exc}",
                },
            )
        finally:
            cancels.pop(job_id, None)
        ending = {"status": outcome.status, "finished_at": time.time()}
        if outcome.status == "succeeded":
            ending.update(
                license=outcome.license,
                provenance=outcome.provenance,
                substitution=Provenance.model_validate(outcome.provenance).substitution,
            )
        else:
            ending["error"] = outcome.error
        await on_side(store.save, {**store.load(job_id), **ending})
        _finish(job_id)

    def _finish(job_id: str) -> None:
        event = finished.pop(job_id, None)
        if event is not None:
            event.set()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        store.recover()
        await engine.start()
        workers.extend(asyncio.create_task(worker()) for _ in range(max(1, settings.workers)))
        yield
        for task in workers:
            task.cancel()
        for token in cancels.values():
            token.cancel()
        await engine.close()
        side_pool.shutdown(wait=True)

    app = FastAPI(
        title="soundforge",
        version=__version__,
        lifespan=lifespan,
        description="Licence-aware generative audio over HTTP.",
    )
    app.state.engine = engine
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"], allow_headers=["*"]
        )

    app.add_middleware(_Guard, token=settings.token, max_body_bytes=settings.max_body_bytes)

    @app.exception_handler(_BodyTooLarge)
    async def too_large(request: Request, exc: _BodyTooLarge) -> Response:
        return JSONResponse({"error": {"code": "too_large", "message": exc.detail}}, status_code=413)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> Response:
        return validation_error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "queued": queue.qsize()}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("soundforge.serve").joinpath("static/index.html").read_text("utf-8")

    @app.get("/v1/providers")
    async def providers() -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(client.providers)
        return [row.to_dict() for row in rows]

    @app.post("/v1/generations", status_code=202, responses=_errors(401, 403, 404, 413, 422, 429, 500, 503))
    async def submit(job: GenerationJob) -> Response:
        nonlocal reserved
        # The place in the queue is held from this check until the job is in it. A full queue still checks the
        # request first: a refusal by the policy is final, a 429 only says "later".
        has_room = queue.qsize() + reserved < queue.maxsize
        reserved += has_room
        try:
            admitted = await on_side(_admit, job, has_room)
        except SoundforgeError as exc:
            return error_response(exc)
        finally:
            reserved -= has_room
        if admitted is None:
            return JSONResponse(
                {"error": {"code": "queue_full", "message": "too many jobs waiting; retry later"}},
                status_code=429,
                headers={"Retry-After": "5"},
            )
        job_id, request = admitted
        cancels[job_id] = CancelToken()
        queue.put_nowait((job_id, request, job.provider))
        return JSONResponse({"id": job_id, "status": "queued", "url": f"/v1/generations/{job_id}"}, status_code=202)

    def _admit(job: GenerationJob, has_room: bool) -> tuple[str, GenerationRequest] | None:
        """On a service thread: route and check the licence policy before any compute (refusals raise), then write
        the job's record before it is queued, so that no later save can race it. None when there is no room."""
        request = build_request(job.request, {})
        _within_limits(request)
        client.router.plan(request, job.provider)
        if not has_room:
            return None
        job_id = store.new_id()
        store.save(
            {
                "id": job_id,
                "status": "queued",
                "created_at": time.time(),
                "provider": job.provider,
                "progress": None,
                "request": request.model_dump(mode="json", exclude={"melody", "audio_prompt"}),
            }
        )
        return job_id, request

    def _within_limits(request: GenerationRequest) -> None:
        """What one job may cost, checked before anything runs."""
        if request.num_outputs > 1:
            # The service stores and serves one track per job: computing more would throw them away.
            raise InvalidRequestError(
                "the service makes one track per job; submit one job per variation "
                "(with its own seed) instead of num_outputs > 1",
                field="num_outputs",
            )
        if request.duration * request.num_outputs > settings.max_job_seconds:
            raise InvalidRequestError(
                f"this job asks for {request.duration * request.num_outputs:g} s of audio; "
                f"this server allows {settings.max_job_seconds:g} s per job",
                field="duration",
                hint="ask the operator to raise [serve] max_job_seconds, or ask for less",
            )

    async def _settled(job_id: str, record: dict[str, Any], wait: float) -> dict[str, Any]:
        """The record once the job has ended, or as it stands after `wait` seconds (long poll)."""
        if wait and record["status"] in ("queued", "running"):
            event = finished.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await event.wait()
            record = _record(job_id) or record
        return record

    def _record(job_id: str) -> dict[str, Any] | None:
        try:
            return store.load(job_id)
        except KeyError:
            return None

    @app.get("/v1/generations/{job_id}", responses=_errors(401, 404, 422))
    async def status(
        job_id: str,
        wait: float = Query(
            0,
            ge=0,
            le=60,
            description=("long poll: hold the answer up to this many seconds until the job has finished"),
        ),
    ) -> Response:
        record = _record(job_id)
        if record is None:
            return JSONResponse({"error": {"code": "not_found", "message": f"no job {job_id}"}}, status_code=404)
        record = await _settled(job_id, record, wait)
        return JSONResponse(record)

    @app.get("/v1/generations/{job_id}/audio", responses=_errors(401, 404, 422))
    async def audio(
        job_id: str,
        format: str = "wav",
        wait: float = Query(
            0,
            ge=0,
            le=60,
            description=(
                "hold the answer up to this many seconds until the job has finished: submit, then one download"
            ),
        ),
    ) -> Response:
        record = _record(job_id)
        if record is not None:
            record = await _settled(job_id, record, wait)
        if record is None or record.get("status") != "succeeded":
            return JSONResponse(
                {"error": {"code": "not_ready", "message": "no finished audio for this job"}}, status_code=404
            )
        if format not in FORMATS:
            return JSONResponse(
                {"error": {"code": "invalid_request", "message": f"format must be one of {', '.join(FORMATS)}"}},
                status_code=422,
            )
        path = store.folder(job_id) / "audio.wav"
        if format == "wav":
            data = await asyncio.to_thread(path.read_bytes)
        else:
            data = await _encoded(job_id, record, format)
        return Response(
            data,
            media_type=FORMATS[format].mime,
            headers={"Content-Disposition": f'attachment; filename="{job_id}.{format}"'},
        )

    async def _encoded(job_id: str, record: dict[str, Any], format: str) -> bytes:
        """The result in another format, encoded once and kept beside the WAV (a 600 s mp3 takes ~50 s of CPU)."""
        cached = store.folder(job_id) / f"audio.{format}"
        if cached.is_file():
            return await asyncio.to_thread(cached.read_bytes)
        lock = encoding.setdefault((job_id, format), asyncio.Lock())
        async with lock:  # concurrent downloads of one new format wait for one encode
            if cached.is_file():
                return await asyncio.to_thread(cached.read_bytes)

            def encode() -> bytes:
                samples, rate = load_audio(store.folder(job_id) / "audio.wav")
                track = Track(
                    audio=samples,
                    sample_rate=rate,
                    license=License.model_validate(record["license"]),
                    provenance=Provenance.model_validate(record["provenance"]),
                )
                data = track.to_bytes(format)
                write_atomic(cached, data, overwrite=True)
                return data

            try:
                encoded: bytes = await on_side(encode)
                return encoded
            finally:
                encoding.pop((job_id, format), None)

    @app.delete("/v1/generations/{job_id}", responses=_errors(401, 404))
    async def cancel(job_id: str) -> Response:
        record = _record(job_id)
        if record is None:
            return JSONResponse({"error": {"code": "not_found", "message": f"no job {job_id}"}}, status_code=404)
        token = cancels.get(job_id)
        if token is not None:
            token.cancel()
            engine.cancel(job_id)
            if record["status"] == "queued":
                record = await on_side(store.save, {**record, "status": "cancelled", "finished_at": time.time()})
                _finish(job_id)
        return JSONResponse(
            {"id": job_id, "status": "cancelling" if record["status"] == "running" else record["status"]},
            status_code=202,
        )

    return app
