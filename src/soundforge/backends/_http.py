"""The HTTP layer every cloud backend shares (httpx + tenacity).

- Pooled clients per event loop; sync callers share one background loop, so they are pooled and bounded too.
- Timeouts (connect, read, total) and `base_url` from the provider's settings.
- Retries with exponential backoff and jitter on connection failures before sending, 408, 429 and 5xx,
  honouring Retry-After; never on 4xx answers about the request, and never re-sending a non-idempotent
  submit whose outcome is unknown (the response was cut off or timed out after the request went out).
- Errors mapped to soundforge's tree with the provider's message, status and request id.
- Response bodies stream to a temp file with a size cap; a cut-off or oversized body leaves no file.
- Keys come from settings or the vendor's usual environment variable and never appear in reprs or errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import shutil
import tempfile
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import (
    AuthenticationError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    SoundforgeError,
    system_reason,
)
from ..secrets import Secret
from ._shards import ClientShards
from ._streamcopy import StreamCopy, file_chunks
from ._urls import check_output_url
from .base import RunContext

__all__ = ["HttpCore", "HttpReply", "HttpSettings", "Secret", "backoff_delay", "check_output_url"]

T = TypeVar("T")
#: Set to "1" (test suites set it) and every request to a host that is not loopback is refused before it is
#: sent: whatever keys the machine has, a test cannot reach a real provider (like pydantic-ai's
#: ALLOW_MODEL_REQUESTS). An environment variable, so child processes (serve's engine) inherit it.
BLOCK_REMOTE_ENV = "SOUNDFORGE_BLOCK_REMOTE_REQUESTS"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
ErrorMapper = Callable[[int, Any, str | None], SoundforgeError | None]


@dataclass
class HttpSettings:
    """Connection settings of one cloud provider, from its `[providers.NAME]` config section."""

    base_url: str
    api_key: Secret | None = field(repr=False)
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    total_timeout: float = 900.0
    max_retries: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 120.0
    max_concurrency: int = 8
    max_download_bytes: int = 512 * 1024 * 1024
    download_dir: str | None = None
    allow_loopback_urls: bool = False
    allow_private_urls: bool = False

    @classmethod
    def from_settings(cls, settings: dict[str, Any], *, default_base_url: str, key_env: str) -> HttpSettings:
        """Read settings (`base_url`, `api_key`, `api_key_env`, timeouts, limits …); the key from env if not set."""
        key = settings.get("api_key") or os.environ.get(str(settings.get("api_key_env", key_env)), "")
        known = {f for f in cls.__dataclass_fields__ if f not in ("base_url", "api_key")}
        values = {k: v for k, v in settings.items() if k in known}
        return cls(
            base_url=str(settings.get("base_url", default_base_url)).rstrip("/"),
            api_key=Secret(str(key)) if key else None,
            **values,
        )


@dataclass
class HttpReply:
    """A successful response: headers, and the body in a temp file (delete it with `discard`)."""

    status: int
    headers: dict[str, str]
    path: Path

    def json(self) -> Any:
        """The body parsed as JSON (ProviderError when it is not JSON)."""
        try:
            return json.loads(self.path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProviderError(f"malformed JSON in the provider's answer: {exc}") from None

    def discard(self) -> None:
        """Delete the body file."""
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class StreamedReply:
    """An answer whose body is read as it arrives (`HttpCore.stream`)."""

    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]


class _OutcomeUnknown(Exception):
    """The request went out and no complete answer came back: a non-idempotent call must not be re-sent."""


class HttpCore:
    """One provider's HTTP client: retries, error mapping, streamed bodies, concurrency bound."""

    def __init__(
        self,
        provider: str,
        settings: HttpSettings,
        *,
        auth: Callable[[str], dict[str, str]],
        map_error: ErrorMapper,
        user_agent: str,
        final: Callable[[Any], bool] | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self._auth = auth
        self._map_error = map_error
        # Whether an error answer's headers say it is final whatever its status (fal's `X-Fal-Retryable: false`).
        self._final = final
        self._user_agent = user_agent
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientShards] = weakref.WeakKeyDictionary()
        self._bounds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpCore({self.provider!r}, base_url={self.settings.base_url!r})"

    # --- sync bridge ---
    def submit(self, make: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
        """Start a coroutine on this provider's background loop (started on first use) and return at once."""
        with self._loop_lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name=f"soundforge-{self.provider}", daemon=True).start()
            return asyncio.run_coroutine_threadsafe(make(), self._loop)

    def run_sync(self, make: Callable[[], Coroutine[Any, Any, T]], context: RunContext) -> T:
        """Run a coroutine on this provider's background loop and wait; cancelling the token cancels it."""
        future = self.submit(make)
        # Poll with wait(), not result(timeout): GenerationTimeoutError is itself a TimeoutError.
        while not concurrent.futures.wait([future], timeout=0.05).done:
            if context.cancel.cancelled:
                future.cancel()
                context.cancel.raise_if_cancelled()
        return future.result()

    async def aclose(self) -> None:
        """Close the pooled connections made on the running loop (an async caller's), then the background loop's."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        self.close()

    def close(self) -> None:
        """Close pooled connections of the background loop and stop it."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            client = self._clients.pop(loop, None)
            if client is not None:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        self._loop = None

    # --- per-loop resources ---
    def _client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        shards = self._clients.get(loop)
        if shards is None:
            s = self.settings
            trust = httpx.create_ssl_context()  # one for every shard: loading the CA bundle costs 40 ms each time
            shards = self._clients[loop] = ClientShards(
                lambda connections: httpx.AsyncClient(
                    base_url=s.base_url,
                    verify=trust,
                    timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout),
                    limits=httpx.Limits(max_connections=connections),
                    follow_redirects=False,
                    headers={"User-Agent": self._user_agent},
                ),
                max(s.max_concurrency, 1),
            )
        return shards.next()

    def _bound(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        bound = self._bounds.get(loop)
        if bound is None:
            bound = self._bounds[loop] = asyncio.Semaphore(max(1, self.settings.max_concurrency))
        return bound

    # --- requests ---
    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        if self.settings.api_key is None:
            raise AuthenticationError(
                f"no API key configured for {self.provider}",
                provider=self.provider,
                hint=f"set [providers.{self.provider}] api_key_env or the vendor's variable",
            )
        return {**self._auth(self.settings.api_key.get()), **(extra or {})}

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        context: RunContext,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        **kwargs: Any,
    ) -> HttpReply:
        """Send with retries; return the body streamed to a temp file, or raise a mapped SoundforgeError.

        `path` is relative to `base_url`, or an absolute URL; `auth=False` sends no key (third-party hosts).
        """
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        s = self.settings
        send_headers = self._headers(headers) if auth else dict(headers or {})

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, _Retryable)

        async def attempt() -> HttpReply:
            context.cancel.raise_if_cancelled()
            async with self._bound():
                return await self._once(method, path, idempotent, send_headers, context, kwargs)

        async def with_retries() -> HttpReply:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(s.max_retries + 1),
                retry=retry_if_exception(should_retry),
                wait=self._wait,
                reraise=True,
            )
            async for trial in retrying:
                with trial:
                    return await attempt()
            raise AssertionError("unreachable")  # pragma: no cover

        answers = None if idempotent else context.answers
        kept = answers.take(method, path) if answers is not None else None
        if kept is not None:  # an earlier call paid for this answer and did not deliver it: replay it
            return self._replay(kept.status, kept.headers, kept.file)
        try:
            reply = await asyncio.wait_for(with_retries(), s.total_timeout)
        except _Retryable as exc:
            raise exc.error from None
        except TimeoutError:
            raise GenerationTimeoutError(
                f"{self.provider} did not answer within {s.total_timeout:g} s", provider=self.provider
            ) from None
        if answers is not None:  # billed: a copy is on disk before anything reads it
            answers.keep(method, path, reply.status, reply.headers, reply.path)
        return reply

    def _replay(self, status: int, headers: dict[str, str], kept: Path) -> HttpReply:
        """A kept answer as a fresh reply (a copy in the download folder: readers delete their reply's file)."""
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed at once, kept for the reader
            prefix="soundforge-", suffix=".part", dir=self.settings.download_dir, delete=False
        )
        with handle, kept.open("rb") as source:
            shutil.copyfileobj(source, handle)
        return HttpReply(status, headers, Path(handle.name))

    def _wait(self, state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(getattr(exc, "error", None), "retry_after", None)
        return float(max(backoff_delay(self.settings, state.attempt_number), after or 0.0))

    async def _once(
        self,
        method: str,
        path: str,
        idempotent: bool,
        headers: dict[str, str],
        context: RunContext,
        kwargs: dict[str, Any],
    ) -> HttpReply:
        import httpx

        client = self._client()
        request = client.build_request(method, path, headers=headers, **kwargs)
        if os.environ.get(BLOCK_REMOTE_ENV) == "1" and request.url.host not in _LOOPBACK_HOSTS:
            raise ProviderError(
                f"refusing to send a request to {request.url.host}: remote requests are blocked "
                f"({BLOCK_REMOTE_ENV}=1, set by test suites)",
                provider=self.provider,
            )
        if "files" in kwargs:
            # Render a multipart body once: streamed, httpx sends each part's pieces as separate socket writes
            # (about 20 for a form), which cost more CPU per request than the whole form in memory.
            request.read()
        try:
            response = await client.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    body = await _read_small(response)
                    raise self._error(response.status_code, body, response.headers)
                return await self._save(response, context)
            finally:
                await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing was sent: always safe to try again. The host and the system's reason (refused, no such
            # host, timed out) say where to look; the path and query are left out (they may carry a key).
            where = f"{request.url.scheme}://{request.url.host}" + (f":{request.url.port}" if request.url.port else "")
            why = system_reason(exc)
            raise _Retryable(
                ProviderError(
                    f"cannot connect to {self.provider} at {where}: {why}",
                    provider=self.provider,
                    hint=f"check this machine's network or proxy (HTTPS_PROXY), or [providers.{self.provider}] "
                    "base_url",
                )
            ) from None
        except (
            httpx.ReadTimeout,
            httpx.WriteTimeout,
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
            _OutcomeUnknown,
        ) as exc:
            error: SoundforgeError
            if isinstance(exc, httpx.ReadTimeout):
                error = GenerationTimeoutError(
                    f"{self.provider} did not answer within {self.settings.read_timeout:g} s", provider=self.provider
                )
            else:
                error = ProviderError(
                    f"the answer from {self.provider} was cut off ({type(exc).__name__})", provider=self.provider
                )
            if idempotent:
                raise _Retryable(error) from None
            error.hint = (
                "the request was sent but its outcome is unknown; soundforge does not re-send it, "
                "so you are not charged twice: try again yourself if you wish"
            )
            raise error from None

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, *, context: RunContext, **kwargs: Any
    ) -> AsyncIterator[StreamedReply]:
        """Send once and hand over the answer's body as it arrives (`StreamedReply.chunks`), for APIs that stream
        audio while they make it. Never retried: once audio has been handed on, a second call would be a second
        charge; an error answer is mapped as for `request`. The body is capped at `max_download_bytes`.

        With `context.answers` (a billed stream), the body is also written to a file as it arrives and kept once it
        has arrived whole, as `request` keeps a one-response answer; a kept whole answer to the same route is
        replayed from disk instead of sending. A stream cut off or left early is not kept (it is not the answer).
        """
        import httpx

        answers = context.answers
        kept = answers.take(method, path) if answers is not None else None
        if kept is not None:  # an earlier call paid for this stream and did not deliver it: replay it
            yield StreamedReply(kept.status, dict(kept.headers), file_chunks(kept.file, context))
            return
        client = self._client()
        request = client.build_request(method, path, headers=self._headers(None), **kwargs)
        if os.environ.get(BLOCK_REMOTE_ENV) == "1" and request.url.host not in _LOOPBACK_HOSTS:
            raise ProviderError(
                f"refusing to send a request to {request.url.host}: remote requests are blocked "
                f"({BLOCK_REMOTE_ENV}=1, set by test suites)",
                provider=self.provider,
            )
        cap = self.settings.max_download_bytes
        copy: StreamCopy | None = None
        async with self._bound():
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise ProviderError(
                    f"cannot stream from {self.provider}: {type(exc).__name__}", provider=self.provider
                ) from None
            try:
                if response.status_code >= 400:
                    error = self._error(response.status_code, await _read_small(response), response.headers)
                    raise error.error if isinstance(error, _Retryable) else error

                status, headers = response.status_code, dict(response.headers)
                copy = StreamCopy.open(self.settings.download_dir) if answers is not None else None

                async def chunks() -> AsyncIterator[bytes]:
                    size = 0
                    try:
                        async for chunk in response.aiter_bytes():
                            context.cancel.raise_if_cancelled()
                            size += len(chunk)
                            if size > cap:
                                raise ProviderError(
                                    f"{self.provider} stream passed the {cap}-byte cap", provider=self.provider
                                )
                            if copy is not None:
                                copy.write(chunk)
                            yield chunk
                    except (httpx.TransportError, httpx.StreamError) as exc:
                        raise ProviderError(
                            f"the stream from {self.provider} was cut off ({type(exc).__name__})",
                            provider=self.provider,
                            hint="the audio received so far was handed on; soundforge does not re-send the request",
                        ) from None
                    if copy is not None and answers is not None:  # the whole answer arrived: keep it
                        kept_body = copy.close()
                        if kept_body is not None:
                            answers.keep(method, path, status, headers, kept_body)

                yield StreamedReply(status, headers, chunks())
            finally:
                if copy is not None:  # before anything that may raise again on the way out (a cancel)
                    copy.discard()
                await response.aclose()

    async def request_json(
        self, method: str, path: str, *, idempotent: bool, context: RunContext, **kwargs: Any
    ) -> dict[str, Any]:
        """`request`, then the answer as a JSON object; the body file is always removed, even when malformed."""
        reply = await self.request(method, path, idempotent=idempotent, context=context, **kwargs)
        try:
            data = reply.json()
        finally:
            reply.discard()
        if not isinstance(data, dict):
            raise ProviderError(f"{self.provider} answered with JSON that is not an object", provider=self.provider)
        return data

    async def download(self, url: str, context: RunContext) -> HttpReply:
        """Fetch an output file the provider pointed to: guarded URL, no API key sent, streamed and capped."""
        check_output_url(url, self.settings)
        return await self.request("GET", url, idempotent=True, context=context, auth=False)

    def same_origin(self, url: str) -> bool:
        """Whether `url` is on the provider's own API host (only then may it receive the key)."""
        ours, theirs = urlsplit(self.settings.base_url), urlsplit(url)
        return (ours.scheme, ours.hostname, ours.port) == (theirs.scheme, theirs.hostname, theirs.port)

    def _error(self, status: int, body: Any, headers: Any) -> Exception:
        request_id = headers.get("x-request-id") or headers.get("request-id") or headers.get("x-fal-request-id")
        mapped = self._map_error(status, body, request_id)
        retry_after = _retry_after(headers.get("retry-after"))
        if mapped is None:
            message = _message(body)
            if status in (401, 403):
                mapped = AuthenticationError(
                    f"{self.provider} rejected the API key ({status}): {message}", provider=self.provider
                )
            elif status == 429:
                mapped = RateLimitError(
                    f"{self.provider} rate limit: {message}",
                    provider=self.provider,
                    retry_after=retry_after,
                    request_id=request_id,
                )
            elif status >= 500 or status == 408:
                mapped = ProviderError(
                    f"{self.provider} failed ({status}): {message}",
                    provider=self.provider,
                    status=status,
                    request_id=request_id,
                )
            else:
                mapped = InvalidRequestError(
                    f"{self.provider} refused the request ({status}): {message}", provider=self.provider
                )
        if isinstance(mapped, RateLimitError) and mapped.retry_after is None:
            mapped.retry_after = retry_after
        if status in RETRY_STATUSES and not (self._final is not None and self._final(headers)):
            # The delay that would be slept (`_wait`): the vendor's own (a Retry-After header, or what `map_error`
            # read from the body: Gemini's google.rpc.RetryInfo) is weighed against max_retry_after.
            delay = mapped.retry_after if isinstance(mapped, RateLimitError) else retry_after
            too_long = delay is not None and delay > self.settings.max_retry_after
            if not too_long:
                return _Retryable(mapped)
        return mapped

    async def _save(self, response: Any, context: RunContext) -> HttpReply:
        """Stream the body to a temp file under the size cap; check it is complete."""
        cap = self.settings.max_download_bytes
        expected = response.headers.get("content-length")
        if expected is not None and int(expected) > cap:
            raise ProviderError(
                f"{self.provider} answer is {int(expected)} bytes, over the {cap}-byte cap",
                provider=self.provider,
                hint="raise max_download_bytes if this is expected",
            )
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, kept on success
            prefix="soundforge-", suffix=".part", dir=self.settings.download_dir, delete=False
        )
        path = Path(handle.name)
        try:
            size = 0
            with handle:
                async for chunk in response.aiter_bytes():
                    context.cancel.raise_if_cancelled()
                    size += len(chunk)
                    if size > cap:
                        raise ProviderError(f"{self.provider} answer passed the {cap}-byte cap", provider=self.provider)
                    handle.write(chunk)
            if expected is not None and size != int(expected):
                raise _OutcomeUnknown(f"{size} of {expected} bytes")
            return HttpReply(response.status_code, dict(response.headers), path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise


def backoff_delay(settings: HttpSettings, attempt: int) -> float:
    """The wait before retry number `attempt` (1 for the first): exponential from `backoff_initial` up to
    `backoff_max`, with jitter so that many clients do not retry in step."""
    backoff: float = min(settings.backoff_max, settings.backoff_initial * 2.0 ** (attempt - 1))
    return backoff * (0.5 + random.random() / 2)


class _Retryable(Exception):
    def __init__(self, error: SoundforgeError) -> None:
        super().__init__(str(error))
        self.error = error


async def _read_small(response: Any, limit: int = 1 << 20) -> Any:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            break
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")[:2000]


def _message(body: Any) -> str:
    """The provider's own message, from the common error body shapes."""
    if isinstance(body, dict):
        for key in ("message", "detail", "error", "errors", "title"):
            value = body.get(key)
            if isinstance(value, dict):
                return _message(value)
            if isinstance(value, list):
                return "; ".join(_message(v) if isinstance(v, dict) else str(v) for v in value)
            if value:
                return str(value)
        return json.dumps(body)[:500]
    return str(body)[:500] or "no details"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from datetime import datetime

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None
