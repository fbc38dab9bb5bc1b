"""`soundforge serve`, `batch` and `jobs`: the service, manifests of many rows, and pending cloud jobs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import (
    InvalidRequestError,
    ProviderUnavailableError,
    SoundforgeError,
)
from .app import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    _client,
    _fail,
    cli,
)


@cli.command()
@click.option("--host", default=None, help="Address to bind ([serve] host; default 127.0.0.1, loopback).")
@click.option("--port", type=int, default=None, help="Port ([serve] port; default 8000).")
@click.option(
    "--store",
    default=None,
    help="Job records and audio: a folder or an fsspec URL such as s3://bucket/jobs ([serve] store; default: "
    "the user data dir).",
)
@click.option(
    "--index",
    default=None,
    help="The job index: sqlite:///PATH or postgresql://USER@HOST/DB ([serve] index; default: index.sqlite in "
    "a local store).",
)
@click.option(
    "--token",
    default=None,
    help="Require this bearer token on every endpoint but /healthz; prefer the environment variable "
    "SOUNDFORGE_SERVE_TOKEN (or the one [serve] token_env names): flags show in `ps`.",
)
@click.option("--max-queue", type=int, default=None, help="Jobs waiting before 429 ([serve] max_queue; 64).")
@click.option("--workers", type=int, default=None, help="Jobs generated at once ([serve] workers; 4).")
@click.option(
    "--engine",
    type=click.Choice(["auto", "process", "inline"]),
    default=None,
    help="Run jobs in a child engine process or in the server's own ([serve] engine; auto: a child "
    "process on Linux and macOS).",
)
@click.option(
    "--engines",
    default=None,
    help="Engine processes: a number (e.g. 2 on a CPU) or one device per engine, comma-separated "
    "(cuda:0,cuda:1) ([serve] engines; 1).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ADDRESS]",
    help="Serve on Ray Serve: alone joins [serve.ray] address (auto: the cluster this node is in); or 'local' "
    "(start one here), 'ray://HOST:10001'. Needs soundforge[ray-serve].",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    store: str | None,
    index: str | None,
    token: str | None,
    max_queue: int | None,
    workers: int | None,
    engine: str | None,
    engines: str | None,
    ray_address: str | None,
) -> None:
    """Serve the API and web page (needs soundforge[serve]); settings from [serve] in config, flags win.

    With --ray the same API runs as a Ray Serve application: an ingress and one engine deployment per model
    family ([serve.ray]), over a shared job store."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        _fail(
            ProviderUnavailableError(
                "serve", "fastapi and uvicorn are not installed", fix='pip install "soundforge[serve]"'
            ),
            ctx.obj["debug"],
        )
    from ..config import Config
    from ..serve import run

    try:
        config = Config.load(ctx.obj["config"])
    except SoundforgeError as exc:
        _fail(exc, ctx.obj["debug"])
    engine_list: int | tuple[str, ...] | None = None
    if engines is not None:
        from pydantic import ValidationError

        from ..config import ServeConfig

        text = engines.strip()
        asked = int(text) if text.isdigit() else tuple(part.strip() for part in text.split(",") if part.strip())
        try:  # the bounds of [serve] engines, checked where they are declared
            engine_list = ServeConfig(engines=asked or ()).engines
        except ValidationError:
            raise click.UsageError("--engines takes a number (1 to 64) or devices, e.g. cuda:0,cuda:1") from None
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "store": store,
        "index": index,
        "token": token,
        "max_queue": max_queue,
        "workers": workers,
    }
    if ray_address is not None and (engine is not None or engine_list is not None):
        raise click.UsageError(
            "--engine and --engines set up one server's engine processes; with --ray the engines are Ray Serve "
            "deployments ([serve.ray.engines])"
        )
    try:  # a store, index or [serve.ray] setting that cannot work is refused before anything starts
        if ray_address is not None:
            from ..serve import run_on_ray

            run_on_ray(config, address=ray_address or config.serve.ray.address, **common)
        else:
            run(config, engine=engine, engines=engine_list, **common)
    except SoundforgeError as exc:
        _fail(exc, ctx.obj["debug"])


