"""The `soundforge` command: a thin shell over the Python API.

Exit codes: 0 success, 1 other failure, 2 bad usage or invalid request, 3 provider or configuration
problem, 4 refused by the licence policy, 5 audio changed since generation (`verify`), 6 no watermark found, or
not the recorded one (`verify --watermark`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from ._version import __version__
from .errors import (
    InvalidRequestError,
    ProviderUnavailableError,
    SoundforgeError,
)
from .secrets import redact

EXIT_FAILURE, EXIT_USAGE, EXIT_PROVIDER, EXIT_POLICY, EXIT_MODIFIED, EXIT_NO_WATERMARK = 1, 2, 3, 4, 5, 6


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, SoundforgeError):
        return exc.exit_code
    if isinstance(exc, FileExistsError):
        return EXIT_USAGE
    return EXIT_FAILURE


def _fail(exc: BaseException, debug: bool) -> NoReturn:
    if debug:
        raise exc
    if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
        # A full disk, a read-only folder: the system's reason and the path, not a traceback.
        where = f" {exc.filename}" if exc.filename else ""
        message = f"cannot write{where}: {exc.strerror or exc}"
    else:
        message = str(exc)
    click.echo(f"error: {redact(message)}", err=True)
    sys.exit(_exit_code(exc))


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--param")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="soundforge")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Extra TOML config file, read after the usual ones.",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, debug: bool) -> None:
    """Provider-neutral generative audio with licence and provenance."""
    ctx.obj = {"config": config_path, "debug": debug}


def _client(ctx: click.Context, **policy: Any) -> Any:
    from .client import Client
    from .config import Config

    config = Config.load(ctx.obj["config"])
    if policy:
        config = config.model_copy(update={"policy": config.policy.model_copy(update=policy)})
    return Client(config)


@cli.command()
@click.argument("prompt")
@click.option("-p", "--provider", default=None, help="Provider spec: synth, musicgen:MODEL, auto, …")
@click.option("-d", "--duration", type=float, default=None, help="Seconds of audio.")
@click.option("-n", "--num-outputs", type=int, default=None, help="How many variations.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed, same audio).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("track.wav"),
    show_default=True,
    help="Output file; the extension picks the format.",
)
@click.option("--format", "fmt", type=click.Choice(["wav", "flac", "ogg", "mp3"]), default=None)
@click.option("--loudness", type=float, default=None, help="Normalise to this LUFS target (e.g. -14).")
@click.option("--trim", type=float, default=None, help="Cut the file to this many seconds, at a zero crossing.")
@click.option("--fade-in", type=float, default=None, help="Fade in over this many seconds.")
@click.option("--fade-out", type=float, default=None, help="Fade out over this many seconds.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any request field (JSON values), e.g. --param temperature=0.9 --param extra='{\"x\":1}'.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
@click.option("--no-sidecar", is_flag=True, help="Do not write the JSON sidecar.")
@click.option("--commercial", is_flag=True, help="Refuse models whose outputs may not be used commercially.")
@click.option(
    "--sign-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM certificate chain: sign a C2PA manifest into the file (or set [c2pa] in config).",
)
@click.option(
    "--sign-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM private key for --sign-cert.",
)
@click.option(
    "--stream-to",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Stream into this WAV as the audio is made (NAME.partial.wav grows, playable at any moment), then write "
    "the tagged file under NAME.wav; replaces --output.",
)
@click.option("--play", is_flag=True, help="Play the audio as it is made (needs soundforge[play]).")
@click.option("--loop", is_flag=True, help="Make a seamless loop of whole bars (loop points in the file).")
@click.option("--loop-bars", type=int, default=None, help="Bars in the loop (implies --loop; default: as many as fit).")
@click.option(
    "--stems",
    "stem_names",
    default=None,
    help="Also split the track into these stems (comma-separated): NAME.STEM.wav.",
)
@click.option(
    "--watermark",
    is_flag=True,
    help="Embed AudioSeal's invisible watermark (needs soundforge[watermark] and its weights; docs/watermark.md).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def generate(
    ctx: click.Context,
    prompt: str,
    provider: str | None,
    duration: float | None,
    num_outputs: int | None,
    seed: int | None,
    output: Path,
    fmt: str | None,
    loudness: float | None,
    trim: float | None,
    fade_in: float | None,
    fade_out: float | None,
    params: tuple[str, ...],
    overwrite: bool,
    no_sidecar: bool,
    commercial: bool,
    sign_cert: Path | None,
    sign_key: Path | None,
    stream_to: Path | None,
    play: bool,
    loop: bool,
    loop_bars: int | None,
    stem_names: str | None,
    watermark: bool,
    quiet: bool,
) -> None:
    """Generate audio from PROMPT and save it with licence and provenance."""
    debug = ctx.obj["debug"]
    fields: dict[str, Any] = dict(_parse_param(p) for p in params)
    for key, value in (("duration", duration), ("num_outputs", num_outputs), ("seed", seed)):
        if value is not None:
            fields[key] = value
    for key, value in (("trim", trim), ("fade_in", fade_in), ("fade_out", fade_out)):
        if value is not None:  # checked with the request, before anything is generated
            fields[key] = value
    if stem_names is not None:
        fields["stems"] = [s.strip() for s in stem_names.split(",") if s.strip()]
    if watermark:
        fields["watermark"] = True
    if loop or loop_bars is not None:
        fields["loop"] = True
        if loop_bars is not None:
            fields["loop_bars"] = loop_bars
    if (sign_cert is None) != (sign_key is None):
        raise click.UsageError("--sign-cert and --sign-key go together")
    streaming = stream_to is not None or play
    if streaming and int(fields.get("num_outputs") or 1) != 1:
        raise click.UsageError("--stream-to and --play stream one track: leave --num-outputs at 1")
    if stream_to is not None:
        if ctx.get_parameter_source("output") is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--stream-to names the output file: leave out --output")
        if (fmt or stream_to.suffix.lower().lstrip(".")) != "wav":
            raise click.UsageError("--stream-to writes WAV: give it a .wav name")
        output = stream_to
    speaker = _Speaker.check() if play else None
    try:
        from .files import check_destination

        # Every problem with the output is found before anything is generated (or paid for).
        check_destination(
            output,
            format=fmt,
            count=int(fields.get("num_outputs") or 1) + len(fields.get("stems") or ()),
            overwrite=overwrite,
            sidecar=not no_sidecar,
            loudness=loudness,
            roles=[None, *fields["stems"]] if fields.get("stems") else (),
        )
        client = _client(ctx, **({"require_commercial_use": True} if commercial else {}))
        signer = client.config.c2pa_signer()
        if sign_cert is not None and sign_key is not None:
            from .signing import C2paSigner

            signer = C2paSigner.from_files(sign_cert, sign_key)
        partial = _partial_path(stream_to) if stream_to is not None else None
        with client:
            try:
                if streaming:
                    generation = _stream_with_progress(client, prompt, provider, fields, quiet, partial, speaker)
                else:
                    generation = _run_with_progress(client, prompt, provider, fields, quiet)
                if generation.substitution:
                    click.echo(f"note: {generation.substitution}", err=True)
                paths = generation.save(
                    output,
                    format=fmt,
                    loudness=loudness,
                    overwrite=overwrite,
                    sidecar=not no_sidecar,
                    sign=signer,
                    trim=trim,
                    fade_in=fade_in,
                    fade_out=fade_out,
                )
            finally:  # the growing file was the stream's; the tagged file (or nothing, on failure) replaces it
                if partial is not None:
                    partial.unlink(missing_ok=True)
    except (SoundforgeError, OSError) as exc:
        _fail(exc, debug)
    _echo_tracks(paths, generation.tracks)


def _echo_tracks(paths: list[Path], tracks: list[Any]) -> None:
    """One line per saved file, then its licence and any duty."""
    for path, track in zip(paths, tracks, strict=True):
        click.echo(
            f"{path}  {track.duration:.1f} s  {track.provenance.provider}:{track.provenance.model}  "
            f"seed {track.provenance.seed}"
        )
        click.echo(f"  licence: {track.license.summary()}")
        if track.license.attribution_required:
            click.echo(f"  attribution: {track.license.attribution}")
        if track.license.plan_note:
            click.echo(f"  note: {track.license.plan_note}")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--stems",
    default="vocals,drums,bass,other",
    show_default=True,
    help="Comma-separated stems, in the order wanted (the separator must offer each).",
)
@click.option("-p", "--provider", default="demucs", show_default=True, help="The separator: demucs[:MODEL], ...")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Base name of the stem files (NAME.vocals.wav, ...); default: FILE's name beside it.",
)
@click.option("--seed", type=int, default=None)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A separator parameter (into extra).")
@click.option("--overwrite", is_flag=True, help="Replace existing files.")
@click.option("--commercial", is_flag=True, help="Refuse a separator (or source) not usable commercially.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def separate(
    ctx: click.Context,
    file: Path,
    stems: str,
    provider: str,
    output: Path | None,
    seed: int | None,
    params: tuple[str, ...],
    overwrite: bool,
    commercial: bool,
    quiet: bool,
) -> None:
    """Split FILE into stems, one tagged file per stem with its source's licence and the separator's."""
    from .files import check_destination
    from .separation import check_stems

    debug = ctx.obj["debug"]
    try:
        names = check_stems([s.strip() for s in stems.split(",") if s.strip()])
        target = output or file.with_suffix(".wav")
        check_destination(target, count=len(names), overwrite=overwrite, roles=list(names))
        extra = dict(_parse_param(p) for p in params)
        client = _client(ctx, **({"require_commercial_use": True} if commercial else {}))
        with client:
            generation = _with_progress(
                quiet,
                lambda on_progress: client.separate(
                    file, names, provider=provider, seed=seed, extra=extra, on_progress=on_progress
                ),
            )
            paths = generation.save(target, overwrite=overwrite)
    except (SoundforgeError, OSError) as exc:
        _fail(exc, debug)
    _echo_tracks(paths, generation.tracks)


def _run_with_progress(client: Any, prompt: str, provider: str | None, fields: dict[str, Any], quiet: bool) -> Any:
    return _with_progress(
        quiet, lambda on_progress: client.generate(prompt, provider=provider, on_progress=on_progress, **fields)
    )


def _with_progress(quiet: bool, run: Callable[[Any], Any]) -> Any:
    """`run(on_progress)` with a progress bar on a terminal (none when quiet or piped)."""
    if quiet or not sys.stderr.isatty():
        return run(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("generating", total=None)

        def on_progress(event: Any) -> None:
            bar.update(task, description=event.phase, completed=event.done, total=event.total)

        return run(on_progress)


def _partial_path(final: Path) -> Path:
    """Where `--stream-to NAME.wav` grows while the stream runs: NAME.partial.wav beside it."""
    return final.with_name(f"{final.stem}.partial{final.suffix}")


def _stream_with_progress(
    client: Any,
    prompt: str,
    provider: str | None,
    fields: dict[str, Any],
    quiet: bool,
    partial: Path | None,
    speaker: _Speaker | None,
) -> Any:
    """Stream the track into the growing file and/or the speaker; the finished generation."""
    from .wavstream import GrowingWav

    def run(on_progress: Any) -> Any:
        growing: GrowingWav | None = None
        try:
            with client.stream(prompt, provider=provider, on_progress=on_progress, **fields) as stream:
                for chunk in stream:
                    if partial is not None:
                        if growing is None:
                            growing = GrowingWav(partial, chunk.audio.shape[0], chunk.sample_rate)
                        growing.write(chunk.audio)
                    if speaker is not None:
                        speaker.play(chunk)
            return stream.result()
        finally:
            if growing is not None:
                growing.close()
            if speaker is not None:
                speaker.close()

    return _with_progress(quiet, run)


class _Speaker:
    """Plays chunks as they come, through sounddevice (PortAudio; the `play` extra)."""

    def __init__(self) -> None:
        import sounddevice

        self._sounddevice = sounddevice
        self._stream: Any = None

    @classmethod
    def check(cls) -> _Speaker:
        """A speaker, or a usage error naming the install when sounddevice is missing (before any work)."""
        import importlib.util

        if importlib.util.find_spec("sounddevice") is None:
            raise click.UsageError('--play needs sounddevice: pip install "soundforge[play]"')
        try:
            return cls()
        except OSError as exc:  # sounddevice is there but PortAudio is not (Linux: the libportaudio2 package)
            raise click.UsageError(f"--play cannot reach PortAudio ({exc}); install libportaudio2") from None

    def play(self, chunk: Any) -> None:
        """Queue a chunk for the sound card (blocks while its buffer is full: playback sets the pace)."""
        if self._stream is None:
            self._stream = self._sounddevice.OutputStream(
                samplerate=chunk.sample_rate, channels=chunk.audio.shape[0], dtype="float32"
            )
            self._stream.start()
        self._stream.write(chunk.audio.T.copy())

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None


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
        from .output.inspect import read_record

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
    from .output.inspect import c2pa_summary

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
    from .output.inspect import verify as verify_file

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
        click.echo(
            f"{file}: OK, audio unchanged since generation by {fields.get('PROVIDER')}:{fields.get('MODEL')} "
            f"(licence {fields.get('LICENSE')})"
        )
        if not marked:
            sys.exit(EXIT_NO_WATERMARK)
        return
    click.echo(f"{file}: MODIFIED, the audio no longer matches its recorded hash", err=True)
    sys.exit(EXIT_MODIFIED)


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
    from .config import Config
    from .serve import run

    try:
        config = Config.load(ctx.obj["config"])
    except SoundforgeError as exc:
        _fail(exc, ctx.obj["debug"])
    engine_list: int | tuple[str, ...] | None = None
    if engines is not None:
        from pydantic import ValidationError

        from .config import ServeConfig

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
            from .serve import run_on_ray

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

    from .bulk import abatch, load_manifest

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
            f"in {report.seconds:.1f} s; licences in {out_dir}/licenses.json and {out_dir}/ATTRIBUTIONS.md"
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
@click.option("--resume", "resume_id", default=None, metavar="JOB_ID", help="Collect this pending job's result.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Where --resume saves."
)
@click.pass_context
def jobs_command(ctx: click.Context, journal: Path | None, resume_id: str | None, output: Path | None) -> None:
    """List cloud jobs that were submitted and not collected (a timeout, a crash), or collect one with --resume.

    Collecting a job never submits it again: the result that was paid for is downloaded once.
    """
    import time as clock

    from .backends.cloud import CloudJobJournal, default_journal_path
    from .request import GenerationRequest

    book = CloudJobJournal(journal or default_journal_path())
    pending = book.all()
    if resume_id is None:
        if not pending:
            click.echo(f"no pending cloud jobs in {book.path}")
            return
        for entry in pending:
            state = "waited for" if entry.waited_for else "pending"
            age = clock.time() - entry.created
            prompt = str(entry.request.get("prompt", ""))[:40]
            click.echo(f"{entry.job_id}  {entry.provider}:{entry.model}  {state}  {age:.0f} s old  {prompt!r}")
        return
    job = next((j for j in pending if j.job_id == resume_id), None)
    if job is None:
        _fail(InvalidRequestError(f"no pending job {resume_id!r} in {book.path}", field="resume"), ctx.obj["debug"])
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
        from .client import Client
        from .config import Config

        config = Config.load(ctx.obj["config"])
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


@cli.group()
def codec() -> None:
    """EnCodec tokens: encode audio to codes and decode them back (needs soundforge[musicgen])."""


@codec.command("encode")
@click.argument("audio_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Token file to write (.npz: codes, metadata and the codec's licence).",
)
@click.option(
    "-m",
    "--model",
    default="facebook/encodec_24khz",
    show_default=True,
    help="Hub id (encodec_24khz / _48khz: MIT; encodec_32khz: CC-BY-NC-4.0) or a local folder.",
)
@click.option("-b", "--bandwidth", type=float, default=None, help="kbps; default: the codec's smallest.")
@click.option("--overwrite", is_flag=True, help="Replace an existing token file.")
@click.pass_context
def codec_encode(
    ctx: click.Context, audio_file: Path, out: Path, model: str, bandwidth: float | None, overwrite: bool
) -> None:
    """Encode AUDIO_FILE to EnCodec tokens."""
    from .audio import load_audio
    from .codec import Codec

    try:
        samples, rate = load_audio(audio_file)
        tokens = Codec(model).encode(samples, rate, bandwidth=bandwidth)
        tokens.save(out, overwrite=overwrite)
    except (SoundforgeError, FileExistsError) as exc:
        _fail(exc, ctx.obj["debug"])
    click.echo(
        f"{out}: {tokens.codes.shape[0]} chunk(s) x {tokens.codebooks} codebooks x {tokens.codes.shape[2]} "
        f"frames, {tokens.bandwidth:g} kbps, {tokens.duration:.2f} s; licence {tokens.license.id} "
        f"({tokens.license.summary()})"
    )


@codec.command("decode")
@click.argument("tokens_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Audio file to write (wav, flac, ogg, mp3) with licence and provenance tags.",
)
@click.option("-m", "--model", default=None, help="Codec to decode with (default: the one named in the file).")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@click.pass_context
def codec_decode(ctx: click.Context, tokens_file: Path, out: Path, model: str | None, overwrite: bool) -> None:
    """Decode a TOKENS_FILE written by `codec encode` to audio."""
    from .codec import Codec, Tokens

    try:
        tokens = Tokens.load(tokens_file)
        track = Codec(model or tokens.model).decode_track(tokens)
        track.save(out, overwrite=overwrite)
    except (SoundforgeError, FileExistsError) as exc:
        _fail(exc, ctx.obj["debug"])
    click.echo(
        f"{out}: {track.duration:.2f} s, {track.sample_rate} Hz, {track.channels} ch; licence {track.license.id}"
    )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="soundforge")


if __name__ == "__main__":  # pragma: no cover
    main()
