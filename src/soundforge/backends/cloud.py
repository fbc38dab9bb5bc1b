"""The cloud-backend template, public for backends in this package and in plug-ins.

Subclass `CloudBackend`, set `name`, `key_env`, `default_base_url`, write `auth_headers`, `map_error` and
`agenerate_raw` (usually a `self.http().request_json(...)` then `poll_job` and `decode_reply`; a job API records
its job with `job_entry` and waits with `wait_for_job`, so a timeout or a crash never pays twice; every other
billed answer is kept on disk until delivered without the adapter doing anything, `keeps_answers`); the shared
`HttpCore` gives timeouts, retries with Retry-After, no re-send of a billed call, capped streamed bodies and
redacted errors. `cloud_track` makes one track of exactly the duration asked for; `model_inputs` maps request
fields onto an app's input names; `backoff_delay` is the retry schedule for a vendor's own busy codes;
`Mp3Stream` decodes a streamed MP3 body as it arrives. `BLOCK_REMOTE_ENV` is the test suites' kill switch: set to
"1", no request leaves loopback.
"""

from __future__ import annotations

from ..secrets import Secret
from ._cloud import (
    CLOUD_SETTINGS,
    UPLOAD_FORMATS,
    CloudBackend,
    JobEntry,
    cloud_track,
    decode_reply,
    model_inputs,
    poll_job,
    upload_file,
)
from ._http import BLOCK_REMOTE_ENV, HttpCore, HttpReply, HttpSettings, backoff_delay, check_output_url
from ._journal import CloudJobJournal, PendingJob, job_key
from ._journal import default_path as default_journal_path
from ._mp3stream import Mp3Stream

__all__ = [
    "BLOCK_REMOTE_ENV",
    "CLOUD_SETTINGS",
    "UPLOAD_FORMATS",
    "CloudBackend",
    "CloudJobJournal",
    "HttpCore",
    "HttpReply",
    "HttpSettings",
    "JobEntry",
    "Mp3Stream",
    "PendingJob",
    "Secret",
    "backoff_delay",
    "check_output_url",
    "cloud_track",
    "decode_reply",
    "default_journal_path",
    "job_key",
    "model_inputs",
    "poll_job",
    "upload_file",
]
