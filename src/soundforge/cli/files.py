"""`soundforge providers`, `info` and `verify`: what can run here, and what a saved file says about itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import (
    SoundforgeError,
)
from .app import (
    EXIT_FAILURE,
    EXIT_MODIFIED,
    EXIT_NO_WATERMARK,
    EXIT_POLICY,
    _client,
    _fail,
    cli,
)


@cli.command()
@click.option("--commercial", is_flag=True, help="Judge with a policy that requires commercial use.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-v", "--verbose", is_flag=True, help="Print every reason and fix in full.")
@click.pass_context
def providers(ctx: click.Context, commercial: bool, as_json: bool, verbose: bool) -> None:
    """List every provider: available or why not, models, licence, commercial use."""
    try:
        rows = _client(ctx, **({"require_commercial_use": True} if commercial else {})).providers()
    except SoundforgeError as exc:
        _fail(exc, ctx.obj["debug"])
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    _print_provider_table(rows, commercial=commercial, verbose=verbose)


def _print_provider_table(rows: list[Any], *, commercial: bool, verbose: bool) -> None:
    """One line per provider (status, default model, licence, verdict); the reasons after, one line each, cut to
    the terminal's width unless `verbose`."""
    import shutil

    width = shutil.get_terminal_size((100, 24)).columns
    header = ["provider", "status", "licence", "commercial use", *(["policy"] if commercial else []), "default model"]
    lines = []
    for r in rows:
        lic = r.license
        lines.append(
            [
                r.name,
                "available" if r.available else "unavailable",
                lic.id if lic else "?",
                lic.commercial_use.value.replace("_", " ") if lic else "?",
                *([("allowed" if r.policy_allows else "refused")] if commercial else []),
                r.default_model,
            ]
        )
    sizes = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    if sum(sizes) + 2 * (len(sizes) - 1) > width:  # narrow terminal: the model column goes (it is in --json)
        header, lines, sizes = header[:-1], [line[:-1] for line in lines], sizes[:-1]
    click.echo("  ".join(h.ljust(n) for h, n in zip(header, sizes, strict=True)).rstrip())
    for line in lines:
        click.echo("  ".join(str(c).ljust(n) for c, n in zip(line, sizes, strict=True)).rstrip())
    notes = []
    for r in rows:
        if not r.available:
            notes.append(f"{r.name}: {r.reason}" + (f" ({r.fix})" if r.fix and verbose else ""))
        if commercial and not r.policy_allows:
            notes.append(f"{r.name}: refused: {r.policy_clause}")
    if notes:
        click.echo("")
        for note in notes:
            click.echo(note if verbose or len(note) <= width else note[: width - 1] + "…")
        if not verbose:
            click.echo("(`soundforge providers -v` shows every reason and fix in full)")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the tags (and sidecar) as JSON.")
