"""`ServeSettings`: the `[serve]` section (`ServeConfig`) as the running service uses it.

One field list: the settings a user can write live in `ServeConfig` only. `ServeSettings` holds that section (with
the command line's flags applied to it) and the few facts resolved at start: where the store is, the token's value,
each engine's device, the named tokens' values, and whether replicas share the store. What the service needs in
other units (bytes, seconds) is read through properties, never copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ServeConfig
from ..errors import ConfigurationError

#: Named tokens as the service checks them: the token's value -> (its name, budget in USD or None, submissions
#: per minute or None).
Tokens = dict[str, tuple[str, float | None, int | None]]


@dataclass(frozen=True, init=False)
class ServeSettings:
    """The service's settings: `config` (`[serve]`, flags applied) and what was resolved from it at start.

    `ServeSettings(store=..., engine="inline", max_job_seconds=5)` sets `[serve]` fields by name (checked as the
    config file's are); `from_config` is how the command line makes them.
    """

    store: str | Path  # a folder or an fsspec URL
    config: ServeConfig
    token: str | None
    #: One entry per engine process: the device it is given (what `device = "auto"` means there), or None.
    engines: tuple[str | None, ...]
    #: Several replicas share the store (Ray Serve): running state goes to the index, leases end lost jobs.
    shared: bool
    tokens: Tokens = field(repr=False)

    def __init__(
        self,
        store: str | Path,
        *,
        config: ServeConfig | None = None,
        token: str | None = None,
        engines: tuple[str | None, ...] = (None,),
        shared: bool = False,
        tokens: Tokens | None = None,
        **fields: Any,
    ) -> None:
        section = config or ServeConfig()
        if fields:
            section = _with(section, fields)
        for name, value in (
            ("store", store),
            ("config", section),
            ("token", token),
            ("engines", engines),
            ("shared", shared),
            ("tokens", dict(tokens or {})),
        ):
            object.__setattr__(self, name, value)

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
        flags: dict[str, Any] = {"max_queue": max_queue, "workers": workers, "engine": engine, "index": index}
        return cls(
            store=folder if isinstance(folder, str) and "://" in folder else Path(folder),
            config=serve,
            token=token or serve.token(),
            engines=devices,
            tokens={
                value: (name, entry.budget_usd, entry.requests_per_minute)
                for name, entry in serve.tokens.items()
                if (value := entry.value()) is not None
            },
            **{name: value for name, value in flags.items() if value is not None},
        )

    def with_fields(self, **fields: Any) -> ServeSettings:
        """These settings with some `[serve]` fields set (checked as the config file's are)."""
        return ServeSettings(
            self.store,
            config=_with(self.config, fields),
            token=self.token,
            engines=self.engines,
            shared=self.shared,
            tokens=self.tokens,
        )

    # --- [serve] as the service reads it ---
    @property
    def max_queue(self) -> int:
        return self.config.max_queue

    @property
    def workers(self) -> int:
        return self.config.workers

    @property
    def max_body_bytes(self) -> int:
        return int(self.config.max_body_mb * 1024 * 1024)

    @property
    def retention_s(self) -> float:
        return self.config.retention_days * 86400

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return self.config.cors_origins

    @property
    def engine(self) -> str:
        """Where jobs run: "auto", "process" (a child process) or "inline" (the server's own)."""
        return self.config.engine

    @property
    def adapter_folders(self) -> tuple[str, ...]:
        """Local folders whose adapters jobs may name (`[serve] adapter_folders`)."""
        return self.config.adapter_folders

    @property
    def max_job_seconds(self) -> float:
        """The most audio one job may ask for."""
        return self.config.max_job_seconds

    @property
    def index(self) -> str | None:
        """sqlite:///PATH or postgresql://USER@HOST/DB; None: index.sqlite in a local store."""
        return self.config.index

    @property
    def index_password_env(self) -> str:
        return self.config.index_password_env

    @property
    def lease_s(self) -> float:
        return self.config.ray.lease_seconds


def _with(section: ServeConfig, fields: dict[str, Any]) -> ServeConfig:
    """`section` with some fields set, checked as the config file's are."""
    from pydantic import ValidationError

    unknown = sorted(set(fields) - set(ServeConfig.model_fields))
    if unknown:
        raise TypeError(f"ServeSettings got unknown [serve] fields: {', '.join(unknown)}")
    try:
        return ServeConfig.model_validate({**section.model_dump(), **fields})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid [serve] settings: {problems}") from None
