"""Generate a whole library from a manifest: validated up front, journaled, resumable, licence-reported.

A manifest is JSONL or CSV: one `GenerationRequest` per row plus `name` (the output file's stem) and an
optional `provider`. Every row is validated and checked against the licence policy before the first
generation. A SQLite journal in the output folder records each row's state, so `resume` skips finished rows,
retries failed ones only when asked, and never re-sends a row whose result was already delivered (a row whose
file exists and verifies is marked done without generating again).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .audio import decoded_sha256, format_for
from .client import Client, build_request
from .errors import InvalidRequestError, LicensePolicyError, SoundforgeError
from .files import sidecar_path
from .licensing import License
from .request import GenerationRequest
from .tags import read_tags

JOURNAL = ".soundforge-batch.sqlite"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


@dataclass(frozen=True)
class BatchRow:
    """One manifest row: where it came from, its output name, provider and request."""

    line: int
    name: str
    provider: str | None
    request: GenerationRequest

    @property
    def fingerprint(self) -> str:
        """Hash of what the row asks for: a changed row is not mistaken for a finished one."""
        text = json.dumps({"p": self.provider, "r": self.request.model_dump(mode="json")}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def output(self, folder: Path) -> Path:
        """The output file of this row."""
        return folder / f"{self.name}.{self.request.output_format or 'wav'}"


@dataclass
class BatchReport:
    """What a run did: row states, and the licences of everything in the output folder."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    licenses: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def _cell(value: str) -> Any:
    text = value.strip()
    if text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def load_manifest(path: str | Path) -> list[BatchRow]:
    """Read and validate a JSONL or CSV manifest; InvalidRequestError lists every bad row and field."""
    source = Path(path)
    if not source.is_file():
        raise InvalidRequestError(f"manifest {source} does not exist", field="manifest")
    raw: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    if source.suffix.lower() == ".csv":
        with source.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                raw.append((number, {k.strip(): _cell(v) for k, v in row.items() if k and v is not None
                                     and v.strip() != ""}))
    else:
        for number, line in enumerate(source.read_text("utf-8").splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"row {number}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(value, dict):
                problems.append(f"row {number}: must be a JSON object")
                continue
            raw.append((number, value))
    rows: list[BatchRow] = []
    names: dict[str, int] = {}
    for number, data in raw:
        name = str(data.pop("name", "") or "")
        provider = data.pop("provider", None)
        if not _NAME.match(name):
            problems.append(f"row {number}, field 'name': {name!r} is not a safe file name (letters, digits, . _ -)")
        elif name in names:
            problems.append(f"row {number}, field 'name': {name!r} is already used by row {names[name]}")
        else:
            names[name] = number
        try:
            request = GenerationRequest(**data)
        except ValidationError as exc:
            problems.extend(f"row {number}, field {'.'.join(map(str, e['loc'])) or '-'!r}: "
                            f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors())
            continue
        if request.num_outputs != 1:
            problems.append(f"row {number}, field 'num_outputs': one row makes one file; repeat the row with "
                            "another name and seed for variations")
            continue
        rows.append(BatchRow(number, name, str(provider) if provider else None, request))
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise InvalidRequestError(f"manifest {source.name} has {len(problems)} problem(s): {shown}", field="manifest")
    if not rows:
        raise InvalidRequestError(f"manifest {source.name} has no rows", field="manifest")
    return rows


class Journal:
    """The SQLite record of a run, one row per manifest row (standard library `sqlite3`)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (name TEXT PRIMARY KEY, fingerprint TEXT, state TEXT, "
                        "output TEXT, error TEXT, license TEXT, attempts INTEGER DEFAULT 0, updated REAL)")

    def state(self, name: str) -> tuple[str, str] | None:
        """(state, fingerprint) of a row, or None when the journal has not seen it."""
        found = self.db.execute("SELECT state, fingerprint FROM rows WHERE name = ?", (name,)).fetchone()
        return (found[0], found[1]) if found else None

    def mark(self, name: str, fingerprint: str, state: str, *, output: str | None = None, error: str | None = None,
             license: str | None = None) -> None:
        """Record a row's new state (committed at once)."""
        self.db.execute(
            "INSERT INTO rows (name, fingerprint, state, output, error, license, attempts, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "state = excluded.state, output = COALESCE(excluded.output, rows.output), error = excluded.error, "
            "license = COALESCE(excluded.license, rows.license), "
            "attempts = rows.attempts + (excluded.state = 'running'), updated = excluded.updated",
            (name, fingerprint, state, output, error, license, 1 if state == "running" else 0, time.time()))

    def close(self) -> None:
        """Close the database."""
        self.db.close()


def _delivered(row: BatchRow, folder: Path) -> bool:
    """A row whose file is complete and verifies was delivered even if the journal missed it (crash)."""
    path = row.output(folder)
    if not path.is_file():
        return False
    try:
        tags = read_tags(path)
        return bool(tags) and tags.get("AUDIO_SHA256") == decoded_sha256(path.read_bytes())
    except (OSError, ValueError, SoundforgeError):
        return False


def plan(rows: list[BatchRow], client: Client, provider: str | None) -> dict[str, License]:
    """Check every row against routing and the licence policy before any work: row name -> its licence.

    Raises LicensePolicyError (or InvalidRequestError for other routing problems) naming the rows that cannot run.
    """
    licenses: dict[str, License] = {}
    refused: list[str] = []
    first: SoundforgeError | None = None
    for row in rows:
        try:
            candidates, _ = client.router.plan(row.request, row.provider or provider)
            licenses[row.name] = candidates[0].license
        except SoundforgeError as exc:
            refused.append(f"row {row.line} ({row.name}): {exc}")
            first = first or exc
    if refused:
        message = f"{len(refused)} row(s) cannot run: " + "; ".join(refused[:10])
        if isinstance(first, LicensePolicyError):
            raise LicensePolicyError(first.provider or "?", first.model, first.license_id, message,
                                     first.allowed_providers)
        raise InvalidRequestError(message, field="manifest")
    return licenses


async def abatch(manifest: str | Path, out_dir: str | Path, *, client: Client | None = None,
                 provider: str | None = None, concurrency: int = 4, resume: bool = False,
                 retry_failed: bool = False, dry_run: bool = False,
                 on_row: Callable[[str, str], None] | None = None) -> BatchReport:
    """Run a manifest (async). See `batch` for the arguments."""
    started = time.perf_counter()
    rows = load_manifest(manifest)
    own_client = client is None
    client = client or Client()
    folder = Path(out_dir)
    report = BatchReport()
    try:
        licenses = plan(rows, client, provider)
        if dry_run:
            report.licenses = _license_report(licenses)
            return report
        folder.mkdir(parents=True, exist_ok=True)
        journal_path = folder / JOURNAL
        if journal_path.exists() and not resume:
            raise InvalidRequestError(f"{folder} already holds a run; pass resume=True (CLI: --resume) to continue it",
                                      field="resume")
        journal = Journal(journal_path)
        bound = asyncio.Semaphore(max(1, concurrency))

        async def run(row: BatchRow) -> None:
            known = journal.state(row.name)
            if known and known[1] == row.fingerprint and known[0] == "done":
                report.skipped.append(row.name)
                return
            if known and known[1] == row.fingerprint and known[0] == "failed" and not retry_failed:
                report.failed[row.name] = "failed in an earlier run (use retry_failed)"
                return
            if _delivered(row, folder):
                journal.mark(row.name, row.fingerprint, "done", output=row.output(folder).name)
                report.skipped.append(row.name)
                return
            if row.output(folder).exists() or sidecar_path(row.output(folder)).exists():
                journal.mark(row.name, row.fingerprint, "failed", error="output exists and does not verify")
                report.failed[row.name] = f"{row.output(folder).name} exists and does not verify; remove it"
                return
            async with bound:
                journal.mark(row.name, row.fingerprint, "running")
                try:
                    generation = await client.agenerate(build_request(row.request, {}),
                                                        provider=row.provider or provider)
                    path = row.output(folder)
                    await asyncio.to_thread(generation.tracks[0].save, path, format_for(path).name,
                                            row.request.loudness, True)  # overwrite: a stale part was checked above
                except SoundforgeError as exc:
                    journal.mark(row.name, row.fingerprint, "failed", error=str(exc))
                    report.failed[row.name] = str(exc)
                    if on_row:
                        on_row(row.name, "failed")
                    return
                journal.mark(row.name, row.fingerprint, "done", output=path.name, license=generation.license.id)
                report.done.append(row.name)
                if on_row:
                    on_row(row.name, "done")

        try:
            await asyncio.gather(*(run(row) for row in rows))
        finally:
            journal.close()
        delivered = set(report.done) | set(report.skipped)  # the report covers files that exist, not failures
        report.licenses = _license_report({n: lic for n, lic in licenses.items() if n in delivered})
        _write_license_files(folder, report.licenses)
    finally:
        if own_client:
            client.close()
    report.seconds = time.perf_counter() - started
    return report


def batch(manifest: str | Path, out_dir: str | Path, **kwargs: Any) -> BatchReport:
    """Generate every row of a manifest into `out_dir` with tags, sidecars, a journal and a licence report.

    Args:
        manifest: JSONL or CSV file, one request per row plus `name` and optional `provider`.
        out_dir: output folder (the journal lives there too).
        client: a Client to use (default: one built from the usual config).
        provider: default provider spec for rows that name none.
        concurrency: rows in flight at once (local models still batch compatible rows).
        resume: continue a run whose journal is in `out_dir`; finished rows are skipped.
        retry_failed: with resume, try failed rows again.
        dry_run: validate, check the policy and return the licence report without generating.
    """
    return asyncio.run(abatch(manifest, out_dir, **kwargs))


def _license_report(licenses: dict[str, License]) -> dict[str, dict[str, Any]]:
    """Licence id -> terms and the rows under it (one line per licence in ATTRIBUTIONS.md)."""
    report: dict[str, dict[str, Any]] = {}
    for name, lic in licenses.items():
        entry = report.setdefault(lic.id, {"name": lic.name, "url": lic.url, "commercial_use": lic.commercial_use.value,
                                           "condition": lic.condition, "attribution": lic.attribution
                                           if lic.attribution_required else None, "rows": []})
        entry["rows"].append(name)
    return report


def _write_license_files(folder: Path, licenses: dict[str, dict[str, Any]]) -> None:
    (folder / "licenses.json").write_text(json.dumps(licenses, indent=2), "utf-8")
    lines = ["# Attributions", "", "Generated with soundforge. Publish these notices with the audio they cover.", ""]
    for lid, entry in licenses.items():
        lines.append(f"## {entry['name']} ({lid})")
        lines.append(f"- licence: {entry['url']}; commercial use: {entry['commercial_use'].replace('_', ' ')}"
                     + (f" ({entry['condition']})" if entry["condition"] else ""))
        lines.append(f"- attribution: {entry['attribution'] or 'none required'}")
        lines.append(f"- files: {', '.join(sorted(entry['rows']))}")
        lines.append("")
    (folder / "ATTRIBUTIONS.md").write_text("\n".join(lines), "utf-8")
