"""A streamed answer's body kept on disk as it arrives (`HttpCore.stream`), to be kept once whole (`_answers`), and
a kept one read back as if it were arriving."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .base import RunContext

log = logging.getLogger(__name__)


class StreamCopy:
    """A streamed body written to a temp file as it arrives, to be kept once whole. A write that fails (a full
    disk) drops the copy with a warning; the stream goes on, as `PaidAnswers.keep` does for a copy it cannot make."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self._handle: Any = handle

    @classmethod
    def open(cls, folder: str | None) -> StreamCopy | None:
        try:
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by `close` or `discard`
                prefix="soundforge-", suffix=".part", dir=folder, delete=False
            )
        except OSError as exc:
            log.warning("could not open a file to keep the streamed answer in (%s); going on without a copy", exc)
            return None
        return cls(Path(handle.name), handle)

    def write(self, data: bytes) -> None:
        if self._handle is None:
            return
        try:
            self._handle.write(data)
        except OSError as exc:
            log.warning("could not keep the streamed answer on disk (%s); going on without a copy", exc)
            self.discard()

    def close(self) -> Path | None:
        """The whole body's file, or None when the copy was dropped."""
        if self._handle is None:
            return None
        try:
            self._handle.close()
        except OSError as exc:
            log.warning("could not keep the streamed answer on disk (%s); going on without a copy", exc)
            self.discard()
            return None
        self._handle = None
        return self.path

    def discard(self) -> None:
        """Remove the temp file (a kept answer has its own name for it by now)."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        self.path.unlink(missing_ok=True)


async def file_chunks(path: Path, context: RunContext, size: int = 1 << 16) -> AsyncIterator[bytes]:
    """A kept streamed answer read back in pieces, as if it were arriving."""
    with path.open("rb") as handle:
        while data := handle.read(size):
            context.cancel.raise_if_cancelled()
            yield data
