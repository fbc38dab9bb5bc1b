"""The template every cloud backend fills in: key lookup, availability, the HTTP core, sync over async.

A cloud adapter writes `agenerate_raw` (async) and `map_error`; generation from sync code runs the same
coroutine on the provider's background loop, so both paths share pooled connections and the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..audio import encode, format_for, load_audio, resample, to_channels
from ..errors import (
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
    SoundforgeError,
)
from ..request import GenerationRequest
from ._answers import PaidAnswers
from ._http import HttpCore, HttpReply, HttpSettings
from ._journal import CloudJobJournal, PendingJob, default_path, job_key
from .base import Availability, Backend, RawGeneration, RawTrack, RunContext, checked_values, fit_length

if TYPE_CHECKING:
    from ._memory import ModelMemory

T = TypeVar("T")


#: What every cloud provider reads: the connection (HttpSettings' fields), the key, and job polling.
CLOUD_SETTINGS = frozenset(
    {f for f in HttpSettings.__dataclass_fields__}
    | {"api_key_env", "poll_interval", "poll_max_interval", "job_timeout", "job_journal", "cancel_on_timeout"}
)


@dataclass
class JobEntry:
    """One call's place in the cloud job journal: the job already submitted for the same request, if any.

    With no journal (`job_journal = "off"`) every method does nothing and `pending` is None.
    """

    journal: CloudJobJournal | None
    key: str
    provider: str
    model: str
    #: The request's record (`GenerationRequest.record()`), kept with the job.
    record_of_request: dict[str, Any]
    pending: PendingJob | None = None
    #: Whether a job whose wait ends is left running for the next call (journaled and not `cancel_on_timeout`).
    keep_on_timeout: bool = False

    job_id: str | None = None

    def record(self, job_id: str, data: dict[str, Any] | None = None) -> None:
        """Write the submitted job down, before waiting for it."""
        self.job_id = job_id
        if self.journal is not None:
            self.journal.record(self.key, self.provider, self.model, job_id, self.record_of_request, data or {})

    def forget(self) -> None:
        """The job's result was delivered, or the job ended without one."""
        if self.journal is not None and self.job_id is not None:
            self.journal.forget(self.job_id)

    def release(self) -> None:
        """This call stops waiting for the job (a timeout): the next call for the same request takes it over."""
        if self.journal is not None and self.job_id is not None:
            self.journal.release(self.job_id)

    def kept_hint(self) -> str:
        """What to tell a caller whose wait ended while the job goes on."""
        return (
            f"the {self.provider} job {self.job_id} is still running and is kept in the job journal "
            f"({self.journal.path if self.journal else 'off'}): call again with the same request to collect its "
            "result without paying twice (`soundforge jobs` lists pending jobs)"
        )


