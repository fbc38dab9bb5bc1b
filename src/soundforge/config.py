"""Configuration: where settings come from and how they merge.

Sources, later wins: built-in defaults < the user config file (platformdirs config dir, `config.toml`)
< `./soundforge.toml` < the file named by `SOUNDFORGE_CONFIG` < `SOUNDFORGE_*` environment variables
< arguments given in code. Tables merge key by key, so a project file can change one provider setting
without repeating the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigurationError
from .licences.licensing import AdapterLicense
from .licences.policy import LicensePolicy
from .secrets import is_secret_setting, register

if TYPE_CHECKING:
    from .output.signing import C2paSigner

import tomllib

ENV_PREFIX = "SOUNDFORGE_"
PROJECT_FILE = "soundforge.toml"

#: Order in which `auto` considers providers: local and free first, then cloud.
DEFAULT_AUTO_ORDER = (
    "musicgen",
    "stable-audio-3",
    "stable-audio",
    "ace-step",
    "audiogen",
    "magnet",
    "stability",
    "elevenlabs",
    "lyria",
    "replicate",
    "fal",
    "synth",
)


class ServeToken(BaseModel):
    """One more bearer token for `soundforge serve` (`[serve.tokens.NAME]`), with its own limits.

    Like the main token, its value is never written in a file: `token_env` names the variable that holds it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_env: str
    budget_usd: float | None = Field(None, ge=0, description="the most this token's jobs may cost, in USD")
    requests_per_minute: int | None = Field(None, ge=1, description="generation submissions allowed per minute")

    def value(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The token from its environment variable, or None when unset or empty."""
        value = (os.environ if environ is None else environ).get(self.token_env, "")
        register(value)
        return value or None


class RayEngineConfig(BaseModel):
    """One engine deployment of `soundforge serve --ray` (`[serve.ray.engines.FAMILY]`): the replicas that run one
    model family's jobs (a backend name such as `musicgen`; `default` takes every family not named) and what each
    replica reserves. A fixed `replicas` count, or `min_replicas`..`max_replicas` for Ray Serve's autoscaling."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_gpus: float = Field(0, ge=0, description="GPUs each replica reserves (fractions share one)")
    num_cpus: float = Field(1, ge=0, description="CPUs each replica reserves")
    memory_gb: float | None = Field(None, gt=0, description="memory each replica reserves, in GiB")
    replicas: int | None = Field(None, ge=1, description="a fixed number of replicas (default 1)")
    min_replicas: int | None = Field(None, ge=0, description="autoscaling: the fewest replicas")
    max_replicas: int | None = Field(None, ge=1, description="autoscaling: the most replicas")
    max_ongoing_requests: int = Field(8, ge=1, description="jobs one replica runs at once (its batching sees them)")

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> RayEngineConfig:
        scaling = self.min_replicas is not None or self.max_replicas is not None
        if scaling and self.replicas is not None:
            raise ValueError("give either replicas (a fixed count) or min_replicas and max_replicas, not both")
        if scaling and (self.min_replicas or 0) > (self.max_replicas or 1):
            raise ValueError("min_replicas is above max_replicas")
        return self


class RayServeConfig(BaseModel):
    """The `[serve.ray]` section: `soundforge serve --ray` on a Ray cluster (docs/deploy.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(
        "auto", description='the cluster: "auto" (the one this node is in), "local" or ray://HOST:PORT'
    )
    ingress_replicas: int = Field(1, ge=1, le=64, description="replicas of the HTTP ingress")
    http: Literal["proxy", "direct"] = Field(
        "proxy",
        description='who answers HTTP on [serve] host:port: Ray Serve\'s proxy, or "direct": each ingress replica '
        "itself (one hop less per request; one node's replicas share the port, a load balancer spreads nodes)",
    )
    lease_seconds: float = Field(
        30, gt=0, description="an ingress replica silent this long has its unfinished jobs failed by another"
    )
    retry_local: bool = Field(
        True,
        description="a local-model job whose engine replica died is run once more on another; cloud jobs never are "
        "(the first call may have been billed)",
    )
    drain_seconds: float = Field(
        600, gt=0, description="how long a replica being stopped (scaled down, redeployed) may finish its jobs"
    )
    engines: dict[str, RayEngineConfig] = Field(
        default_factory=dict, description="engine deployments by model family; default takes the rest"
    )


class ElevenLabsCompatConfig(BaseModel):
    """`[serve.elevenlabs]`: the ElevenLabs-compatible routes of `soundforge serve` (`/v1/music`,
    `/v1/music/stream`, `/v1/sound-generation`) and the providers that answer them (docs/serve.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="serve the ElevenLabs-compatible routes")
    music: str | None = Field(
        None, description="the provider spec that makes songs (e.g. 'ace-step'); default: the configured default"
    )
    sound_effects: str | None = Field(
        None, description="the provider spec that makes sound effects (e.g. 'stable-audio-3'); default: as above"
    )


class ServeConfig(BaseModel):
    """The `[serve]` section: settings of `soundforge serve` (CLI flags override them).

    The bearer token is never written in a file: `token_env` names the environment variable that holds it.
    `tokens` adds named tokens (`[serve.tokens.team-a]`), each with a budget and a rate limit.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    store: str | None = Field(
        None,
        description="job records and audio: a folder or an fsspec URL such as s3://bucket/jobs (default: the "
        "user data dir)",
    )
    index: str | None = Field(
        None,
        description="the job index: sqlite:///PATH (one node) or postgresql://USER@HOST/DB (several); default: "
        "index.sqlite in a local store",
    )
    index_password_env: str = Field("PGPASSWORD", description="environment variable holding the index's password")
    token_env: str = "SOUNDFORGE_SERVE_TOKEN"
    max_queue: int = Field(64, ge=1)
    workers: int = Field(4, ge=1)
    max_body_mb: float = Field(32, gt=0)
    retention_days: float = Field(7, gt=0)
    cors_origins: tuple[str, ...] = ()
    max_job_seconds: float = Field(
        600, gt=0, description="longest audio one job may ask for (duration x outputs), in seconds"
    )
    adapter_folders: tuple[str, ...] = Field(
        (),
        description="local folders whose style adapters jobs may name (by path inside one); hub ids are accepted "
        "as [providers] allow downloads; any other local path is refused",
    )
    engine: Literal["auto", "process", "inline"] = Field(
        "auto", description="where jobs run: a child engine process (auto on POSIX) or the server's own process"
    )
    tokens: dict[str, ServeToken] = Field(default_factory=dict, description="named tokens with budgets and rate limits")
    engines: (
        Annotated[int, Field(ge=1, le=64)]
        | Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1, max_length=64)]
    ) = Field(
        1,
        description="engine processes: a number (each on the configured devices) or one device per engine, e.g. "
        '["cuda:0", "cuda:1"]; jobs go to an engine that already holds their model',
    )

    ray: RayServeConfig = Field(default_factory=RayServeConfig, description="soundforge serve --ray")
    elevenlabs: ElevenLabsCompatConfig = Field(
        default_factory=ElevenLabsCompatConfig, description="the ElevenLabs-compatible routes"
    )

    def token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The bearer token from the environment variable `token_env`, or None when unset or empty."""
        value = (os.environ if environ is None else environ).get(self.token_env, "")
        register(value)
        return value or None


class Config(BaseModel):
    """All settings of a `Client`.

    Args:
        default_provider: spec used when a call names none (`"auto"` picks the first that fits).
        fallbacks: specs tried in order when the chosen provider fails (unavailable, timeout, 5xx, rate limit).
        aliases: short names for specs, e.g. `{"fast": "synth", "hq": "musicgen:facebook/musicgen-large"}`.
        auto_order: preference order for `auto`.
        strategy: how `auto` orders the providers that fit: "order" (`auto_order`), "cheapest" (by estimated cost,
            local engines first, unknown prices last) or "fastest" (by measured seconds per second of audio).
        cooldown_after: consecutive failures after which a provider is skipped for `cooldown_seconds`.
        cooldown_seconds: how long a failing provider is skipped (0: never).
        providers: per-provider settings (`model`, `device`, `api_key_env`, `base_url`, `timeout`, `plan`, …).
        policy: the licence policy.
        adapters: licences you declare for style adapters, by source as requests name them:
            `[adapters."owner/style-lora"] license = "MIT"`, `reason = "its LICENSE file"` (docs/adapters.md).
        model_memory_gb: memory budget per device for the models local backends keep loaded (GiB); "auto" is
            90 % of a GPU or 80 % of RAM, "off" only bounds each backend by `max_loaded_models`.
        c2pa: C2PA signing (`cert`, `key`, `alg`, `tsa_url`).
        serve: settings of `soundforge serve`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_provider: str = "auto"
    fallbacks: tuple[str, ...] = ()
    aliases: dict[str, str] = Field(default_factory=dict)
    auto_order: tuple[str, ...] = DEFAULT_AUTO_ORDER
    strategy: Literal["order", "cheapest", "fastest"] = "order"
    cooldown_after: int = Field(3, ge=1)
    cooldown_seconds: float = Field(60.0, ge=0)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policy: LicensePolicy = Field(default_factory=lambda: LicensePolicy())
    adapters: dict[str, AdapterLicense] = Field(
        default_factory=dict, description="declared licences of style adapters, by source (docs/adapters.md)"
    )
    model_memory_gb: Annotated[float, Field(gt=0)] | Literal["auto", "off"] = Field(
        "auto", description="model memory budget per device (GiB), 'auto' or 'off'"
    )
    c2pa: dict[str, str] = Field(default_factory=dict, description="cert, key, alg, tsa_url for C2PA signing")
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _register_secrets(self) -> Config:
        """Keys written in provider settings are hidden from every error message from now on."""
        for settings in self.providers.values():
            for key, value in settings.items():
                if isinstance(value, str) and is_secret_setting(key):
                    register(value)
        return self

    def c2pa_signer(self) -> C2paSigner | None:
        """The configured C2PA signer, when `[c2pa]` names a certificate chain and a key."""
        if not self.c2pa:
            return None
        unknown = set(self.c2pa) - {"cert", "key", "alg", "tsa_url"}
        if unknown or "cert" not in self.c2pa or "key" not in self.c2pa:
            raise ConfigurationError(
                "the [c2pa] section needs `cert` and `key` (PEM paths), optionally `alg` "
                f"and `tsa_url`{'; unknown: ' + ', '.join(sorted(unknown)) if unknown else ''}"
            )
        from .output.signing import C2paSigner

        return C2paSigner.from_files(
            self.c2pa["cert"], self.c2pa["key"], self.c2pa.get("alg", "es256"), self.c2pa.get("tsa_url")
        )

    def provider_settings(self, name: str) -> dict[str, Any]:
        """Settings of one provider (empty when none are configured)."""
        return dict(self.providers.get(name, {}))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        user_file: bool = True,
        **overrides: Any,
    ) -> Config:
        """Merge every source in order; `path` is an extra file read after the others, `overrides` win last."""
        environ = os.environ if env is None else env
        layers: list[tuple[str, dict[str, Any]]] = []
        if user_file:
            layers.append(_read_optional(user_config_path()))
        layers.append(_read_optional(Path(cwd or Path.cwd()) / PROJECT_FILE))
        if environ.get(ENV_PREFIX + "CONFIG"):
            layers.append(_read_required(Path(environ[ENV_PREFIX + "CONFIG"])))
        if path is not None:
            layers.append(_read_required(Path(path)))
        layers.append(("environment", _from_env(environ)))
        layers.append(("arguments", overrides))
        merged: dict[str, Any] = {}
        for _, layer in layers:
            merged = _deep_merge(merged, layer)
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            sources = ", ".join(name for name, layer in layers if layer)
            raise ConfigurationError(
                f"invalid configuration (from {sources or 'defaults'}): {_brief(exc)}", hint="see docs/config.md"
            ) from None


def user_config_path() -> Path:
    """The per-user config file (`~/.config/soundforge/config.toml` on Linux)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("soundforge")) / "config.toml"


