"""Running a manifest: plan and policy check for every row, the journal, then the rows on this machine or on Ray.

The driver (this module) alone decides which rows run and writes the journal; an executor only turns one row into
one delivered file. `LocalExecutor` runs rows on the library's async client in this process; `RayExecutor`
(`soundforge.bulk.ray_runner`) runs the same rows on a Ray cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client import Client
from ..errors import BudgetExceededError, InvalidRequestError, SoundforgeError
from ..licences.licensing import License
from ..ops.pricing import Cost, total_amount
from ..output.files import SIDECAR_SUFFIX
from ..run import JobLimits
from .executors import Executor, LocalExecutor, Target
from .journal import JOURNAL, Journal
from .manifest import BatchRow, load_manifest
from .output import OutputLocation, delivered, owned, stale


@dataclass
class BatchReport:
    """What a run did: row states, and the licences of everything in the output folder."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    licenses: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Row name -> "provider:model" it was routed to (every row, in manifest order; the dry run's plan).
    plan: dict[str, str] = field(default_factory=dict)
    #: Provider -> the estimated cost of its rows before anything ran (None: a row's price is unknown).
    estimates: dict[str, float | None] = field(default_factory=dict)
    #: What the rows generated in this run cost (rows with an unknown price count as nothing; see `unpriced`).
    spent: float = 0.0
    #: Rows generated in this run whose price is unknown.
    unpriced: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def estimated_total(self) -> float | None:
        """The estimate of every row together, or None when any row's price is unknown."""
        return total_amount(list(self.estimates.values()))


#: A row makes one file.
ROW_LIMITS = JobLimits(one_output=True)


def plan(
    rows: list[BatchRow], client: Client, provider: str | None, estimates: dict[str, Cost] | None = None
) -> tuple[dict[str, License], dict[str, Target]]:
    """Plan every row (`soundforge.run.plan.prepare`, as the library and serve do) before any work.

    Returns row name -> licence and row name -> target; fills `estimates` (row name -> estimated cost) when given.
    Raises the first refused row's error (LicensePolicyError, InvalidRequestError, ...) naming every row that
    cannot run.
    """
    licenses: dict[str, License] = {}
    targets: dict[str, Target] = {}
    refused: list[str] = []
    first: SoundforgeError | None = None
    for row in rows:
        try:
            # The row's whole plan, as the library and serve make it: the stems' separator and licence, the
            # watermark's weights, a loop's take and every take quality="retry" may pay for, before any row runs.
            planned = client.plan(row.request, provider=row.provider or provider, door="row", limits=ROW_LIMITS)
        except SoundforgeError as exc:
            refused.append(f"row {row.line} ({row.name}): {exc}")
            first = first or exc
            continue
        chosen = planned.chosen
        licenses[row.name] = planned.license or chosen.license
        targets[row.name] = Target(chosen.backend.name, chosen.model, bool(chosen.backend.local))
        if estimates is not None:
            estimates[row.name] = planned.estimate
    if refused:
        assert first is not None
        # Every refused row named, under the first refusal's own error (its code, status and exit code), as the
        # library and serve would raise it for that row.
        raise first.with_message(f"{len(refused)} row(s) cannot run: " + "; ".join(refused[:10]))
    return licenses, targets


def _journal_path(out: OutputLocation, journal: str | os.PathLike[str] | None) -> Path:
    if journal is not None:
        return Path(journal)
    if out.folder is None:
        raise InvalidRequestError(
            f"the output {out.url} is not a local folder; give the journal a local path "
            "(journal=..., CLI: --journal FILE)",
            field="journal",
        )
    return out.folder / JOURNAL


