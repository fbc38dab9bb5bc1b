"""`soundforge serve`: an HTTP API and a small web page over the library (extra `soundforge[serve]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run(host: str, port: int, *, config: Any = None, store: str | None = None, token: str | None = None,
        max_queue: int = 64, workers: int = 4) -> None:
    """Start the service with uvicorn (blocking)."""
    import uvicorn
    from platformdirs import user_data_dir

    from ..client import Client
    from .app import ServeSettings, create_app

    settings = ServeSettings(store=Path(store) if store else Path(user_data_dir("soundforge")) / "jobs",
                             token=token, max_queue=max_queue, workers=workers)
    uvicorn.run(create_app(Client(config), settings), host=host, port=port, log_level="info")
