"""What soundforge writes and reads back: saved files' records and their verification (`inspect`)."""

from __future__ import annotations

from .inspect import FileRecord, Verification, read_record, record_of, verify

__all__ = ["FileRecord", "Verification", "read_record", "record_of", "verify"]
