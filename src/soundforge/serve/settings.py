"""`ServeSettings`: the `[serve]` section resolved into what the running service uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import ServeConfig

_DEFAULTS = ServeConfig()


@dataclass
class ServeSettings:
    """Service settings as the server runs with them: `[serve]` (`ServeConfig`) resolved (the store's folder, the
    token's value, sizes in bytes and seconds), CLI flags winning. The defaults are `ServeConfig`'s."""

    store: str | Path  # a folder or an fsspec URL
    token: str | None = None
    max_queue: int = _DEFAULTS.max_queue
    workers: int = _DEFAULTS.workers
    max_body_bytes: int = int(_DEFAULTS.max_body_mb * 1024 * 1024)
    retention_s: float = _DEFAULTS.retention_days * 86400
    cors_origins: tuple[str, ...] = _DEFAULTS.cors_origins
    engine: str = _DEFAULTS.engine  # "process" (auto on POSIX): jobs in a child process; "inline": in this one
    max_job_seconds: float = _DEFAULTS.max_job_seconds  # the most audio one job may ask for
    #: One entry per engine process: the device it is given (what `device = "auto"` means there), or None.
    engines: tuple[str | None, ...] = (None,)
    index: str | None = None  # sqlite:///PATH or postgresql://USER@HOST/DB; None: index.sqlite in a local store
    index_password_env: str = _DEFAULTS.index_password_env
    #: Several replicas share the store (Ray Serve): running state goes to the index, leases end lost jobs.
    shared: bool = False
    lease_s: float = _DEFAULTS.ray.lease_seconds
    #: Named tokens: value -> (name, budget in USD or None, submissions per minute or None).
    tokens: dict[str, tuple[str, float | None, int | None]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(
        cls,
        serve: ServeConfig,
        *,
        store: str | Path | None = None,
        token: str | None = None,
        max_queue: int | None = None,
        workers: int | None = None,
        engine: str | None = None,
        engines: int | tuple[str, ...] | None = None,
        index: str | None = None,
    ) -> ServeSettings:
        """Settings from the `[serve]` section, with explicit arguments (CLI flags) winning."""
        from platformdirs import user_data_dir

        folder = store or serve.store or Path(user_data_dir("soundforge")) / "jobs"
        asked = serve.engines if engines is None else engines
        devices: tuple[str | None, ...] = (None,) * asked if isinstance(asked, int) else tuple(asked)
        return cls(
            store=folder if isinstance(folder, str) and "://" in folder else Path(folder),
            token=token or serve.token(),
            max_queue=serve.max_queue if max_queue is None else max_queue,
            workers=serve.workers if workers is None else workers,
            max_body_bytes=int(serve.max_body_mb * 1024 * 1024),
            retention_s=serve.retention_days * 86400,
            cors_origins=tuple(serve.cors_origins),
            engine=engine or serve.engine,
            max_job_seconds=serve.max_job_seconds,
            engines=devices,
            index=index or serve.index,
            index_password_env=serve.index_password_env,
            lease_s=serve.ray.lease_seconds,
            tokens={
                value: (name, entry.budget_usd, entry.requests_per_minute)
                for name, entry in serve.tokens.items()
                if (value := entry.value()) is not None
            },
        )
