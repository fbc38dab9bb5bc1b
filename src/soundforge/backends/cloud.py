"""The cloud-backend template, public for backends in this package and in plug-ins.

Subclass `CloudBackend`, set `name`, `key_env`, `default_base_url`, write `auth_headers`, `map_error` and
`agenerate_raw` (usually a `self.http().request_json(...)` then `poll_job` and `decode_reply`; a job API records
its job with `job_entry` and waits with `wait_for_job`, so a timeout or a crash never pays twice); the shared
`HttpCore` gives timeouts, retries with Retry-After, no re-send of a billed call, capped streamed bodies and
redacted errors. `BLOCK_REMOTE_ENV` is the test suites' kill switch: set to "1", no request leaves loopback.
"""

from __future__ import annotations

from ..secrets import Secret
from ._cloud import CLOUD_SETTINGS, CloudBackend, JobEntry, decode_reply, poll_job, upload_file
from ._http import BLOCK_REMOTE_ENV, HttpCore, HttpReply, HttpSettings, check_output_url
from ._journal import CloudJobJournal, PendingJob, job_key
from ._journal import default_path as default_journal_path

__all__ = [
    "BLOCK_REMOTE_ENV",
    "CLOUD_SETTINGS",
    "CloudBackend",
    "CloudJobJournal",
    "HttpCore",
    "HttpReply",
    "HttpSettings",
    "JobEntry",
    "PendingJob",
    "Secret",
    "check_output_url",
    "decode_reply",
    "default_journal_path",
    "job_key",
    "poll_job",
    "upload_file",
]
