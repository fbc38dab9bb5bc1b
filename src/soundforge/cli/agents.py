"""`soundforge mcp`: the agent tools as a Model Context Protocol server (stdio, or streamable HTTP)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ProviderUnavailableError, SoundforgeError
from .app import _fail, cli


@cli.command("mcp")
@click.option(
    "--http",
    "address",
    default=None,
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio, behind serve's bearer token "
    "(SOUNDFORGE_SERVE_TOKEN, or the variable [serve] token_env names).",
)
@click.option(
    "--out",
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("soundforge-output"),
    show_default=True,
    help="The folder generated files are saved in (and the only one separate and verify read).",
)
@click.option("--commercial", is_flag=True, help="Refuse models whose outputs may not be used commercially.")
@click.option("--budget", type=float, default=None, help="The most this server's calls may cost in USD, together.")
@click.pass_context
def mcp(ctx: click.Context, address: str | None, output_dir: Path, commercial: bool, budget: float | None) -> None:
    """Serve soundforge's tools to agents over the Model Context Protocol (needs soundforge[mcp]): generate,
    separate, verify, providers, estimate_cost; the config's licence policy applies."""
    try:
        import mcp as _sdk  # noqa: F401
    except ImportError:
        _fail(
            ProviderUnavailableError("mcp", "the mcp SDK is not installed", fix='pip install "soundforge[mcp]"'),
            ctx.obj["debug"],
        )
    from ..agents.mcp import build_server, serve_http
    from ..client import Client
    from ..config import Config
    from ..ops.budget import Budget

    host, port = None, 0
    if address is not None:
        host, _, port_text = address.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise click.BadParameter(f"{address!r}: give HOST:PORT, e.g. 127.0.0.1:8765", param_hint="--http")
        port = int(port_text)
    try:
        config = Config.load(ctx.obj["config"])
        if commercial:
            config = config.model_copy(
                update={"policy": config.policy.model_copy(update={"require_commercial_use": True})}
            )
        client = Client(config, budget=Budget(budget) if budget is not None else None)
        server = build_server(client, output_dir)
    except SoundforgeError as exc:
        _fail(exc, ctx.obj["debug"])
    if host is None:
        server.run("stdio")
    else:
        serve_http(server, host.strip("[]"), port, config.serve.token())
