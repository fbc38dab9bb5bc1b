"""Where `soundforge serve` runs its jobs: in a child engine process (default on POSIX) or in the server's own.

The engine process runs the library's async client (its batching, model cache and cloud bounds) and saves each
result; the server process keeps HTTP, the queue and the job records. Why a second process:
- the HTTP side stays responsive while an engine holds the GIL (the synth renderer, the Python loop around a
  torch model), and the two use different cores instead of taking turns on one interpreter lock;
- an engine that crashes or is killed (a segfault in a native library, the kernel's OOM killer) fails the jobs it
  was running, and the next job starts a fresh engine; the server, its queue and finished results stay up.

The two talk over a private socket pair: length-prefixed pickles, both ends being this same installed code.
`InlineEngine` runs jobs in the server's process instead (`[serve] engine = "inline"`): for platforms without
`pass_fds`, and for a client changed at run time beyond its config and registry (the child rebuilds it from
those two).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..backends import ENGINE_DEVICE_ENV, CancelToken
from ..errors import (
    ConfigurationError,
    EngineStoppedError,
    GenerationCancelledError,
    InternalError,
    SoundforgeError,
    StoreError,
)
from ..output.files import role_path
from ..output.location import OutputLocation
from ..request import GenerationRequest

if TYPE_CHECKING:
    from ..client import Client

log = logging.getLogger("soundforge.serve")

_HEADER = struct.Struct("!I")
ProgressFn = Callable[[str, int, int], None]
#: Receives each streamed chunk: offset, sample rate, channels, interleaved 16-bit samples.
ChunkFn = Callable[[int, int, int, bytes], None]


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: status "succeeded" with its licence and provenance, or "failed"/"cancelled" with an error."""

    status: str
    license: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    stems: list[dict[str, Any]] | None = None  # a request with stems: each stem's role, licence and provenance
    engine: int | None = None  # which engine of a pool ran the job (`[serve] engines`)
    attempts: int | None = None  # runs of the job on Ray Serve: 2 when its first replica died (`[serve.ray]`)
    replica: str | None = None  # the Ray Serve replica that ran it (its id in Ray's logs)


@dataclass(frozen=True)
class JobSpec:
    """One job as every engine receives it, decided once at admission (`JobManager.submit`): what to make, where
    its audio goes, and where it may run. It crosses process boundaries (the engine socket, Ray) as one pickle."""

    job_id: str
    #: The request as admitted (defaults resolved by `build_request`).
    request: GenerationRequest
    #: The provider as the caller named it (None: the router picks); the engine plans the request again with it.
    provider: str | None
    #: Where the audio is saved: a local path or an fsspec URL.
    audio_target: str
    #: Whether listeners hear the job while it is made (its chunks are forwarded).
    streamed: bool = False
    #: The backend and model admission's plan chose: where a pool places the job, its Ray family.
    backend: str = ""
    model: str = ""
    #: Whether every provider the plan may fall back to runs locally (Ray runs such a job once more when its
    #: replica dies).
    local_only: bool = False

    @property
    def target(self) -> str:
        """The model the job needs, as a placement key ("musicgen:facebook/musicgen-small")."""
        return f"{self.backend}:{self.model}"


def _outcome_of(exc: BaseException) -> JobOutcome:
    """The outcome for an exception raised while a job ran; a bug still ends the job, with no internals shown."""
    if isinstance(exc, GenerationCancelledError):
        return JobOutcome("cancelled", error=exc.to_dict())
    if isinstance(exc, SoundforgeError):
        return JobOutcome("failed", error=exc.to_dict())
    log.error("job failed with an internal error", exc_info=exc)
    return JobOutcome("failed", error=InternalError(f"internal error ({type(exc).__name__})").to_dict())


