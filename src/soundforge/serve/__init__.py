"""`soundforge serve`: an HTTP API and a small web page over the library (extra `soundforge[serve]`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Config


def run(config: Config, *, host: str | None = None, port: int | None = None, **overrides: Any) -> None:
    """Start the service with uvicorn (blocking); `[serve]` in `config` gives the settings, arguments override."""
    import uvicorn

    from ..client import Client
    from .app import create_app
    from .settings import ServeSettings

    settings = ServeSettings.from_config(config.serve, **overrides)
    uvicorn.run(
        create_app(Client(config), settings),
        host=host or config.serve.host,
        port=config.serve.port if port is None else port,
        log_level="info",
    )


def run_on_ray(
    config: Config, *, address: str, host: str | None = None, port: int | None = None, **overrides: Any
) -> None:
    """Run the service as a Ray Serve application on the cluster at `address` (blocking; docs/deploy.md)."""
    from .ray_app import run as run_application
    from .settings import ServeSettings

    settings = ServeSettings.from_config(config.serve, **overrides)
    run_application(
        config,
        settings,
        address=address,
        host=host or config.serve.host,
        port=config.serve.port if port is None else port,
    )
