"""`soundforge codec encode|decode`: EnCodec tokens for a clip, and back."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import (
    SoundforgeError,
)
from .app import (
    _fail,
    cli,
)


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
    from ..audio import load_audio
    from ..codec import Codec

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
    from ..codec import Codec, Tokens

    try:
        tokens = Tokens.load(tokens_file)
        track = Codec(model or tokens.model).decode_track(tokens)
        track.save(out, overwrite=overwrite)
    except (SoundforgeError, FileExistsError) as exc:
        _fail(exc, ctx.obj["debug"])
    click.echo(
        f"{out}: {track.duration:.2f} s, {track.sample_rate} Hz, {track.channels} ch; licence {track.license.id}"
    )
