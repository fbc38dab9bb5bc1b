"""The cloud-backend template, public for backends in this package and in plug-ins.

Subclass `CloudBackend`, set `name`, `key_env`, `default_base_url`, write `auth_headers`, `map_error` and
`agenerate_raw` (usually a `self.http().request_json(...)` then `poll_job` and `decode_reply`); the shared
`HttpCore` gives timeouts, retries with Retry-After, no re-send of a billed call, capped streamed bodies and
redacted errors. `BLOCK_REMOTE_ENV` is the test suites' kill switch: set to "1", no request leaves loopback.
"""

from __future__ import annotations

from ..secrets import Secret
from ._cloud import CLOUD_SETTINGS, CloudBackend, decode_reply, poll_job
from ._http import BLOCK_REMOTE_ENV, HttpCore, HttpReply, HttpSettings, check_output_url

__all__ = [
    "BLOCK_REMOTE_ENV",
    "CLOUD_SETTINGS",
    "CloudBackend",
    "HttpCore",
    "HttpReply",
    "HttpSettings",
    "Secret",
    "check_output_url",
    "decode_reply",
    "poll_job",
]