@cli.command("batch")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    help="Output folder (holds the journal too), or an fsspec URL such as s3://bucket/cues.",
)
@click.option("-p", "--provider", default=None, help="Provider for rows that name none.")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Rows in flight at once.")
@click.option("--resume", is_flag=True, help="Continue the run in OUT; finished rows are skipped.")
@click.option("--retry-failed", is_flag=True, help="With --resume, try failed rows again.")
@click.option("--dry-run", is_flag=True, help="Validate, check the policy and print the licence report only.")
@click.option("--commercial", is_flag=True, help="Refuse models whose outputs may not be used commercially.")
@click.option(
    "--budget", type=float, default=None, help="The most the run may cost in USD, checked before any row runs."
)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Local path of the run journal (default OUT/.soundforge-batch.sqlite; needed when OUT is a URL).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run on Ray: alone starts a local cluster; or 'auto', 'ray://HOST:10001'. Needs soundforge[ray].",
)
@click.option("--ray-workers", type=int, default=None, help="Ray actors per local model on CPU-only clusters (2).")
@click.pass_context
def batch_command(
    ctx: click.Context,
    manifest: Path,
    out_dir: str,
    provider: str | None,
    concurrency: int,
    resume: bool,
    retry_failed: bool,
    dry_run: bool,
    commercial: bool,
    budget: float | None,
    journal: Path | None,
    ray_address: str | None,
    ray_workers: int | None,
) -> None:
    """Generate every row of a JSONL/CSV MANIFEST into OUT, resumably, with a licence report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from ..bulk import abatch, load_manifest

    console = Console(stderr=True)
    try:
        rows = len(load_manifest(manifest))
        client = _client(ctx, **({"require_commercial_use": True} if commercial else {}))
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=dry_run or not console.is_terminal,
        ) as bar:
            task = bar.add_task("generating", total=rows)
            failed = 0

            def on_row(name: str, state: str) -> None:
                nonlocal failed
                failed += state == "failed"
                bar.update(task, advance=1, description=f"generating ({failed} failed)")

            import asyncio

            report = asyncio.run(
                abatch(
                    manifest,
                    out_dir,
                    client=client,
                    provider=provider,
                    concurrency=concurrency,
                    resume=resume,
                    retry_failed=retry_failed,
                    dry_run=dry_run,
                    journal=journal,
                    ray=ray_address,
                    ray_workers=ray_workers,
                    on_row=on_row,
                    budget=budget,
                )
            )
    except (SoundforgeError, OSError) as exc:
        _fail(exc, ctx.obj["debug"])
    except KeyboardInterrupt:
        # The rows saved so far are kept (each file is complete: written atomically) and counted by the journal.
        click.echo(
            f"interrupted: the rows saved so far are kept in {out_dir}; run the same command with --resume to "
            "generate the rest",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    if dry_run:
        click.echo("plan (dry run: nothing generated):")
        width = max(len(name) for name in report.plan)
        for name, target in report.plan.items():
            click.echo(f"  {name:<{width}}  {target}")
        click.echo("estimated cost:")
        for name, amount in report.estimates.items():
            click.echo(f"  {name}: " + ("unknown price" if amount is None else f"${amount:.4f}"))
        total = report.estimated_total
        click.echo("  total: " + ("unknown (a provider's price is unknown)" if total is None else f"${total:.4f}"))
    table = Table(title="licences" + (" (dry run: nothing generated)" if dry_run else ""))
    for column in ("licence", "commercial use", "attribution", "rows"):
        table.add_column(column, overflow="fold")
    for lid, entry in report.licenses.items():
        table.add_row(
            lid, entry["commercial_use"].replace("_", " "), entry["attribution"] or "none", str(len(entry["rows"]))
        )
    Console().print(table)
    if not dry_run:
        click.echo(
            f"{len(report.done)} generated, {len(report.skipped)} already done, {len(report.failed)} failed "
            f"in {report.seconds:.1f} s; licences in {out_dir.rstrip('/')}/licenses.json and "
            f"{out_dir.rstrip('/')}/ATTRIBUTIONS.md"
        )
        unpriced = f" ({len(report.unpriced)} row(s) of unknown price not counted)" if report.unpriced else ""
        click.echo(f"spent ${report.spent:.4f}{unpriced}")
        for name, error in sorted(report.failed.items()):
            click.echo(f"  failed {name}: {error}", err=True)
        if report.failed:
            sys.exit(EXIT_FAILURE)


@cli.command("jobs")
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The job journal (default: the user data dir's cloud-jobs.sqlite; a provider's job_journal setting).",
)
@click.option(
    "--resume", "resume_id", default=None, metavar="JOB_ID", help="Collect this pending job's or paid answer's result."
)
@click.option(
    "--forget", "forget_id", default=None, metavar="JOB_ID", help="Drop this entry (a kept answer's files too)."
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Where --resume saves."
)
@click.pass_context
def jobs_command(
    ctx: click.Context, journal: Path | None, resume_id: str | None, forget_id: str | None, output: Path | None
) -> None:
    """List what was paid for and not delivered, collect one with --resume, or drop one with --forget.

    Two kinds: cloud jobs that were submitted and not collected (a timeout, a crash: Replicate, fal), and paid
    answers of one-response APIs kept on disk because delivering them failed (Stability, ElevenLabs, Gemini,
    MiniMax). Collecting never submits again: the result that was paid for is delivered once.
    """
    import sqlite3
    import time as clock

    from ..backends.cloud import CloudJobJournal, default_journal_path
    from ..config import Config
    from ..errors import ConfigurationError
    from ..request import GenerationRequest

    debug = ctx.obj["debug"]
    try:
        config = Config.load(ctx.obj["config"])
    except SoundforgeError as exc:
        _fail(exc, debug)
    if journal is not None and not journal.is_file():  # a mistyped path is an error, never a new empty journal
        _fail(InvalidRequestError(f"no job journal at {journal}", field="journal"), debug)
    # Every journal this machine's providers write to: the default one and each provider's own `job_journal`.
    paths = [journal] if journal is not None else [default_journal_path()]
    if journal is None:
        paths += [Path(str(s["job_journal"])).expanduser() for s in config.providers.values() if s.get("job_journal")]
    books = [CloudJobJournal(path) for path in dict.fromkeys(paths) if path.is_file()]
    pending = []
    for book in books:
        try:
            pending += [(book, entry) for entry in book.all()]
        except (sqlite3.DatabaseError, ValueError, KeyError, TypeError) as exc:
            _fail(ConfigurationError(f"{book.path} is not a readable soundforge job journal: {exc}"), debug)
    if resume_id is None and forget_id is None:
        if not pending:
            click.echo(f"no pending cloud jobs in {', '.join(str(p) for p in dict.fromkeys(paths))}")
            return
        for _, entry in pending:
            state = "waited for" if entry.waited_for else "pending"
            kind = "paid answer" if entry.kind == "answer" else "job"
            age = clock.time() - entry.created
            prompt = str(entry.request.get("prompt", ""))[:40]
            failed = f"  failed: {entry.failed}" if entry.failed else ""
            click.echo(
                f"{entry.job_id}  {kind}  {entry.provider}:{entry.model}  {state}  {age:.0f} s old  {prompt!r}{failed}"
            )
        return
    wanted, option = (forget_id, "forget") if forget_id is not None else (resume_id, "resume")
    found = next(((b, j) for b, j in pending if j.job_id == wanted), None)
    if found is None:
        _fail(InvalidRequestError(f"no pending job {wanted!r} in the job journals", field=option), debug)
    book, job = found
    if forget_id is not None:
        book.forget(job.job_id)
        click.echo(f"forgot {job.job_id}")
        return
    if job.waited_for:
        _fail(InvalidRequestError(f"{job.job_id} is being collected by a running call", field="resume"), debug)
    book.retry(job.job_id)  # asked for by id: a kept answer that failed before is tried again
    if output is None:
        _fail(InvalidRequestError("--resume needs -o FILE to save the result", field="output"), ctx.obj["debug"])
    if any(
        isinstance(job.request.get(name), dict) and "sha256" in job.request[name] for name in ("melody", "audio_prompt")
    ):
        _fail(
            InvalidRequestError(
                "this job's request had an audio input, which the journal keeps only as a hash: collect it by "
                "calling again with the same request and audio",
                field="resume",
            ),
            ctx.obj["debug"],
        )
    try:
        from ..client import Client

        providers = {
            **config.providers,
            job.provider: {**config.providers.get(job.provider, {}), "job_journal": str(book.path)},
        }
        client = Client(config.model_copy(update={"providers": providers}))
        # The journal keeps the request's record, defaults included: give back only what was set, as it was given.
        fields = GenerationRequest.model_fields
        given = {k: v for k, v in job.request.items() if k not in fields or v != fields[k].get_default()}
        generation = client.generate(GenerationRequest(**given), provider=f"{job.provider}:{job.model}")
        paths = generation.save(output)
    except (SoundforgeError, OSError) as exc:
        _fail(exc, ctx.obj["debug"])
    for path in paths:
        click.echo(str(path))
