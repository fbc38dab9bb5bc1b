"""`soundforge generate` and `separate`: make audio from the shell, with progress, streaming to a file and
playback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import (
    SoundforgeError,
)
from .app import (
    _client,
    _fail,
    _parse_param,
    cli,
)


def adapter_arg(text: str) -> Any:
    """`--adapter SOURCE[:SCALE]` as a request's adapter; a bad one is a usage error naming the option."""
    from pydantic import ValidationError

    from ..request import Adapter, explain_validation_error

    try:
        return Adapter.parse(text)
    except ValidationError as exc:
        reason = "; ".join(explain_validation_error(e) for e in exc.errors(include_input=False))
        raise click.BadParameter(f"{text!r}: {reason}", param_hint="--adapter") from None


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
    "--adapter",
    "adapters",
    multiple=True,
    metavar="SOURCE[:SCALE]",
    help="A style adapter (LoRA): a folder, a .safetensors file or a hub id, at SCALE (default 1); repeatable "
    "(docs/adapters.md).",
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
    adapters: tuple[str, ...],
    watermark: bool,
    quiet: bool,
) -> None:
    """Generate audio from PROMPT and save it with licence and provenance."""
    debug = ctx.obj["debug"]
    fields: dict[str, Any] = dict(_parse_param(p) for p in params)
    options = {"duration": duration, "num_outputs": num_outputs, "seed": seed, "loudness": loudness, "trim": trim}
    for key, value in {**options, "fade_in": fade_in, "fade_out": fade_out}.items():
        if value is None:
            continue
        if key in fields and fields[key] != value:  # one value per field: never one of two silently
            raise click.UsageError(f"--{key.replace('_', '-')} and --param {key}= disagree: give it once")
        fields[key] = value  # checked with the request, before anything is generated
    if stem_names is not None:
        fields["stems"] = [s.strip() for s in stem_names.split(",") if s.strip()]
    if adapters:
        if "adapters" in fields:
            raise click.UsageError("--adapter and --param adapters= both name adapters: use one of them")
        fields["adapters"] = [adapter_arg(text) for text in adapters]
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
        from ..output.files import check_destination

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
        _say_new_folder(output)
        if stream_to is not None:
            from ..request import build_request
            from ..run.steps import check_door

            # The file it names is the stream itself, as a streamed serve job's stored file: what the steps refuse
            # there (loudness, trim, fades: the file would no longer be what was streamed) they refuse here.
            check_door(build_request(prompt, fields), "streamed_job")
        client = _client(ctx, **({"require_commercial_use": True} if commercial else {}))
        signer = client.config.c2pa_signer()
        if sign_cert is not None and sign_key is not None:
            from ..output.signing import C2paSigner

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
                # Loudness, trim and fades are the request's (saved as it asked, with its EDITS tag).
                paths = generation.save(output, format=fmt, overwrite=overwrite, sidecar=not no_sidecar, sign=signer)
            finally:  # the growing file was the stream's; the tagged file (or nothing, on failure) replaces it
                if partial is not None:
                    partial.unlink(missing_ok=True)
    except (SoundforgeError, OSError) as exc:
        _fail(exc, debug)
    _echo_tracks(paths, generation.tracks)


def _say_new_folder(output: Path) -> None:
    """Say on stderr that the output's folder will be made (a typo in a path should not pass unseen)."""
    folder = output.parent
    if not folder.exists():
        click.echo(f"note: {folder} does not exist; it is created for the output", err=True)


def _saved_seconds(path: Path, made: float) -> float:
    """The length of the file as saved (a trim makes it shorter than what was made), from its header."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, OSError):
        return made


def _echo_tracks(paths: list[Path], tracks: list[Any]) -> None:
    """One line per saved file (its length as saved), then its licence and any duty."""
    for path, track in zip(paths, tracks, strict=True):
        click.echo(
            f"{path}  {_saved_seconds(path, track.duration):.1f} s  "
            f"{track.provenance.provider}:{track.provenance.model}  seed {track.provenance.seed}"
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
    from ..output.files import check_destination
    from ..run.separation import check_stems

    debug = ctx.obj["debug"]
    try:
        names = check_stems([s.strip() for s in stems.split(",") if s.strip()])
        target = output or file.with_suffix(".wav")
        check_destination(target, count=len(names), overwrite=overwrite, roles=list(names))
        _say_new_folder(target)
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
    from ..audio.wavstream import GrowingWav

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