class Engine(Protocol):
    """What the job manager runs jobs on: an engine process, a pool of them, the server's own process, or Ray
    Serve's engine deployments."""

    mode: str

    async def start(self) -> Any:
        """Be ready for jobs (start processes, reach deployments)."""

    async def run(
        self, spec: JobSpec, token: CancelToken, on_progress: ProgressFn, on_chunk: ChunkFn | None = None
    ) -> JobOutcome:
        """Run one job to its end, its audio saved to `spec.audio_target` (its chunks to `on_chunk` when the job is
        streamed); never raises for the job's own failures."""
        ...

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop at its next step."""

    async def close(self) -> None:
        """Stop: what runs is cancelled."""


async def run_and_save(
    client: Client, spec: JobSpec, token: CancelToken, on_progress: ProgressFn, on_chunk: ChunkFn | None = None
) -> JobOutcome:
    """Generate with the library's async client and save the first track to `spec.audio_target` (a local path or
    an fsspec URL; tags embedded, no sidecar: the job record holds the full licence and provenance). With `on_chunk`
    the job is streamed (`Client.astream`): each chunk goes to `on_chunk` as 16-bit samples, the same the saved WAV
    holds."""
    request, provider, audio_target = spec.request, spec.provider, spec.audio_target
    try:
        if on_chunk is None:
            generation = await client.agenerate(
                request, provider=provider, cancel=token, on_progress=lambda e: on_progress(e.phase, e.done, e.total)
            )
        else:
            from ..audio.wavstream import pcm16_frames

            stream = client.astream(
                request, provider=provider, cancel=token, on_progress=lambda e: on_progress(e.phase, e.done, e.total)
            )
            async with stream:
                async for chunk in stream:
                    if chunk.track_index == 0:
                        on_chunk(chunk.offset, chunk.sample_rate, chunk.audio.shape[0], pcm16_frames(chunk.audio))
            generation = await stream.result()
        # Saved with the request's loudness target and edits (Track.save's defaults); a streamed job has none.
        # Stems first, the track last: a job whose audio exists has all its files.
        mix, *stems = generation.tracks
        folder, name = audio_target.rsplit("/", 1) if "://" in audio_target else os.path.split(audio_target)
        files = OutputLocation(folder)
        try:
            for stem in stems:
                assert stem.role is not None
                data = await asyncio.to_thread(stem.to_bytes, "wav")
                await asyncio.to_thread(files.write, role_path(name, stem.role).name, data)
            data = await asyncio.to_thread(mix.to_bytes, "wav")
            await asyncio.to_thread(files.write, name, data)
        except OSError as exc:  # a full disk, a read-only store: the operator's fault to see, not an internal one
            log.error("job %s: its audio could not be written to the store: %s", spec.job_id, exc)
            return JobOutcome(
                "failed",
                license=mix.license.model_dump(mode="json"),
                provenance=mix.provenance.model_dump(mode="json"),
                error=StoreError(
                    f"the audio was made but could not be written to the job store: {exc.strerror or exc}",
                    hint="submit the job again once the store can be written (/healthz says so)",
                ).to_dict(),
            )
        described = [
            {
                "role": stem.role,
                "license": stem.license.model_dump(mode="json"),
                "provenance": stem.provenance.model_dump(mode="json"),
            }
            for stem in stems
        ]
        return JobOutcome(
            "succeeded",
            license=mix.license.model_dump(mode="json"),
            provenance=mix.provenance.model_dump(mode="json"),
            stems=described or None,
        )
    except Exception as exc:
        return _outcome_of(exc)


async def run_reporting(client: Client, spec: JobSpec, token: CancelToken, report: Callable[..., None]) -> JobOutcome:
    """`run_and_save` for an engine across a boundary: its progress (throttled) and, for a streamed job, its chunks
    become messages `report("progress", phase, done, total)` and `report("chunk", offset, rate, channels, data)`,
    always called on the running event loop."""
    loop = asyncio.get_running_loop()
    on_progress = throttle_progress(
        lambda phase, done, total: loop.call_soon_threadsafe(report, "progress", phase, done, total)
    )

    def on_chunk(offset: int, sample_rate: int, channels: int, data: bytes) -> None:  # on this loop
        report("chunk", offset, sample_rate, channels, data)

    return await run_and_save(client, spec, token, on_progress, on_chunk if spec.streamed else None)


def throttle_progress(send: Callable[[str, int, int], object], interval_s: float = 0.1) -> ProgressFn:
    """A progress callback passing on at most one event per `interval_s`, plus each phase's first and last: what
    an engine sends across a process boundary (a diffusion step loop reports far more often than anyone reads)."""
    last_sent, last_phase = 0.0, ""

    def on_progress(phase: str, done: int, total: int) -> None:  # from whichever thread the backend runs on
        nonlocal last_sent, last_phase
        now = time.monotonic()
        if phase != last_phase or done >= total or now - last_sent >= interval_s:
            last_sent, last_phase = now, phase
            send(phase, done, total)

    return on_progress


class InlineEngine:
    """Runs jobs on the server's own event loop and threads."""

    mode = "inline"

    def __init__(self, client: Client) -> None:
        self.client = client

    async def start(self) -> None:
        """Nothing to start: the client is already here."""

    async def run(
        self, spec: JobSpec, token: CancelToken, on_progress: ProgressFn, on_chunk: ChunkFn | None = None
    ) -> JobOutcome:
        """Run one job to its end; `token` cancels it. Never raises for the job's own failures."""
        return await run_and_save(self.client, spec, token, on_progress, on_chunk if spec.streamed else None)

    def cancel(self, job_id: str) -> None:
        """Nothing to pass on: the job's token, which the caller cancels, is the one it runs with."""

    async def close(self) -> None:
        """Nothing to stop: the server cancels its jobs' tokens."""