async def abatch(
    manifest: str | Path,
    out_dir: str | os.PathLike[str],
    *,
    client: Client | None = None,
    provider: str | None = None,
    concurrency: int = 4,
    resume: bool = False,
    retry_failed: bool = False,
    dry_run: bool = False,
    journal: str | os.PathLike[str] | None = None,
    ray: str | None = None,
    ray_workers: int | None = None,
    on_row: Callable[[str, str], None] | None = None,
    budget: float | None = None,
) -> BatchReport:
    """Run a manifest (async). See `batch` for the arguments."""
    started = time.perf_counter()
    rows = load_manifest(manifest)
    if concurrency < 1:
        raise InvalidRequestError("concurrency must be at least 1", field="concurrency")
    own_client = client is None
    client = client or Client()
    out = OutputLocation(out_dir)
    report = BatchReport()

    def tell(name: str, state: str) -> None:
        if on_row:
            on_row(name, state)

    try:
        estimates: dict[str, Cost] = {}
        licenses, targets = plan(rows, client, provider, estimates)
        report.plan = {row.name: f"{targets[row.name].provider}:{targets[row.name].model}" for row in rows}
        for row in rows:
            name = targets[row.name].provider
            report.estimates[name] = total_amount([report.estimates.get(name, 0.0), estimates[row.name].amount])
        _check_batch_budget(budget, report)
        if dry_run:
            report.licenses = license_report(licenses)
            return report
        journal_path = _journal_path(out, journal)
        if journal_path.exists() and not resume:
            raise InvalidRequestError(
                f"{journal_path.parent} already holds a run; pass resume=True (CLI: --resume) to continue it",
                field="resume",
            )
        out.makedirs()
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        book = Journal(journal_path)
        executor: Executor | None = None
        try:
            todo = _pending(rows, book, out, retry_failed, report, tell)
            if todo and ray is not None:
                from .ray_runner import RayExecutor

                executor = RayExecutor(
                    client.config,
                    out,
                    address=ray,
                    workers=ray_workers,
                    concurrency=concurrency,
                    targets=[targets[r.name] for r in todo],
                )
            elif todo:
                executor = LocalExecutor(client, out)

            async def run(row: BatchRow) -> None:
                assert executor is not None
                book.mark(row.name, row.fingerprint, "running")
                outcome = await executor.run(row, row.provider or provider, targets[row.name])
                if outcome.error is not None or outcome.file is None:
                    error = outcome.error or "the worker returned no file"
                    book.mark(row.name, row.fingerprint, "failed", error=error)
                    report.failed[row.name] = error
                    tell(row.name, "failed")
                    return
                license_id = outcome.license or licenses[row.name].id
                book.mark(row.name, row.fingerprint, "done", output=outcome.file, license=license_id)
                if not outcome.reused:
                    if outcome.cost is None and not targets[row.name].local:
                        report.unpriced.append(row.name)
                    report.spent += outcome.cost or 0.0
                (report.skipped if outcome.reused else report.done).append(row.name)
                tell(row.name, "skipped" if outcome.reused else "done")

            # `concurrency` workers taking rows in manifest order: the first row starts at once, however long the
            # manifest (a task per row, all waiting on one semaphore, took a second to set up for 10 000 rows).
            queue = iter(todo)

            async def worker() -> None:
                for row in queue:
                    await run(row)

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(todo)))))
        finally:
            if executor is not None:
                executor.close()
            book.close()
        out.sweep_temps()  # halves of files whose writer died (a killed worker); their rows were redone
        finished = set(report.done) | set(report.skipped)  # the report covers files that exist, not failures
        report.licenses = license_report({n: lic for n, lic in licenses.items() if n in finished})
        write_license_files(out, report.licenses)
    finally:
        if own_client:
            client.close()
    report.seconds = time.perf_counter() - started
    return report


def _check_batch_budget(budget: float | None, report: BatchReport) -> None:
    """A per-batch budget (USD), checked against the estimate of every row before any row runs."""
    if budget is None:
        return
    estimated = report.estimated_total
    if estimated is None:
        unknown = sorted(name for name, amount in report.estimates.items() if amount is None)
        raise BudgetExceededError(
            f"the batch budget of {budget:g} USD cannot be checked: {', '.join(unknown)} has no known price",
            hint="route those rows to priced providers, or run without a budget",
        )
    if estimated > budget:
        per = ", ".join(f"{name} {amount:.4f}" for name, amount in report.estimates.items() if amount)
        raise BudgetExceededError(
            f"the batch would cost about {estimated:.4f} USD ({per}), over its {budget:g} USD budget",
            hint="raise the budget, drop rows, or route them to cheaper providers",
        )


