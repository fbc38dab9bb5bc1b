"""One exception tree for every failure soundforge reports.

The branch tells the caller what to do next: fix the request (`InvalidRequestError`), fix the set-up
(`ConfigurationError`, `ProviderUnavailableError`, `AuthenticationError`), change the licence policy or
the provider (`LicensePolicyError`), or wait and retry (`RateLimitError`, `ProviderError`, `GenerationTimeoutError`).
`fallback_allowed` says whether routing may try the next provider after this error.
"""

from __future__ import annotations

import copy
import os
import textwrap
from collections.abc import Sequence
from typing import Any

from .secrets import redact


def clipped(text: str, limit: int = 300) -> str:
    """Another library's message on one line, cut at a word (never mid-word) with "…" when longer than `limit`:
    a hub's or a server's error can be pages long, and the part kept must still read."""
    return textwrap.shorten(" ".join(str(text).split()), width=limit, placeholder=" …")


def system_reason(exc: BaseException) -> str:
    """Why an I/O call failed, in the system's words where the exception chain holds them ("Connection refused",
    "Name or service not known"): a library's own message is often only "All connection attempts failed"."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            # asyncio words a refusal "Connect call failed (host, port)": the errno's own text says why.
            return os.strerror(seen.errno) if isinstance(seen.errno, int) and seen.errno > 0 else seen.strerror
        seen = seen.__cause__ or seen.__context__
    return clipped(str(exc)) or type(exc).__name__


class SoundforgeError(Exception):
    """Base class of every error raised by soundforge."""

    #: Whether routing may move on to a fallback provider after this error.
    fallback_allowed: bool = False
    #: Short machine-readable code, stable across versions (used by the CLI and the HTTP service).
    code: str = "soundforge_error"
    #: The HTTP status `soundforge serve` answers with, and the exit code of the `soundforge` command: the error
    #: policy lives with the error, so the two front doors cannot disagree.
    http_status: int = 502
    exit_code: int = 1

    def __init__(self, message: str, *, provider: str | None = None, hint: str | None = None) -> None:
        # Every error passes through here: a key a provider echoed back (a 401 quoting the Authorization
        # header) is redacted before the text reaches a log, a journal, a record or an HTTP body.
        self.message = redact(message)
        self.provider = provider
        self.hint = hint
        super().__init__(self.message)

    def with_message(self, message: str) -> SoundforgeError:
        """The same error (class, code, field, provider, hint) with another message: a door that gathers the
        refusals of many items (a batch's rows) reports them under the first one's code."""
        copied = copy.copy(self)
        copied.message = redact(message)
        copied.args = (copied.message,)
        return copied

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its attributes, not by calling __init__ again with the message (subclasses take other
        # arguments): errors cross process boundaries (Ray workers, serve's engine process, process pools).
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return redact(text)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the error, free of secrets."""
        return {key: redact(value) if isinstance(value, str) else value for key, value in self._describe().items()}

    def _describe(self) -> dict[str, Any]:
        """The fields of `to_dict` before redaction; subclasses add their own."""
        return {
            "code": self.code,
            "type": type(self).__name__,
            "message": self.message,
            "provider": self.provider,
            "hint": self.hint,
        }


# --- set-up ---------------------------------------------------------------------------------------
class ConfigurationError(SoundforgeError):
    """A config file, environment variable or argument is malformed."""

    code = "configuration_error"
    http_status = 500
    exit_code = 3


class ProviderNotFoundError(ConfigurationError):
    """The provider spec names no known backend."""

    code = "provider_not_found"
    http_status = 404

    def __init__(self, name: str, known: Sequence[str]) -> None:
        import difflib

        close = difflib.get_close_matches(name, list(known), n=1)
        super().__init__(
            f"unknown provider {name!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; known providers: {', '.join(sorted(known))}",
            provider=name,
            hint="run `soundforge providers` to see them all",
        )
        self.known = list(known)


class ProviderUnavailableError(SoundforgeError):
    """The backend exists but cannot run here (missing extra, missing key, not implemented yet)."""

    code = "provider_unavailable"
    fallback_allowed = True
    http_status = 503
    exit_code = 3

    def __init__(self, provider: str, reason: str, *, fix: str | None = None) -> None:
        super().__init__(f"provider {provider!r} is not available: {reason}", provider=provider, hint=fix)
        self.reason = reason
        self.fix = fix


class ModelNotAvailableError(SoundforgeError):
    """The provider exists but the requested model is unknown to it or its weights are missing."""

    code = "model_not_available"
    fallback_allowed = True
    http_status = 503
    exit_code = 3

    def __init__(self, provider: str, model: str, reason: str, *, fix: str | None = None) -> None:
        super().__init__(
            f"model {model!r} of provider {provider!r} is not available: {reason}", provider=provider, hint=fix
        )
        self.model = model


class PullError(SoundforgeError):
    """A model `soundforge pull` cannot fetch: not a hub model, an engine with its own download code, a layout the
    engine cannot load as published, a hub that does not answer, or files that do not match the hub's hashes."""

    code = "pull_failed"
    http_status = 502
    exit_code = 3


class AuthenticationError(SoundforgeError):
    """The provider rejected the credentials (or none were configured). The key itself is never included."""

    code = "authentication_failed"
    fallback_allowed = True


# --- the request ----------------------------------------------------------------------------------
class InvalidRequestError(SoundforgeError, ValueError):
    """The request itself is wrong; retrying it anywhere gives the same answer."""

    code = "invalid_request"
    http_status = 422
    exit_code = 2

    def __init__(
        self, message: str, *, field: str | None = None, provider: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, provider=provider, hint=hint)
        self.field = field
        #: (field, message) for each problem, when several fields were checked at once.
        self.details: list[tuple[str, str]] = [(field or "", self.message)]

    def _describe(self) -> dict[str, Any]:
        return {
            **super()._describe(),
            "field": self.field,
            "errors": [{"field": name or None, "message": text} for name, text in self.details],
        }


class UnsupportedFeatureError(InvalidRequestError):
    """The chosen backend cannot honour a field of the request; `supported_by` lists backends that can."""

    code = "unsupported_feature"

    def __init__(
        self, field: str, provider: str, supported_by: Sequence[str] = (), *, detail: str | None = None
    ) -> None:
        msg = f"provider {provider!r} does not support {field!r}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, field=field, provider=provider)
        self.detail = detail
        self.offer(supported_by)

    def offer(self, supported_by: Sequence[str], *, not_set_up: str = "") -> None:
        """Name the providers that can honour the field (the router knows them; a backend raising this does not),
        and what those not set up here need."""
        self.supported_by = list(supported_by)
        others = ", ".join(self.supported_by) if self.supported_by else "none of the known providers"
        self.hint = f"providers that support it: {others}" + (f"; not set up here: {not_set_up}" if not_set_up else "")

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "supported_by": self.supported_by}