class _Child:
    """One engine process, its socket and the jobs sent to it."""

    def __init__(self, process: asyncio.subprocess.Process, writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.writer = writer
        self.pending: dict[str, tuple[asyncio.Future[JobOutcome], ProgressFn, ChunkFn | None]] = {}
        self.gone: JobOutcome | None = None  # set once the process has exited and its jobs were failed
        self.reader_task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.gone is None and self.process.returncode is None and not self.writer.is_closing()

    async def read(self, reader: asyncio.StreamReader, closing: Callable[[], bool]) -> None:
        """Deliver progress and outcomes until the process goes; then fail the jobs it still had."""
        try:
            while True:
                kind, job_id, *rest = await _read_message(reader)
                pending = self.pending.get(job_id)
                if pending is None:
                    continue
                if kind == "progress":
                    pending[1](*rest)
                elif kind == "chunk":
                    if pending[2] is not None:
                        pending[2](*rest)
                elif not pending[0].done():
                    pending[0].set_result(JobOutcome(*rest))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the engine exited or was killed
        except Exception:  # a message this side cannot read: the stream is no longer trustworthy
            log.exception("unreadable message from the engine process; stopping it")
            self.process.kill()
        finally:
            self.writer.close()
            code = await self.process.wait()
            if not closing():
                log.error(
                    "the engine process stopped (exit code %s); its running jobs failed, the next job starts a new one",
                    code,
                )
            self.gone = JobOutcome(
                "failed",
                error=EngineStoppedError(
                    f"the engine process stopped (exit code {code}) before this job finished; try again"
                ).to_dict(),
            )
            for future, *_ in self.pending.values():
                if not future.done():
                    future.set_result(self.gone)


class ProcessEngine:
    """Runs jobs in a child process started with this interpreter; starts a new one when it has died."""

    mode = "process"

    def __init__(self, client: Client, device: str | None = None, threads: int | None = None) -> None:
        self._spec = pickle.dumps((client.config, client.registry), protocol=pickle.HIGHEST_PROTOCOL)
        self.device = device  # what `device = "auto"` means in the engine process; None: as configured
        self.threads = threads  # CPU threads for its math libraries (OpenMP, MKL); None: theirs to choose
        self._child: _Child | None = None
        self._starting: asyncio.Lock | None = None
        self._closing = False

    @property
    def pid(self) -> int | None:
        """The engine process's id while one runs."""
        return self._child.process.pid if self._child is not None and self._child.alive else None

    async def start(self) -> _Child:
        """The running engine process; starts one at server start, and again after one died."""
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._child is not None and self._child.alive:
                return self._child
            ours, theirs = socket.socketpair()
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "soundforge.serve.engine",
                    str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    env=self._environment(),
                )
            except OSError as exc:
                ours.close()
                raise ConfigurationError(
                    f"could not start the engine process with {sys.executable!r}: {exc}; "
                    "run jobs in the server's process with --engine inline "
                    '([serve] engine = "inline")'
                ) from exc
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            reader, writer = await asyncio.open_connection(sock=ours)
            writer.write(_frame(self._spec))
            child = self._child = _Child(process, writer)
            child.reader_task = asyncio.create_task(child.read(reader, lambda: self._closing))
            return child

    def _environment(self) -> dict[str, str] | None:
        """The engine process's environment: this one's, plus its device and thread count where given."""
        if self.device is None and self.threads is None:
            return None
        env = dict(os.environ)
        if self.device is not None:
            env[ENGINE_DEVICE_ENV] = self.device
        if self.threads is not None:  # read by OpenMP and MKL (torch's CPU threads) when the process starts
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        return env

    async def run(
        self, spec: JobSpec, token: CancelToken, on_progress: ProgressFn, on_chunk: ChunkFn | None = None
    ) -> JobOutcome:
        """Send one job to the engine and wait for its outcome (a streamed job's chunks come to `on_chunk`);
        `token` (or `cancel`) cancels it there. Never raises for the job's own failures."""
        job_id = spec.job_id
        child = await self.start()
        future: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        child.pending[job_id] = (future, on_progress, on_chunk)
        try:
            if child.gone is not None:
                return child.gone
            with contextlib.suppress(ConnectionError, OSError):  # a dead engine: its reader fails the job
                child.writer.write(_message("job", job_id, spec))
                if token.cancelled:  # cancelled while the engine was starting, before `cancel` could see the job
                    child.writer.write(_message("cancel", job_id))
                await child.writer.drain()  # a request with a large melody upload waits here, not in memory
            return await future
        finally:
            child.pending.pop(job_id, None)

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop at its next step."""
        child = self._child
        if child is not None and job_id in child.pending and child.alive:
            child.writer.write(_message("cancel", job_id))

    async def close(self) -> None:
        """Stop the engine: it cancels what runs and exits; killed if it has not after a few seconds."""
        self._closing = True
        child = self._child
        if child is None:
            return
        child.writer.close()
        if child.process.returncode is None:
            try:
                await asyncio.wait_for(child.process.wait(), 5)
            except TimeoutError:
                child.process.kill()
        if child.reader_task is not None:
            await child.reader_task


def create_engine(
    client: Client, mode: str, device: str | None = None, threads: int | None = None
) -> InlineEngine | ProcessEngine:
    """The engine for `[serve] engine`: "process", "inline", or "auto" (process where the OS can pass sockets);
    `device` is what `device = "auto"` means in an engine process and `threads` its CPU math threads
    (`[serve] engines`)."""
    if mode == "auto":
        # Backends given to the client in code exist only in this process: the engine process would not have them.
        mode = "process" if os.name == "posix" and not client.has_own_backends else "inline"
    if mode == "process" and client.has_own_backends:
        raise ConfigurationError(
            "backends given to Client(backends=...) exist only in this process; serve them "
            'with engine = "inline" (--engine inline), or register them as entry points'
        )
    if mode == "process":
        return ProcessEngine(client, device, threads)
    if mode == "inline":
        if device is not None or threads is not None:
            raise ConfigurationError(
                '[serve] engines gives devices to engine processes: it needs engine = "process" (or "auto" on '
                "Linux and macOS)"
            )
        return InlineEngine(client)
    raise ConfigurationError(f"[serve] engine must be auto, process or inline, not {mode!r}")


# --- the wire: 4-byte length + pickle ---
def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def _message(*fields: Any) -> bytes:
    return _frame(pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL))


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return await reader.readexactly(size)


async def _read_message(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    message: tuple[Any, ...] = pickle.loads(await _read_frame(reader))
    return message


# --- the engine process ---
async def _engine_main(fd: int) -> None:
    from ..client import Client

    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))
    config, registry = pickle.loads(await _read_frame(reader))
    client = Client(config, registry=registry)
    tokens: dict[str, CancelToken] = {}
    running: set[asyncio.Task[None]] = set()

    def send(*fields: Any) -> None:
        if not writer.is_closing():
            writer.write(_message(*fields))

    async def job(job_id: str, token: CancelToken, spec: JobSpec) -> None:
        try:
            outcome = await run_reporting(client, spec, token, lambda kind, *fields: send(kind, job_id, *fields))
        finally:
            tokens.pop(job_id, None)
        send("ended", job_id, outcome.status, outcome.license, outcome.provenance, outcome.error, outcome.stems)

    try:
        while True:
            kind, job_id, *rest = await _read_message(reader)
            if kind == "job":  # the token exists before the task runs: a cancel right behind the job finds it
                tokens[job_id] = CancelToken()
                task = asyncio.create_task(job(job_id, tokens[job_id], *rest))
                running.add(task)
                task.add_done_callback(running.discard)
            elif kind == "cancel" and job_id in tokens:
                tokens[job_id].cancel()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the server closed the socket (or died): cancel what runs and leave
    for token in tokens.values():
        token.cancel()
    if running:
        await asyncio.wait(running, timeout=3)


def main() -> None:
    """Entry point of the engine process: `python -m soundforge.serve.engine FD`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal reaches the server, which stops us
    asyncio.run(_engine_main(int(sys.argv[1])))
    # Backends may leave non-daemon threads (compute pools): the server asked us to go, so go now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    # Run the imported module's copy, not this `__main__` one: both ends must name the same module.
    from soundforge.serve.engine import main as engine_main

    engine_main()
