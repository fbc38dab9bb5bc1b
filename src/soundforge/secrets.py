"""Secrets: API keys and tokens that print as `***`, and the one redaction every error message passes through.

A provider may echo a key back (a 401 body quoting the `Authorization` header, a 400 that lists the request's
headers). Whatever carries that text afterwards (the exception, `to_dict()`, CLI stderr, the batch journal, serve's
job records and HTTP bodies) gets it from `SoundforgeError`, which redacts with `redact` here. Two nets:

- every secret soundforge was given (a `Secret`, a configured `api_key`/`token`, a vendor key variable) is
  registered when it is read and replaced wherever it appears;
- values of credential headers and fields (`Authorization: Bearer …`, `xi-api-key`, `x-goog-api-key`, `Key …`,
  `api_key=…`) are replaced whatever they are, so a key soundforge never saw (a proxy's, a colleague's) is
  hidden too.
"""

from __future__ import annotations

import re
import threading

REDACTED = "***"

#: Shorter values are not registered: replacing every "abc" in a message would hide more than it protects.
MIN_SECRET_CHARS = 8

_lock = threading.Lock()
_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None

# `Authorization: Bearer x`, `"xi-api-key": "x"`, `api_key=x`, `'token': 'x'` ... : the name, its separator and
# optional quotes are kept, the value goes.
_FIELD = re.compile(
    r"""(?P<name>\b(?:authorization|proxy-authorization|x[-_]?goog[-_]?api[-_]?key|xi[-_]?api[-_]?key|x[-_]?api[-_]?key|"""
    r"""api[-_]?key|api[-_]?token|access[-_]?token|auth[-_]?token|client[-_]?secret|secret|password|token)"""
    r"""["']?\s*[:=]\s*["']?)(?P<scheme>(?:bearer|basic|key|token)\s+)?(?P<value>[^\s"',;&}\]]+)""",
    re.IGNORECASE,
)
# A bare `Bearer x` / `Key x` / `Token x` credential outside a field.
_SCHEME = re.compile(r"\b(?P<scheme>bearer|basic)\s+(?P<value>[A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
# `?key=...` / `&api_key=...` in a URL.
_QUERY = re.compile(r"(?P<name>[?&](?:key|api_key|apikey|token|access_token)=)(?P<value>[^&\s\"']+)", re.IGNORECASE)


def register(value: str | None) -> None:
    """Remember a secret value so that `redact` hides it wherever it appears."""
    global _known_pattern
    if not value or len(value) < MIN_SECRET_CHARS:
        return
    with _lock:
        if value in _known:
            return
        _known.add(value)
        # Longest first, so a key that contains another registered key is replaced whole.
        _known_pattern = re.compile("|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True)))


def redact(text: str) -> str:
    """`text` with every registered secret and every credential field's value replaced by `***`."""
    if not text:
        return text
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _FIELD.sub(lambda m: f"{m['name']}{m['scheme'] or ''}{REDACTED}", text)
    text = _SCHEME.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    return _QUERY.sub(lambda m: f"{m['name']}{REDACTED}", text)


def is_secret_setting(name: str) -> bool:
    """Whether a config key holds a secret (`api_key`, `token`, `access_token`, `client_secret`, `password`)."""
    lowered = name.lower()
    return lowered.endswith(("api_key", "token", "secret", "password")) and not lowered.endswith("_env")


class Secret:
    """An API key or token that prints as `***` and is redacted from every error message."""

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def get(self) -> str:
        """The key itself, for the one header that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__
