"""Generate a whole library from a manifest: validated up front, journaled, resumable, licence-reported.

A manifest is JSONL or CSV: one `GenerationRequest` per row plus `name` (the output file's stem) and an optional
`provider`. Every row is validated and checked against the licence policy before the first generation. A SQLite
journal records each row's state, so a resumed run skips finished rows, retries failed ones only when asked, and
never re-sends a row whose result was already delivered. Rows run on this machine or on a Ray cluster (`ray=`).

    import soundforge
    report = soundforge.batch("cues.jsonl", "out/", provider="synth", concurrency=4)
"""

from .journal import JOURNAL, Journal
from .manifest import BatchRow, load_manifest
from .output import OutputLocation
from .runner import BatchReport, abatch, batch, license_report, plan

__all__ = [
    "JOURNAL",
    "BatchReport",
    "BatchRow",
    "Journal",
    "OutputLocation",
    "abatch",
    "batch",
    "license_report",
    "load_manifest",
    "plan",
]
