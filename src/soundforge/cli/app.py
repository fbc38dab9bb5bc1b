"""The `soundforge` command: a thin shell over the Python API.

Exit codes: 0 success, 1 other failure, 2 bad usage or invalid request, 3 provider or configuration
problem, 4 refused by the licence policy, 5 audio changed since generation (`verify`), 6 no watermark found, or
not the recorded one (`verify --watermark`), 130 interrupted (Ctrl+C).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .._version import __version__
from ..errors import (
    SoundforgeError,
)
from ..secrets import redact

EXIT_FAILURE, EXIT_USAGE, EXIT_PROVIDER, EXIT_POLICY, EXIT_MODIFIED, EXIT_NO_WATERMARK = 1, 2, 3, 4, 5, 6
#: Ctrl+C: the shells' convention for a command ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, SoundforgeError):
        return exc.exit_code
    if isinstance(exc, FileExistsError):
        return EXIT_USAGE
    return EXIT_FAILURE


def _fail(exc: BaseException, debug: bool) -> NoReturn:
    if debug:
        raise exc
    if isinstance(exc, OSError) and not isinstance(exc, FileExistsError | SoundforgeError):
        # (A GenerationTimeoutError is a TimeoutError, so an OSError: it said "cannot write:".)
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


class _Commands(click.Group):
    """The command group, ending on Ctrl+C with exit code 130 and one line (click says "Aborted!" and exits 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    from ..client import Client
    from ..config import Config

    config = Config.load(ctx.obj["config"])
    if policy:
        config = config.model_copy(update={"policy": config.policy.model_copy(update=policy)})
    return Client(config)
