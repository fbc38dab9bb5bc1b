"""`JobManager`: the service's job scheduler (admit, queue, run, cancel, long-poll, encode), without HTTP.

The routes in `app.py` are thin shells over it; tests drive it directly. Jobs wait in a bounded queue and run on
the engine (`engine.py`: a child process by default); the manager keeps the records (`store.py`) and the events
that wake long polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..audio import format_for
from ..backends import CancelToken
from ..client import Client, build_request
from ..errors import (
    EngineError,
    InternalError,
    InvalidRequestError,
    ServerStoppingError,
    StoreError,
    StoreUnavailableError,
)
from ..licences.licensing import License
from ..licences.provenance import Cost, Provenance
from ..ops.budget import Budget
from ..output.files import encode_saved, role_path
from ..request import GenerationRequest
from ..run import JobLimits
from ..run.steps import takes_cost
from .engine import Engine, JobOutcome, JobSpec
from .feeds import JobFeed, PcmChunk
from .metrics import make_metrics
from .pool import create_engines
from .settings import ServeSettings
from .store import ACTIVE, JobStore

#: The file each job's audio is stored in; other formats are encoded from it once and kept beside it.
AUDIO_FILE = "audio.wav"
log = logging.getLogger("soundforge.serve")
#: How often records the store refused are saved again.
RESAVE_S = 2.0
#: Encodes into new download formats that run at once (the rest wait their turn; admission never does).
ENCODE_THREADS = 2
#: What listeners of a job still running hear when the server stops (a restart reports the job failed too).
_STOPPING = ServerStoppingError("the server stopped before the job ended").to_dict()


#: How many of the newest jobs `JobManager.history` looks through, and how many it reads from the index at once.
HISTORY_SCAN = 2000
HISTORY_PAGE = 200


class JobManager:
    """Admits, queues, runs and cancels generation jobs; `start` in the server's lifespan, `close` at its end."""

    def __init__(self, client: Client, settings: ServeSettings, engine: Engine | None = None) -> None:
        self.client = client
        self.settings = settings
        self.store = JobStore(
            settings.store,
            settings.retention_s,
            index=settings.index,
            shared=settings.shared,
            lease_s=settings.lease_s,
            index_password_env=settings.index_password_env,
        )
        #: Where jobs run: the engines `[serve]` asks for, or one given (Ray Serve's engine deployments).
        self.engine: Engine = engine or create_engines(client, settings.engine, settings.engines, settings.workers)
        self.queue: asyncio.Queue[JobSpec] = asyncio.Queue(maxsize=settings.max_queue)
        self._cancels: dict[str, CancelToken] = {}
        #: job id -> (its token's budget, the estimate held, the token's name).
        self._holds: dict[str, tuple[Budget, float, str | None]] = {}
        self.metrics = make_metrics(lambda: self.queue.qsize())
        self._encoding: dict[tuple[str, str], asyncio.Lock] = {}  # downloads being encoded into a new format
        self._finished: dict[str, asyncio.Event] = {}  # set when a job ends: long polls wake on it
        self._feeds: dict[str, JobFeed] = {}  # what running jobs tell their listeners (stream, events)
        self._workers: list[asyncio.Task[None]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._reserved = 0  # submissions between the queue-full check and their place in the queue
        #: Final records the store could not take (disk full, index locked): kept in memory, saved again later.
        self._unsaved: dict[str, dict[str, Any]] = {}
        self._resaver: asyncio.Task[None] | None = None
        #: Why the store cannot be written, while it cannot (reported by `/healthz`); None when it is fine.
        self.store_problem: str | None = None
        # Short blocking work (routing checks, durable writes ending in an fsync) gets threads of its own: it must
        # not queue behind generation in the default executor, nor block the event loop.
        self._side_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="soundforge-serve")
        # Encodes into a new download format (a 600 s MP3 takes ~50 s of CPU) get threads of their own, bounded:
        # admission and record writes never wait behind them.
        self._encode_pool = ThreadPoolExecutor(max_workers=ENCODE_THREADS, thread_name_prefix="soundforge-encode")

    # --- life cycle ---
    async def start(self) -> None:
        """Fail what a previous server left unfinished, start the engine and the workers."""
        await self.on_side(self.store.recover)
        await self.engine.start()
        self._workers.extend(asyncio.create_task(self._worker()) for _ in range(max(1, self.settings.workers)))
        if self.store.shared:
            self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        """A shared store's heartbeat, three times per lease: this replica lives; jobs of replicas gone fail."""
        while True:
            await asyncio.sleep(self.store.lease_s / 3)
            try:
                await self.on_side(self.store.sweep)
            except Exception:  # the index is unreachable for a moment: the next beat tries again
                log.warning("could not reach the job index for the heartbeat", exc_info=True)

    async def close(self) -> None:
        """Stop the workers, cancel running jobs, stop the engine."""
        for task in [*self._workers, *([self._heartbeat] if self._heartbeat else []), *filter(None, [self._resaver])]:
            task.cancel()
        for token in self._cancels.values():
            token.cancel()
        for job_id in list(self._feeds):  # listeners are told, not left waiting on a server that is going
            self._finish(job_id, {**(self.record(job_id) or {"id": job_id}), "status": "failed", "error": _STOPPING})
        await self.engine.close()
        self._encode_pool.shutdown(wait=True, cancel_futures=True)
        self._side_pool.shutdown(wait=True)
        self.store.close()

    async def on_side(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run short blocking work on the service's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._side_pool, functools.partial(fn, *args, **kwargs))

    # --- submitting ---
    async def submit(
        self,
        request: GenerationRequest,
        provider: str | None,
        *,
        budget: Budget | None = None,
        stream: bool = False,
        token: str | None = None,
    ) -> str | None:
        """Check the request (limits, routing, licence policy, the caller's budget: refusals raise) and queue it;
        its job id, or None when the queue is full. A full queue still checks the request first: a refusal is
        final, a full queue only says "later". A budget holds the job's estimate until the job ends, then counts
        what it cost; with the named `token` it belongs to, what was spent is kept in the job index, so a restart
        or another replica counts it too. A `stream` job is routed to a provider that streams, and its audio can
        be listened to while it is made (`feed(...).wav()`)."""
        has_room = self.queue.qsize() + self._reserved < self.queue.maxsize
        self._reserved += has_room  # the place is held from this check until the job is in the queue
        try:
            spec: JobSpec | None = await self.on_side(self._admit, request, provider, has_room, budget, stream, token)
        except StoreUnavailableError as exc:
            self._store_down(_reason(exc.__cause__ or exc))
            raise
        finally:
            self._reserved -= has_room
        if spec is None:
            return None
        self._cancels[spec.job_id] = CancelToken()
        self._feeds[spec.job_id] = JobFeed()
        self.queue.put_nowait(spec)
        return spec.job_id

    def _admit(
        self,
        request: GenerationRequest,
        provider: str | None,
        has_room: bool,
        budget: Budget | None = None,
        stream: bool = False,
        token: str | None = None,
    ) -> JobSpec | None:
        """On a service thread: limits, routing and policy before any compute, then the job's record is written
        before it is queued, so that no later save can race it. The job as the engines will run it, placement
        included (nothing downstream plans it again), or None when the queue is full."""
        request = build_request(request, {})
        if budget is not None and token is not None:  # what the token spent before a restart, or on other replicas
            budget.carry(self.store.index.spent(token))
        plan = self.client.plan(
            request, provider=provider, door="streamed_job" if stream else "job", limits=self.limits
        )
        if not has_room:
            return None
        # Every take the request may pay for is held (quality="retry" makes up to 1 + quality_retries paid calls).
        held = budget.reserve(plan.chosen.backend.name, plan.estimate) if budget is not None else 0.0
        job_id = self.store.new_id()
        queued = {
            "id": job_id,
            "status": "queued",
            "created_at": time.time(),
            "provider": provider,
            "stream": stream,
            "token": token,  # the token's name from [serve.tokens] (never its value): whose history it is in
            "progress": None,
            "request": request.model_dump(mode="json", exclude={"melody", "audio_prompt"}),
        }
        try:
            self.store.save(queued)
        except Exception as exc:  # the store cannot take the job: refused whole, nothing queued, held or left
            if budget is not None:
                budget.settle(held, None)
            self.store.discard(job_id)
            reason = _reason(exc)
            log.error("a job was refused: the store cannot take it (%s)", reason)
            raise StoreUnavailableError(
                f"the job store cannot take a new job now: {reason}",
                hint="nothing was queued or charged; /healthz says when the store takes writes again, then submit "
                "again (operator: free space on the store, make it writable, or release the index's lock)",
            ) from exc
        if budget is not None:
            self._holds[job_id] = (budget, held, token)
        return JobSpec(
            job_id,
            request,
            provider,
            self.audio_target(job_id),
            streamed=stream,
            backend=plan.chosen.backend.name,
            model=plan.chosen.model,
            local_only=all(candidate.backend.local for candidate in plan.candidates),
        )

    @property
    def limits(self) -> JobLimits:
        """What one job may ask of this server (`[serve]`), checked by the request's plan."""
        return JobLimits(
            max_seconds=self.settings.max_job_seconds, one_output=True, adapter_folders=self.settings.adapter_folders
        )

    # --- running ---
    async def _worker(self) -> None:
        while True:
            spec = await self.queue.get()
            job_id = spec.job_id
            try:
                await self._run(spec)
            except Exception as exc:  # a fault around the job (not in it) must not end the worker: the job fails
                log.exception("job %s could not be finished", job_id)
                record = {**(self.record(job_id) or {"id": job_id}), "status": "failed", "finished_at": time.time()}
                error = InternalError(f"the server could not finish the job: {type(exc).__name__}: {exc}").to_dict()
                self._finish(job_id, self.store.keep({**record, "error": error}))
            finally:
                self.queue.task_done()

    async def _run(self, spec: JobSpec) -> None:
        job_id = spec.job_id
        token = self._cancels.setdefault(job_id, CancelToken())
        if token.cancelled:  # cancelled while queued: its record already says so
            self._cancels.pop(job_id, None)
            self._settle(job_id, None)
            return
        store = self.store
        # In memory only: on disk the job stays "queued", and either way a restart reports it failed.
        started = time.time()
        store.remember({**store.load(job_id), "status": "running", "started_at": started})
        if self.metrics is not None:
            self.metrics.started()

        feed = self._feeds.get(job_id) or self._feeds.setdefault(job_id, JobFeed())
        loop = asyncio.get_running_loop()

        def on_progress(phase: str, done: int, total: int) -> None:  # the inline engine calls it from its threads
            current = store.load(job_id)
            if current["status"] == "running":
                store.remember({**current, "progress": {"phase": phase, "done": done, "total": total}})
            loop.call_soon_threadsafe(feed.progress, phase, done, total)

        def on_chunk(offset: int, sample_rate: int, channels: int, data: bytes) -> None:  # on the loop
            feed.chunk(PcmChunk(offset, sample_rate, channels, data))

        try:
            outcome = await self.engine.run(spec, token, on_progress, on_chunk)
        except Exception as exc:  # the engine itself failed (it could not start): the job still ends
            outcome = JobOutcome(
                "failed", error=EngineError(f"the engine could not run the job: {type(exc).__name__}: {exc}").to_dict()
            )
        finally:
            self._cancels.pop(job_id, None)
        self._settle(job_id, outcome)
        if outcome.error is not None and outcome.error.get("code") == "store_error":  # its audio could not be written
            self._store_down(str(outcome.error.get("message")))
        if self.metrics is not None:
            self.metrics.ended(outcome.status, outcome.provenance, time.time() - started, spec.provider)
        ending: dict[str, Any] = {"status": outcome.status, "finished_at": time.time()}
        if outcome.engine is not None:
            ending["engine"] = outcome.engine
        if outcome.attempts is not None:
            ending["attempts"] = outcome.attempts
        if outcome.replica is not None:
            ending["replica"] = outcome.replica
        if outcome.status == "succeeded":
            ending.update(
                license=outcome.license,
                provenance=outcome.provenance,
                substitution=Provenance.model_validate(outcome.provenance).substitution,
                cost=(outcome.provenance or {}).get("cost"),
            )
            if ending["cost"]:  # one line for people, as the CLI prints it (the page's history shows it)
                ending["cost_text"] = Cost.model_validate(ending["cost"]).describe()
            if outcome.stems:
                ending["stems"] = outcome.stems
        else:
            ending["error"] = outcome.error
            if outcome.license is not None:  # made, then lost to the store: what was made is still described
                ending.update(license=outcome.license, provenance=outcome.provenance)
        final = await self._save_final({**store.load(job_id), **ending})
        self._finish(job_id, final)

    async def _save_final(self, record: dict[str, Any]) -> dict[str, Any]:
        """Save a job's last record. When the store cannot take it (a full disk, an index locked past its timeout),
        the job ends failed with the reason, in memory, and the record is saved again until the store takes it;
        `/healthz` reports the store meanwhile. Nothing of the job is dropped: its licence and provenance stay."""
        try:
            saved: dict[str, Any] = await self.on_side(self.store.save, record)
            return saved
        except Exception as exc:
            reason = _reason(exc)
            log.error(
                "job %s: its record could not be saved (%s); kept in memory, saved again later", record["id"], reason
            )
            self._store_down(reason)
            error = StoreError(
                f"the job ended ({record.get('status')}) but its record could not be saved: {reason}"
            ).to_dict()
            failed = self.store.keep({**record, "status": "failed", "outcome": record.get("status"), "error": error})
            self._unsaved[record["id"]] = failed
            return failed

    def _store_down(self, reason: str) -> None:
        """The store refused a write: `/healthz` says why, and the store is tried again until it takes writes."""
        self.store_problem = reason
        if self._resaver is None or self._resaver.done():
            self._resaver = asyncio.create_task(self._save_again())

    async def _save_again(self) -> None:
        """Every `RESAVE_S`: save the records the store refused, or (with none) check that it takes a write again,
        until it does; then `/healthz` is `ok` again."""
        while self.store_problem is not None:
            await asyncio.sleep(RESAVE_S)
            try:
                for job_id, record in list(self._unsaved.items()):
                    await self.on_side(self.store.save, record)
                    self._unsaved.pop(job_id, None)
                await self.on_side(self.store.check_writable)
            except Exception as exc:
                self.store_problem = _reason(exc)
            else:
                self.store_problem = None

    def health(self) -> dict[str, Any]:
        """What `/healthz` answers: `ok`, or `degraded` with the reason while the store cannot be written."""
        answer: dict[str, Any] = {"status": "ok" if self.store_problem is None else "degraded"}
        if self.store_problem is not None:
            answer |= {"store": f"cannot write: {self.store_problem}", "unsaved_records": len(self._unsaved)}
        return answer

    def _settle(self, job_id: str, outcome: JobOutcome | None) -> None:
        """The job's budget hold becomes what it cost (nothing, when it failed or never ran)."""
        hold = self._holds.pop(job_id, None)
        if hold is None:
            return
        budget, held, token = hold
        # What was made costs what it cost, even when the store then lost it (a failed job with a provenance).
        cost = takes_cost(outcome.provenance) if outcome is not None and outcome.provenance else None
        budget.settle(held, cost)
        if token is not None and cost is not None and cost.amount:
            try:  # kept for good in the index: a restart must not give the token its whole budget again
                self.store.index.add_spent(token, cost.amount)
            except Exception:
                log.error(
                    "could not record %.4f USD spent by token %r in the job index", cost.amount, token, exc_info=True
                )

    def _finish(self, job_id: str, record: dict[str, Any]) -> None:
        """A job ended: long polls wake, listeners hear the end (and keep the feed they hold)."""
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()
        feed = self._feeds.pop(job_id, None)
        if feed is not None:
            feed.end(record)

    # --- reading ---
    def record(self, job_id: str) -> dict[str, Any] | None:
        """A job's record, or None when there is no such job."""
        try:
            return self.store.load(job_id)
        except KeyError:
            return None

    def history(self, token: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` jobs submitted with `token` (a named token sees its own jobs; without named
        tokens, every job), as their records stand now. Only the newest `HISTORY_SCAN` jobs are looked at: a
        token quiet for longer than that many jobs of others sees an empty history, not a slow scan."""
        found: list[dict[str, Any]] = []
        for offset in range(0, HISTORY_SCAN, HISTORY_PAGE):
            page = self.store.newest(HISTORY_PAGE, offset)
            found += [record for record in page if token is None or record.get("token") == token]
            if len(found) >= limit or len(page) < HISTORY_PAGE:
                break
        return found[:limit]

    def feed(self, job_id: str) -> JobFeed | None:
        """What a queued or running job tells its listeners; None once it has ended (its record says the rest)."""
        return self._feeds.get(job_id)

    def audio_target(self, job_id: str) -> str:
        """Where a job's audio is (or will be) stored: a local path or a URL."""
        return self.store.target(job_id, AUDIO_FILE)

    async def wait(self, job_id: str, record: dict[str, Any], seconds: float) -> dict[str, Any]:
        """The record once the job has ended, or as it stands after `seconds` (long poll)."""
        if seconds and record["status"] in ACTIVE:
            event = self._finished.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await event.wait()
            record = self.record(job_id) or record
        return record

    def stem_of(self, record: dict[str, Any], stem: str) -> dict[str, Any] | None:
        """The record of one of a finished job's stems (its role, licence and provenance); None when it has none."""
        return next((entry for entry in record.get("stems") or () if entry.get("role") == stem), None)

    async def download(self, job_id: str, record: dict[str, Any], format: str, stem: str | None = None) -> str:
        """The store's file holding a finished job's audio (or one of its stems, `stem_of` first) in `format`:
        other formats than WAV are encoded once and kept beside it (a 600 s mp3 takes ~50 s of CPU)."""
        source = AUDIO_FILE
        if stem is not None:
            entry = self.stem_of(record, stem)
            if entry is None:
                raise InvalidRequestError(f"this job has no stem {stem!r}", field="stem")
            source, record = role_path(source, stem).name, entry
        if format == "wav":
            return source
        cached = str(Path(source).with_suffix(f".{format}"))
        store = self.store
        if await self.on_side(store.exists, job_id, cached):
            return cached
        lock = self._encoding.setdefault((job_id, cached), asyncio.Lock())
        async with lock:  # concurrent downloads of one new format wait for one encode
            if await self.on_side(store.exists, job_id, cached):
                return cached

            def encode() -> None:
                # The stored file is final (its edits and loudness were applied when it was saved): the new
                # format encodes those very samples, with the job's record, and edits nothing again.
                stored = store.read(job_id, source)
                license = License.model_validate(record["license"])
                provenance = Provenance.model_validate(record["provenance"])
                store.write(job_id, cached, encode_saved(stored, format_for(None, format), license, provenance))

            try:
                await asyncio.get_running_loop().run_in_executor(self._encode_pool, encode)
                return cached
            finally:
                self._encoding.pop((job_id, cached), None)

    async def audio(self, job_id: str, record: dict[str, Any], format: str, stem: str | None = None) -> bytes:
        """A finished job's audio (or one of its stems) in `format`, whole (`download` names the file instead)."""
        file = await self.download(job_id, record, format, stem)
        data: bytes = await self.on_side(self.store.read, job_id, file)
        return data

    # --- cancelling ---
    async def cancel(self, job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """Cancel a queued or running job; the record as it stands after (a queued job is cancelled at once)."""
        token = self._cancels.get(job_id)
        if token is not None:
            token.cancel()
            self.engine.cancel(job_id)
            if record["status"] == "queued":
                record = await self.on_side(
                    self.store.save, {**record, "status": "cancelled", "finished_at": time.time()}
                )
                self._finish(job_id, record)
        return record


def _reason(error: BaseException) -> str:
    """A store fault in words for records, logs and `/healthz`: its type and message."""
    return f"{type(error).__name__}: {error}"
