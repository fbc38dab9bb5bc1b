"""Paid answers kept on disk: a billed one-response answer survives whatever fails after it arrived.

Stability, ElevenLabs, Gemini, Lyria on Vertex and MiniMax answer a generation in one HTTP response (no job id to
collect later, unlike Replicate and fal, see `_journal`). Once that response has arrived it has been paid for, and
soundforge still has work to do with it: parse it, decode the audio, cut it to length. If any of that fails (a decode
error, a full disk, a crash, a cancel), the answer would be gone and the next call would pay again.

So every successful non-idempotent reply of one call is copied, before it is parsed, into a folder beside the job
journal, under a journal row of kind "answer" keyed like a job (provider, model, request record). When the call
delivers its generation, the row and its files are removed. When it does not:

- it failed on its own (cancelled, out of memory, out of disk, a crashed process): the row is released, and the next
  call for the same request takes the answer over instead of sending again (nothing is paid twice);
- the answer itself could not be turned into audio (a soundforge error, e.g. an undecodable body): the row is marked
  failed and kept for the user, out of automatic reuse (it would fail the same way): `soundforge jobs` lists it,
  `--resume ID` tries again (after an upgrade, say), `--forget ID` drops it;
- the provider refused the content: nothing to keep (the answer is the refusal), the row is removed.

A copy that cannot be written (the disk is full) is logged and the call goes on with the answer in hand.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ContentRefusedError, GenerationCancelledError, GenerationTimeoutError, SoundforgeError
from ._journal import CloudJobJournal

log = logging.getLogger(__name__)

KIND = "answer"


@dataclass(frozen=True)
class KeptReply:
    """One reply kept on disk: the route it answered, its status and headers, and its body's file."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    file: Path


@dataclass
class PaidAnswers:
    """One call's kept answers: those it takes over from an earlier call, and those it receives."""

    journal: CloudJobJournal
    key: str
    provider: str
    model: str
    record_of_request: dict[str, Any]
    #: The journal row of this call's answers: an earlier call's, taken over, or the one `keep` writes first.
    entry_id: str | None = None
    #: Every reply of the entry (taken over and received), as written in the journal.
    replies: list[dict[str, Any]] = field(default_factory=list)
    #: The taken-over replies not replayed yet.
    unplayed: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, journal: CloudJobJournal, key: str, provider: str, model: str, record: dict[str, Any]) -> PaidAnswers:
        """This call's spool, with an earlier call's undelivered answer for the same request if there is one."""
        claimed = journal.claim(key, KIND)
        answers = cls(journal, key, provider, model, record)
        if claimed is not None:
            log.info("%s: delivering answer %s, already paid for, instead of sending again", provider, claimed.job_id)
            answers.entry_id = claimed.job_id
            answers.replies = list(claimed.data.get("replies", []))
            answers.unplayed = list(answers.replies)
        return answers

    def take(self, method: str, path: str) -> KeptReply | None:
        """The kept reply to this route, if an earlier call received it (each one is replayed once)."""
        for reply in self.unplayed:
            if reply["method"] == method and reply["path"] == path and Path(reply["file"]).is_file():
                self.unplayed.remove(reply)
                return KeptReply(method, path, int(reply["status"]), dict(reply["headers"]), Path(reply["file"]))
        return None

    def keep(self, method: str, path: str, status: int, headers: dict[str, str], body: Path) -> None:
        """Copy a reply just received to the spool and write it down, before anything reads it."""
        entry_id = self.entry_id or f"answer-{uuid.uuid4().hex}"
        folder = self.journal.answers_folder()
        target = folder / f"{entry_id}-{len(self.replies)}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # A second name for the body when both are on one file system (nothing copied), else a copy. No fsync:
            # the journal promises to survive the process being killed (WAL, synchronous=NORMAL), and so does this;
            # an fsync per answer serialised concurrent calls on the disk (bench/run.py's cloud fan-out row).
            try:
                os.link(body, target)
            except OSError:
                with body.open("rb") as source, target.open("wb") as copy:
                    shutil.copyfileobj(source, copy)
            self.replies.append(
                {"method": method, "path": path, "status": status, "headers": headers, "file": str(target)}
            )
            data = {"kind": KIND, "replies": self.replies}
            if self.entry_id is None:
                self.journal.record(self.key, self.provider, self.model, entry_id, self.record_of_request, data)
                self.entry_id = entry_id
            else:
                self.journal.update(entry_id, data)
        except OSError as exc:  # a full disk must not cost the answer in hand
            target.unlink(missing_ok=True)
            log.warning("%s: could not keep the paid answer on disk (%s); going on without a copy", self.provider, exc)

    def __enter__(self) -> PaidAnswers:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> None:
        """The call ended, delivering or with `error`: `settle` it (a `with` block around the call)."""
        self.settle(error)

    def settle(self, error: BaseException | None) -> None:
        """The call ended: forget its answers if it delivered, else keep them (see the module's rules)."""
        if self.entry_id is None:
            return
        if error is None or isinstance(error, ContentRefusedError):
            self.journal.forget(self.entry_id)
        elif isinstance(error, SoundforgeError) and not _ended_by_caller(error):
            self.journal.fail(self.entry_id, f"{type(error).__name__}: {error}")
            error.hint = (
                f"{error.hint + '; ' if error.hint else ''}the paid answer is kept ({self.entry_id}): "
                f"`soundforge jobs --resume {self.entry_id} -o FILE` tries again, `--forget {self.entry_id}` drops it"
            )
        else:
            self.journal.release(self.entry_id)


def _ended_by_caller(error: SoundforgeError) -> bool:
    """A cancel or a wait that ran out: the answer is fine, the next call for the same request takes it."""
    return isinstance(error, GenerationCancelledError | GenerationTimeoutError)
