"""The `soundforge` command: a thin shell over the library, one module per family of commands (`make`: generate
and separate; `files`: providers, info, verify; `service`: serve, batch, jobs; `agents`: mcp; `codec`). Every rule
it applies is the library's; the shell parses options, shows progress and maps errors to exit codes."""

from __future__ import annotations

from . import agents, codec, files, make, service  # noqa: F401  (each registers its commands on `cli`)
from .app import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_MODIFIED,
    EXIT_NO_WATERMARK,
    EXIT_POLICY,
    EXIT_PROVIDER,
    EXIT_USAGE,
    cli,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_MODIFIED",
    "EXIT_NO_WATERMARK",
    "EXIT_POLICY",
    "EXIT_PROVIDER",
    "EXIT_USAGE",
    "cli",
    "main",
]


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="soundforge")


if __name__ == "__main__":  # pragma: no cover
    main()