def _read_optional(path: Path) -> tuple[str, dict[str, Any]]:
    return (str(path), _parse(path)) if path.is_file() else (str(path), {})


def _read_required(path: Path) -> tuple[str, dict[str, Any]]:
    if not path.is_file():
        raise ConfigurationError(f"config file {str(path)!r} does not exist")
    return str(path), _parse(path)


def _parse(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot parse {str(path)!r}: {exc}", hint="the file must be TOML") from None


def _deep_merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _env_value(raw: str) -> Any:
    low = raw.strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """`SOUNDFORGE_PROVIDER`, `SOUNDFORGE_FALLBACKS` (comma list), `SOUNDFORGE_POLICY_<KEY>`,
    `SOUNDFORGE_SERVE_<KEY>` (but `SOUNDFORGE_SERVE_TOKEN`, the token itself) and
    `SOUNDFORGE_<PROVIDER>_<KEY>` (e.g. `SOUNDFORGE_STABLE_AUDIO_DEVICE=cuda`)."""
    from .backends import known_providers

    out: dict[str, Any] = {}
    providers = sorted(known_providers(), key=len, reverse=True)
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :]
        if key == "PROVIDER":
            out["default_provider"] = raw
        elif key == "MODEL_MEMORY_GB":
            out["model_memory_gb"] = _env_value(raw)
        elif key == "SERVE_TOKEN":
            continue  # a secret, read by `soundforge serve` from the variable named by serve.token_env
        elif key.startswith("SERVE_"):
            field = key[len("SERVE_") :].lower()
            out.setdefault("serve", {})[field] = (
                [s.strip() for s in raw.split(",") if s.strip()] if field == "cors_origins" else _env_value(raw)
            )
        elif key == "FALLBACKS":
            out["fallbacks"] = [s.strip() for s in raw.split(",") if s.strip()]
        elif key.startswith("POLICY_"):
            field = key[len("POLICY_") :].lower()
            value: Any = (
                [s.strip() for s in raw.split(",") if s.strip()]
                if field in ("allow", "deny", "attestations")
                else _env_value(raw)
            )
            out.setdefault("policy", {})[field] = value
        else:
            for provider in providers:
                prefix = provider.upper().replace("-", "_") + "_"
                if key.startswith(prefix):
                    out.setdefault("providers", {}).setdefault(provider, {})[key[len(prefix) :].lower()] = _env_value(
                        raw
                    )
                    break
    return out


def _brief(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