class AdapterError(InvalidRequestError):
    """A style adapter that cannot be used: missing, not a safetensors file, not for this model, or keys that match
    none of its modules. Raised before any generation; the shared model is left as it was."""

    code = "invalid_adapter"

    def __init__(self, source: str, reason: str, *, provider: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"adapter {source!r}: {reason}", field="adapters", provider=provider, hint=hint)
        self.source = source

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "source": self.source}


class LicensePolicyError(SoundforgeError):
    """The licence policy forbids the model; raised before any model loads or any request leaves the machine."""

    code = "license_policy"
    http_status = 403
    exit_code = 4

    def __init__(
        self, provider: str, model: str, license_id: str, clause: str, allowed_providers: Sequence[str] = ()
    ) -> None:
        passing = ", ".join(allowed_providers) if allowed_providers else "none of the known providers"
        super().__init__(
            f"licence policy refuses {provider}:{model} ({license_id}): {clause}",
            provider=provider,
            hint=f"providers that pass the policy: {passing}",
        )
        self.model = model
        self.license_id = license_id
        self.clause = clause
        self.allowed_providers = list(allowed_providers)

    def _describe(self) -> dict[str, Any]:
        return {
            **super()._describe(),
            "model": self.model,
            "license": self.license_id,
            "clause": self.clause,
            "allowed_providers": self.allowed_providers,
        }