class CloudBackend(Backend):
    """A backend that calls a remote API through the shared HTTP core."""

    local = False
    settings_keys: ClassVar[frozenset[str] | None] = CLOUD_SETTINGS
    #: Environment variable the vendor's own SDK reads the key from.
    key_env: ClassVar[str]
    default_base_url: ClassVar[str]
    #: Whether billed answers are kept on disk until delivered (`_answers`); False for job APIs, whose job id is
    #: journaled instead (Replicate, fal).
    keeps_answers: ClassVar[bool] = True

    def __init__(self, settings: dict[str, Any] | None = None, *, memory: ModelMemory | None = None) -> None:
        super().__init__(settings, memory=memory)
        self._http: HttpCore | None = None
        self._journal: CloudJobJournal | None = None

    def job_journal(self) -> CloudJobJournal | None:
        """The journal remote jobs are kept in (setting `job_journal`: a path, or "off"), or None."""
        where = self.settings.get("job_journal")
        if where == "off":
            return None
        path = Path(where) if where else default_path()
        if self._journal is None or self._journal.path != path:
            self._journal = CloudJobJournal(path)  # kept: it holds its connections open
        return self._journal

    def job_entry(self, request: GenerationRequest, model: str) -> JobEntry:
        """This call's place in the job journal, with the job already submitted for the same request if any."""
        journal = self.job_journal()
        record = request.record()
        key = job_key(self.name, model, record)
        pending = journal.claim(key) if journal is not None else None
        keep = journal is not None and not self.settings.get("cancel_on_timeout", False)
        return JobEntry(journal, key, self.name, model, record, pending, keep, pending.job_id if pending else None)

    async def wait_for_job(
        self,
        entry: JobEntry,
        fetch: Callable[[], Awaitable[T]],
        finished: Callable[[T], bool],
        cancel: Callable[[], Awaitable[None]],
        context: RunContext,
    ) -> T:
        """`poll_job` for a journaled job: a wait that ends leaves it in the journal (with a hint saying how to
        collect it); a cancelled or cancelled-on-timeout job is forgotten."""
        try:
            return await poll_job(
                fetch,
                finished,
                context=context,
                settings=self.settings,
                cancel=cancel,
                provider=self.name,
                keep_on_timeout=entry.keep_on_timeout,
            )
        except GenerationTimeoutError as exc:
            if entry.keep_on_timeout:
                entry.release()
                exc.hint = entry.kept_hint()
            else:
                entry.forget()
            raise
        except BaseException:  # cancelled by the caller: the remote job was cancelled too
            entry.forget()
            raise

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.http_settings().base_url!r})"

    def http_settings(self) -> HttpSettings:
        """This provider's connection settings (key from settings or `key_env`)."""
        return HttpSettings.from_settings(self.settings, default_base_url=self.default_base_url, key_env=self.key_env)

    @property
    def http(self) -> HttpCore:
        """The provider's HTTP core, created on first use."""
        if self._http is None:
            from .._version import __version__

            self._http = HttpCore(
                self.name,
                self.http_settings(),
                auth=self.auth_headers,
                map_error=self.map_error,
                user_agent=f"soundforge/{__version__}",
                final=self.final_answer,
            )
        return self._http

    def availability(self, request: GenerationRequest | None = None) -> Availability:
        env = str(self.settings.get("api_key_env", self.key_env))
        if not (self.settings.get("api_key") or os.environ.get(env)):
            return Availability(False, f"no API key ({env} is not set)", fix=f"export {env}=...")
        return Availability(True)

    @abstractmethod
    def auth_headers(self, key: str) -> dict[str, str]:
        """The header(s) that carry the key."""

    def map_error(self, status: int, body: Any, request_id: str | None) -> SoundforgeError | None:
        """Provider-specific error mapping; None falls back to the generic mapping by status."""
        return None

    def final_answer(self, headers: Any) -> bool:
        """Whether an error answer's headers mark it final, so a status that is usually retried is not."""
        return False

    @abstractmethod
    async def agenerate_raw(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        """Make the audio with the remote API."""

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        return self.http.run_sync(lambda: self._delivered(request, model, context), context)

    async def agenerate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        return await self._delivered(request, model, context)

    def paid_answers(self, request: GenerationRequest, model: str) -> PaidAnswers | None:
        """The spool that keeps this call's billed answers until it delivers (`_answers`); None when this provider
        keeps none (job APIs) or the journal is off. The caller settles it when the call ends."""
        journal = self.job_journal() if self.keeps_answers else None
        if journal is None:
            return None
        record = request.record()
        return PaidAnswers.open(journal, job_key(self.name, model, record), self.name, model, record)

    async def _delivered(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        """`agenerate_raw` with its paid answers kept on disk until it delivers (`_answers`)."""
        # On the event loop's thread, not a worker's: one SQLite connection per thread, and connections opened at
        # once on a new journal race to set it up ("database is locked": tests/ops/test_cost.py saw it).
        answers = self.paid_answers(request, model)
        if answers is None:
            return await self.agenerate_raw(request, model, context)
        with answers:
            return await self.agenerate_raw(request, model, replace(context, answers=answers))

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    async def aclose(self) -> None:
        """Close the connections opened on the caller's event loop too (`close` reaches only the background one)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None


async def poll_job(
    fetch: Callable[[], Awaitable[T]],
    finished: Callable[[T], bool],
    *,
    context: RunContext,
    settings: dict[str, Any],
    cancel: Callable[[], Awaitable[None]],
    provider: str,
    keep_on_timeout: bool = False,
) -> T:
    """Poll a remote job until `finished`, with growing intervals; cancel it remotely when the caller cancels, and on
    timeout unless `keep_on_timeout` (the job is in the journal: the next call collects it, nothing is wasted).

    Settings: `poll_interval` (first wait, default 0.5 s), `poll_max_interval` (5 s), `job_timeout` (600 s),
    `cancel_on_timeout` (cancel even a journaled job when the wait ends; see `CloudBackend.job_entry`).
    """
    interval = float(settings.get("poll_interval", 0.5))
    ceiling = float(settings.get("poll_max_interval", 5.0))
    deadline = asyncio.get_running_loop().time() + float(settings.get("job_timeout", 600.0))
    polls = 0
    try:
        while True:
            state = await fetch()
            if finished(state):
                return state
            polls += 1
            context.progress("queued", polls, polls + 1)
            if asyncio.get_running_loop().time() + interval > deadline:
                fate = "it goes on and is kept in the job journal" if keep_on_timeout else "it was cancelled"
                raise GenerationTimeoutError(
                    f"the {provider} job did not finish within {settings.get('job_timeout', 600.0)} s; {fate}",
                    provider=provider,
                )
            await asyncio.sleep(interval)
            interval = min(ceiling, interval * 1.5)
    except GenerationTimeoutError:
        if not keep_on_timeout:
            with contextlib.suppress(Exception):
                await asyncio.shield(cancel())
        raise
    except (GenerationCancelledError, asyncio.CancelledError):
        with contextlib.suppress(Exception):
            await asyncio.shield(cancel())
        raise


def model_inputs(
    request: GenerationRequest, provider: str, known: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An aggregator's `extra`: `extra["input"]`, the hosted model's own inputs passed through as they are, and the
    other keys checked against `known` (none allowed when None). Returns (inputs, checked keys)."""
    rest = {key: value for key, value in request.extra.items() if key != "input"}
    inputs = request.extra.get("input", {})
    if not isinstance(inputs, dict):
        raise InvalidRequestError(
            "extra['input'] must be a dict of the model's inputs", field="extra", provider=provider
        )
    if known is None:
        if rest:
            raise InvalidRequestError(
                f"for this model, pass its inputs as extra={{'input': {{...}}}} (not {', '.join(sorted(rest))})",
                field="extra",
                provider=provider,
            )
        return inputs, {}
    return inputs, checked_values(rest, known, provider=provider)


#: How an audio prompt is uploaded unless a provider needs otherwise: MP3 at 320 kbps, 2.4 MB a minute of stereo,
#: a quarter of 16-bit WAV (the clip conditions a generation or a separation that re-encodes what it returns).
UPLOAD_FORMATS = ("mp3", "wav")


def upload_file(audio: Any, rate: int, kind: str = "mp3", *, sample_rate: int = 44100) -> tuple[str, bytes, str]:
    """An audio prompt as a multipart file `(name, bytes, mime)`: stereo at `sample_rate`, as MP3 (compact) or WAV."""
    fmt = format_for(None, kind)
    data = encode(to_channels(resample(audio, rate, sample_rate), 2), sample_rate, fmt)
    return f"input{fmt.extension}", data, fmt.mime


def cloud_track(
    request: GenerationRequest,
    audio: Any,
    rate: int,
    parameters: dict[str, Any],
    *,
    api: str,
    watermarks: list[str] | None = None,
) -> RawGeneration:
    """One track a cloud API made, cut or padded to exactly the duration asked for (an API whose length is steered
    by the prompt or the lyrics makes what it makes; `parameters` should say how long it was)."""
    track = RawTrack(
        audio=fit_length(audio, round(request.duration * rate)), sample_rate=rate, seed=None, parameters=parameters
    )
    return RawGeneration(tracks=[track], engine_versions={"api": api}, device="cloud", watermarks=watermarks or [])


def decode_reply(reply: HttpReply, provider: str) -> tuple[Any, int]:
    """Decode an audio body and delete its temp file; ProviderError if it is not audio."""
    try:
        return load_audio(reply.path)
    except SoundforgeError as exc:
        raise ProviderError(f"{provider} returned audio that cannot be decoded", provider=provider) from exc
    finally:
        reply.discard()