def _pending(
    rows: list[BatchRow],
    book: Journal,
    out: OutputLocation,
    retry_failed: bool,
    report: BatchReport,
    tell: Callable[[str, str], None],
) -> list[BatchRow]:
    """The rows still to generate; finished, failed (unless retried) and foreign files are reported instead.

    A row counts as finished only while its file verifies and was made for the row as it is now (`delivered`):
    a row whose prompt, seed, duration, ... changed since, or whose file was truncated or edited, runs again and
    its file is replaced. A file the journal and its sidecar do not tie to the row is someone else's: reported,
    never overwritten.
    """
    known = book.states()
    # One listing of the folder instead of a few existence checks per row (10 000 rows: 30 000 `exists` calls),
    # compared ignoring case as a case-insensitive file system would; a row none of whose files or sidecars is
    # listed is neither delivered nor stale.
    present = {name.casefold() for name in out.glob("*")}
    todo: list[BatchRow] = []
    for row in rows:
        state, fingerprint = known.get(row.name, (None, None))
        same = fingerprint == row.fingerprint
        listed = any(
            name.casefold() in present or (name + SIDECAR_SUFFIX).casefold() in present for name in row.file_names
        )
        if same and state == "failed" and not retry_failed:
            report.failed[row.name] = "failed in an earlier run (use retry_failed / --retry-failed)"
            tell(row.name, "failed")
        elif not listed:
            todo.append(row)
        elif delivered(row, out):  # done, or the journal missed it (a crash between the file and the commit)
            if not (same and state == "done"):
                book.mark(row.name, row.fingerprint, "done", output=row.file_name)
            report.skipped.append(row.name)
            tell(row.name, "skipped")
        elif stale(row, out) and state is None and not owned(row, out):
            # Someone else's file (a valid one from `soundforge generate` too): said as such, never overwritten.
            book.mark(row.name, row.fingerprint, "failed", error="output exists and belongs to no row of this run")
            report.failed[row.name] = (
                f"{row.file_name} exists and belongs to no row of this run (neither the journal nor its sidecar ties "
                f"it to row {row.name!r}); it is left as it is: remove it, or write to another folder"
            )
            tell(row.name, "failed")
        else:
            todo.append(row)
    return todo


def batch(manifest: str | Path, out_dir: str | os.PathLike[str], **kwargs: Any) -> BatchReport:
    """Generate every row of a manifest into `out_dir` with tags, sidecars, a journal and a licence report.

    Args:
        manifest: JSONL or CSV file, one request per row plus `name` and optional `provider`.
        out_dir: output folder, or an fsspec URL such as `s3://bucket/cues` (needs the journal elsewhere).
        client: a Client to use (default: one built from the usual config).
        provider: default provider spec for rows that name none.
        concurrency: rows in flight at once (local models still batch compatible rows).
        resume: continue a run whose journal exists; finished rows are skipped.
        retry_failed: with resume, try failed rows again.
        dry_run: validate, check the policy and return the licence report without generating.
        journal: where the SQLite journal lives (default: `OUT/.soundforge-batch.sqlite`).
        ray: run rows on Ray: "local" starts a cluster on this machine, "auto" or "ray://host:10001" joins one.
        ray_workers: actors per local model on a cluster without GPUs (default 2; with GPUs, one per GPU).
        on_row: called with (row name, "done" | "failed" | "skipped") as rows finish.
        budget: the most the run may cost, in USD: the estimate of every row is checked against it before any row
            runs (`BudgetExceededError`; a row with an unknown price makes it uncheckable). The report has the
            estimate per provider (`estimates`) and what the run spent (`spent`).
    """
    return asyncio.run(abatch(manifest, out_dir, **kwargs))


def license_report(licenses: dict[str, License]) -> dict[str, dict[str, Any]]:
    """Licence id -> terms and the rows under it (one line per licence in ATTRIBUTIONS.md)."""
    report: dict[str, dict[str, Any]] = {}
    for name, lic in licenses.items():
        entry = report.setdefault(
            lic.id,
            {
                "name": lic.name,
                "url": lic.url,
                "commercial_use": lic.commercial_use.value,
                "condition": lic.condition,
                "attribution": lic.attribution if lic.attribution_required else None,
                "rows": [],
            },
        )
        entry["rows"].append(name)
    return report


def write_license_files(out: OutputLocation, licenses: dict[str, dict[str, Any]]) -> None:
    """`licenses.json` and `ATTRIBUTIONS.md` in the output location."""
    out.write("licenses.json", json.dumps(licenses, indent=2).encode("utf-8"))
    lines = ["# Attributions", "", "Generated with soundforge. Publish these notices with the audio they cover.", ""]
    for lid, entry in licenses.items():
        lines.append(f"## {entry['name']} ({lid})")
        lines.append(
            f"- licence: {entry['url']}; commercial use: {entry['commercial_use'].replace('_', ' ')}"
            + (f" ({entry['condition']})" if entry["condition"] else "")
        )
        lines.append(f"- attribution: {entry['attribution'] or 'none required'}")
        lines.append(f"- files: {', '.join(sorted(entry['rows']))}")
        lines.append("")
    out.write("ATTRIBUTIONS.md", "\n".join(lines).encode("utf-8"))