class BudgetExceededError(SoundforgeError):
    """A call would cost more than the request's `max_cost` or the budget has left, or its price is unknown and the
    limit cannot be checked. Refused before the call, like the licence policy; `auto` skips such providers."""

    code = "budget_exceeded"
    http_status = 402
    exit_code = 4


class ContentRefusedError(SoundforgeError):
    """The provider's moderation refused the prompt or the input audio."""

    code = "content_refused"


# --- the provider at run time -----------------------------------------------------------------------
class ProviderError(SoundforgeError):
    """The provider failed while serving a valid request (5xx, malformed answer, failed job)."""

    code = "provider_error"
    fallback_allowed = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, hint=hint)
        self.status = status
        self.request_id = request_id

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "status": self.status, "request_id": self.request_id}


class RateLimitError(ProviderError):
    """The provider asked us to slow down; `retry_after` is its advice in seconds, when given."""

    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        retry_after: float | None = None,
        status: int | None = 429,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            status=status,
            request_id=request_id,
            hint=f"retry after {retry_after:g} s" if retry_after is not None else None,
        )
        self.retry_after = retry_after


class GenerationTimeoutError(SoundforgeError, TimeoutError):
    """The generation did not finish within its time limit."""

    code = "timeout"
    fallback_allowed = True


class GenerationCancelledError(SoundforgeError):
    """The caller cancelled the generation."""

    code = "cancelled"


class AllProvidersFailedError(SoundforgeError):
    """Every provider tried (the first choice and its fallbacks) failed; `errors` holds each attempt's error."""

    code = "all_providers_failed"

    def __init__(self, errors: Sequence[tuple[str, SoundforgeError]]) -> None:
        lines = "; ".join(f"{spec}: {err}" for spec, err in errors)
        super().__init__(f"all {len(errors)} provider attempts failed: {lines}")
        self.errors = list(errors)


# --- the service around a job (soundforge serve) ----------------------------------------------------
class ServiceError(SoundforgeError):
    """A job failed because of the service around it, not its request: trying it again is the fix.

    Raised by nothing in the library; `soundforge serve` puts these in job records and answers, so that every error a
    client can read has one shape and one code (`to_dict`), whichever layer saw it."""

    code = "service_error"
    http_status = 500


class EngineStoppedError(ServiceError):
    """The engine process or Ray replica running the job stopped (a crash, the OOM killer) before it finished."""

    code = "engine_stopped"


class EngineError(ServiceError):
    """The engine could not run the job at all (it could not start)."""

    code = "engine_error"


class StoreError(ServiceError):
    """The job ended but its record could not be saved; the server keeps it and saves it again."""

    code = "store_error"


class StoreUnavailableError(ServiceError):
    """The job store cannot take a new job now (a full disk, a read-only store, an index locked past its timeout):
    nothing was queued or charged; `/healthz` says why until the store takes writes again."""

    code = "store_unavailable"
    http_status = 503


class ServerStoppingError(ServiceError):
    """The server stopped before the job ended (a restart reports the job failed too)."""

    code = "server_stopping"
    http_status = 503


class InternalError(ServiceError):
    """A fault inside soundforge (a bug): the details are in the server's log, never in the answer."""

    code = "internal_error"


def _rebuild(cls: type[SoundforgeError], args: tuple[Any, ...], state: dict[str, Any]) -> SoundforgeError:
    """Unpickle an error: a bare instance of its class with its attributes restored."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