@click.pass_context
def info(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Show the licence and provenance embedded in FILE (or in its JSON sidecar)."""
    try:
        from ..output.inspect import read_record

        record = read_record(file)
        fields, document = record.fields, record.sidecar
    except (OSError, ValueError, SoundforgeError) as exc:
        _fail(exc, ctx.obj["debug"])
    if not fields:
        click.echo(f"{file}: no soundforge licence or provenance found", err=True)
        sys.exit(EXIT_FAILURE)
    if as_json:
        click.echo(json.dumps({"tags": fields, "sidecar": document}, indent=2, ensure_ascii=False))
        return
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        click.echo(f"{key.lower():<{width}}  {value}")
    if document:
        click.echo(f"{'sidecar':<{width}}  {file.name}.json (full provenance: parameters, versions, attempts)")
    from ..output.inspect import c2pa_summary

    c2pa_state = c2pa_summary(file)
    if c2pa_state:
        click.echo(f"{'c2pa':<{width}}  {c2pa_state}")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--watermark",
    is_flag=True,
    help="Also look for AudioSeal's watermark in the samples (needs soundforge[watermark] and its detector's "
    "weights); works on files whose tags are gone.",
)
@click.pass_context
def verify(ctx: click.Context, file: Path, watermark: bool) -> None:
    """Recompute FILE's audio hash and say whether the audio changed since soundforge wrote it."""
    from ..output.inspect import verify as verify_file

    try:
        result = verify_file(file, watermark=watermark)
    except (OSError, ValueError, SoundforgeError) as exc:
        _fail(exc, ctx.obj["debug"])
    fields = result.record.fields
    if result.watermark is not None:
        reading, recorded = result.watermark, fields.get("AUDIOSEAL_PAYLOAD")
        if not reading.detected:
            click.echo(f"{file}: watermark: none detected (AudioSeal, {reading.probability:.0%} of frames)")
        else:
            match = (
                ""
                if recorded is None
                else (", matches the record" if reading.payload == recorded else f", NOT the recorded {recorded}")
            )
            click.echo(
                f"{file}: watermark: AudioSeal detected ({reading.probability:.0%} of frames), payload "
                f"{reading.payload}{match}"
            )
    marked = result.watermark_matches is not False
    if result.status == "unverifiable":
        if watermark:  # tags stripped, or never soundforge's: the watermark is all there is
            sys.exit(0 if marked else EXIT_NO_WATERMARK)
        click.echo(f"{file}: no soundforge audio hash found; cannot verify", err=True)
        sys.exit(EXIT_FAILURE)
    if result.c2pa and "INVALID" in result.c2pa:
        click.echo(f"{file}: MODIFIED, C2PA {result.c2pa}", err=True)
        sys.exit(EXIT_MODIFIED)
    if result.status == "ok":
        # What is proven: the samples match the hash the record holds. Who made them is proven only by a valid
        # signature; an unsigned record (tags, a sidecar) is a claim anyone could have written.
        proof = (
            f"signed by its C2PA manifest ({result.c2pa})"
            if result.c2pa
            else "the record says so; it is not signed, so who made it is not proven (sign with C2PA for that)"
        )
        click.echo(
            f"{file}: OK, audio unchanged since it was written with its record: generated by "
            f"{fields.get('PROVIDER')}:{fields.get('MODEL')} (licence {fields.get('LICENSE')}), {proof}"
        )
        if fields.get("ADAPTERS"):
            click.echo(f"{file}: with adapters: {fields['ADAPTERS']}")
        if not marked:
            sys.exit(EXIT_NO_WATERMARK)
        return
    click.echo(f"{file}: MODIFIED, the audio no longer matches its recorded hash", err=True)
    sys.exit(EXIT_MODIFIED)


@cli.command()
@click.argument("spec", required=False)
@click.option("--dry-run", is_flag=True, help="Show the licence, the policy's verdict and the files; download nothing.")
@click.option("--commercial", is_flag=True, help="Refuse models whose outputs may not be used commercially.")
@click.pass_context
def pull(ctx: click.Context, spec: str | None, dry_run: bool, commercial: bool) -> None:
    """Download a local model's weights (SPEC: musicgen, ace-step:MODEL, …; default: the configured provider's),
    after its licence passes the policy; then check them against the hub's hashes."""
    from ..backends.pull import PullPlan

    def show(plan: PullPlan) -> None:
        click.echo(f"{plan.provider}:{plan.model}" + (f" @ {plan.commit[:12]}" if plan.commit else ""))
        click.echo(f"  licence: {plan.license.summary()}")
        if not plan.allowed:
            return
        for file in plan.files:
            state = "cached" if file.cached else _size(file.size)
            click.echo(f"  {file.name}  {state}")
        click.echo(f"  {_size(plan.download_bytes)} to download of {_size(plan.total_bytes)}")

    try:
        client = _client(ctx, **({"require_commercial_use": True} if commercial else {}))
        if dry_run:
            plan = client.plan_pull(spec)
            show(plan)
            if not plan.allowed:
                click.echo(f"refused by the licence policy: {plan.clause}", err=True)
                sys.exit(EXIT_POLICY)
            return
        result = client.pull(spec, on_plan=show)
    except SoundforgeError as exc:
        _fail(exc, ctx.obj["debug"])
    ready = "ready to run offline" if result.offline_ready else "downloaded, but the engine does not find it yet"
    click.echo(f"{result.verified} files match the hub's hashes; {ready} ({result.folder})")


def _size(size: int | None) -> str:
    """Bytes for people: `812 B`, `3.4 MB`, `12.1 GB`."""
    if size is None:
        return "size unknown"
    amount = float(size)
    for unit in ("B", "KB", "MB"):
        if amount < 1000:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{amount:.1f} GB"
