"""`soundforge serve --ray`: the same HTTP API as a Ray Serve application, for several GPUs and several boxes.

Ray Serve applications (`[serve.ray]`, docs/deploy.md):
- `soundforge`, the ingress (`Ingress`): the very app `create_app` builds (routes, validation, licence policy,
  budgets, auth, the queue), with `RayEngine` as its engine; the policy and budgets are checked there, before any
  engine is touched. Its job store is shared (`shared=True`): any ingress replica answers for any job.
- `soundforge-engine-FAMILY`, one per model family (deployment `engine`, class `EngineReplica`; family `default`
  takes the ones not named), each with its own resources and replicas: a MusicGen-large replica and an ACE-Step
  replica live on the GPUs that fit them. A replica runs several jobs at once on one client, so its batching still
  meets them. The ingress finds them by name: an engine is rescaled or redeployed without touching it.

A job's engine call is a streaming Ray Serve request: progress, streamed chunks and the outcome come back on it,
and cancelling the job cancels the request (the replica's job stops at its next step). When a replica dies mid-job
the job is run once more on another replica if every provider it may reach is local (`[serve.ray] retry_local`);
a job that may reach a cloud API is failed instead, because the first call may already have been billed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ..backends import CancelToken
from ..errors import ConfigurationError, EngineStoppedError, GenerationCancelledError
from .engine import ChunkFn, JobOutcome, JobSpec, ProgressFn, run_reporting
from .settings import ServeSettings

if TYPE_CHECKING:
    from ..client import Client
    from ..config import Config, RayEngineConfig

log = logging.getLogger("soundforge.serve")
#: The engine deployment that runs every family `[serve.ray.engines]` does not name.
DEFAULT_FAMILY = "default"
APP_NAME = "soundforge"
ENGINE_DEPLOYMENT = "engine"
#: What an engine replica's death looks like to the ingress (a replica killed, its node gone).
_LOST = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError")


def ray_serve() -> Any:
    """Ray Serve, or a ConfigurationError that says how to install it."""
    try:
        from ray import serve
    except ImportError:
        raise ConfigurationError(
            "soundforge serve --ray needs Ray Serve: pip install 'soundforge[ray-serve]'"
        ) from None
    return serve


class EngineReplica:
    """One replica of an engine deployment: the library's async client (its model cache, batching and cloud
    bounds), running the jobs the ingress sends it."""

    def __init__(self, spec: bytes) -> None:
        from ..client import Client

        config, registry = pickle.loads(spec)
        self.client = Client(config, registry=registry)
        self.replica = ray_serve().get_replica_context().replica_id.unique_id

    async def run(self, spec: JobSpec) -> AsyncIterator[tuple[Any, ...]]:
        """Run one job, its audio written to `audio_target`; yields ("progress", phase, done, total), ("chunk",
        offset, sample rate, channels, samples) for a streamed job, and last ("ended", its `JobOutcome`). A
        cancelled request stops the job at its next step."""
        messages: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()
        token = CancelToken()
        task = asyncio.create_task(
            run_reporting(self.client, spec, token, lambda *message: messages.put_nowait(message))
        )
        task.add_done_callback(lambda _: messages.put_nowait(None))
        try:
            while (message := await messages.get()) is not None:
                yield message
            outcome = task.result()
            yield ("ended", dataclasses.replace(outcome, replica=self.replica))
        finally:
            if not task.done():  # the ingress cancelled the request (or went away): stop the job
                token.cancel()


def _lost(exc: BaseException) -> bool:
    """Whether an exception from an engine call means its replica died."""
    return any(kind.__name__ in _LOST for kind in type(exc).__mro__)


class RayEngine:
    """The ingress side: sends each job to its family's engine deployment and follows it there."""

    mode = "ray"

    def __init__(self, handles: dict[str, Any], retry_local: bool = True) -> None:
        self.handles = handles
        self.retry_local = retry_local
        self._running: dict[str, Any] = {}  # job id -> its streaming engine request

    async def start(self) -> None:
        """Nothing to start: Ray Serve runs the engine deployments."""

    async def run(
        self, spec: JobSpec, token: CancelToken, on_progress: ProgressFn, on_chunk: ChunkFn | None = None
    ) -> JobOutcome:
        """Run one job on its family's deployment; once more on another replica when its replica died and every
        provider it may reach is local (and it is not streamed: its listeners heard the first take). Never raises
        for the job's own failures."""
        job_id = spec.job_id
        # The family is the backend admission's plan chose: the ingress never plans a job again.
        handle = self.handles.get(spec.backend) or self.handles[DEFAULT_FAMILY]
        attempts = 2 if self.retry_local and spec.local_only and not spec.streamed else 1
        lost: BaseException | None = None
        for attempt in range(attempts):
            if token.cancelled:
                break
            if attempt:
                log.warning("job %s: its engine replica stopped (%s); running it once more", job_id, lost)
            response = handle.options(stream=True).run.remote(spec)
            self._running[job_id] = response
            try:
                async for kind, *rest in response:
                    if kind == "progress":
                        on_progress(*rest)
                    elif kind == "chunk" and on_chunk is not None:
                        on_chunk(*rest)
                    elif kind == "ended":
                        outcome: JobOutcome = rest[0]
                        return dataclasses.replace(outcome, attempts=attempt + 1)
            except Exception as exc:
                if token.cancelled:
                    break
                if not _lost(exc):
                    raise
                lost = exc
            finally:
                self._running.pop(job_id, None)
        if token.cancelled:
            return JobOutcome(
                "cancelled", error=GenerationCancelledError("generation cancelled by the caller").to_dict()
            )
        if attempts > 1:
            note = ", and again on another"
        elif not spec.local_only:
            note = " (not run again: it may reach a cloud API, whose first call may already be billed)"
        elif spec.streamed:
            note = " (not run again: its stream was already heard)"
        else:
            note = " (not run again: [serve.ray] retry_local is off)"
        return JobOutcome(
            "failed",
            attempts=attempts,
            error={
                **EngineStoppedError(f"the engine replica stopped before this job finished{note}; try again").to_dict(),
                "detail": type(lost).__name__ if lost else None,
            },
        )

    def cancel(self, job_id: str) -> None:
        """Cancel a running job's engine request: its replica stops the job at its next step."""
        response = self._running.get(job_id)
        if response is not None:
            response.cancel()

    async def close(self) -> None:
        """Cancel what runs; the deployments stay (Ray Serve owns them)."""
        for response in list(self._running.values()):
            response.cancel()


class Ingress:
    """The HTTP ingress deployment: `create_app` over a shared store, its jobs run by `RayEngine` on the engine
    applications it finds by name (so that redeploying or rescaling an engine never restarts the ingress)."""

    def __init__(
        self,
        spec: bytes,
        settings: ServeSettings,
        families: list[str],
        retry_local: bool,
        direct: tuple[str, int] | None = None,
    ) -> None:
        self._spec = spec
        self._settings = dataclasses.replace(settings, shared=True)
        self._families = families
        self._retry_local = retry_local
        self._direct = direct

    def __serve_build_asgi_app__(self) -> Any:
        """Build the app in the replica (Ray Serve calls this once the replica has started)."""
        from ..client import Client
        from .app import create_app

        serve = ray_serve()
        config, registry = pickle.loads(self._spec)
        client = Client(config, registry=registry)
        handles = {
            family: serve.get_deployment_handle(ENGINE_DEPLOYMENT, app_name=engine_app_name(family))
            for family in self._families
        }
        engine = RayEngine(handles, self._retry_local)
        app = create_app(client, self._settings, engine)
        if self._direct is not None:
            _serve_directly(app, *self._direct)
        return app


def _quiet_server(app: Any) -> Any:
    """A uvicorn server for `app` that leaves signals alone: a replica's signals are Ray's to handle."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))


def _serve_directly(app: Any, host: str, port: int) -> None:
    """`[serve.ray] http = "direct"`: the replica answers HTTP on HOST:PORT itself, beside Ray's proxy, while its
    app runs (several replicas on one node share the port: SO_REUSEPORT, the kernel spreads connections)."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
            server = _quiet_server(app)
            task = asyncio.create_task(server.serve(sockets=[listener]))
            try:
                yield state
            finally:
                server.should_exit = True
                await task
                listener.close()

    app.router.lifespan_context = lifespan


#: How often a stopping replica looks whether its last request has ended: Ray Serve's default, 2 s, made every stop
#: (an undeploy, a drain, Ctrl+C) take at least 2 s per deployment with nothing left to wait for.
STOP_CHECK_S = 0.25
#: How often Ray Serve's controller checks each replica: it is how a killed replica is noticed and replaced (Ray's
#: default, 10 s, left a killed replica's jobs waiting about 11 s for a new one here; 1 s, about 3 s).
HEALTH_CHECK_S = 1.0


def engine_app_name(family: str) -> str:
    """The Ray Serve application of one family's engine deployment."""
    return f"{APP_NAME}-engine-{family}"


def _engine_options(engine: RayEngineConfig, drain_s: float) -> dict[str, Any]:
    """Ray Serve deployment options for one family's engine deployment."""
    actor: dict[str, Any] = {"num_cpus": engine.num_cpus, "num_gpus": engine.num_gpus}
    if engine.memory_gb is not None:
        actor["memory"] = int(engine.memory_gb * 1024**3)
    options: dict[str, Any] = {
        "name": ENGINE_DEPLOYMENT,
        "ray_actor_options": actor,
        "max_ongoing_requests": engine.max_ongoing_requests,
        "graceful_shutdown_timeout_s": drain_s,  # a replica that drains finishes the jobs it runs
        "graceful_shutdown_wait_loop_s": STOP_CHECK_S,
        "health_check_period_s": HEALTH_CHECK_S,
    }
    if engine.min_replicas is not None or engine.max_replicas is not None:
        options["autoscaling_config"] = {
            "min_replicas": engine.min_replicas or 0,
            "max_replicas": engine.max_replicas or max(1, engine.min_replicas or 1),
            "target_ongoing_requests": max(1, engine.max_ongoing_requests // 2),
        }
    else:
        options["num_replicas"] = engine.replicas or 1
    return options


def build_applications(config: Config, settings: ServeSettings, client: Client | None = None) -> dict[str, Any]:
    """The Ray Serve applications by name: one per model family's engine deployment (`[serve.ray.engines]`, plus
    `default`), then the ingress (routed at `/`). Settings are checked here, before any cluster is reached.

    `config` is what the replicas' clients are made from (providers, policy, keys); every `[serve]` value, Ray's
    included, is read from `settings` alone (where the command line's flags were applied), never `config.serve`."""
    from ..client import Client
    from ..config import RayEngineConfig

    serve = ray_serve()
    ray_config = settings.config.ray  # [serve] is read from the settings alone: the flags are applied there
    if ray_config.ingress_replicas > 1 and any(limit or rate for _, limit, rate in settings.tokens.values()):
        raise ConfigurationError(
            "[serve.tokens] budgets and rate limits are counted in the ingress replica that admits a job: with "
            f"ingress_replicas = {ray_config.ingress_replicas} each replica would allow the whole budget; use one "
            "ingress replica, or tokens without limits"
        )
    client = client or Client(config)
    if client.has_own_backends:
        raise ConfigurationError(
            "backends given to Client(backends=...) exist only in this process, not in Ray's replicas: register "
            "them as entry points to serve them on Ray"
        )
    unknown = sorted(set(ray_config.engines) - {DEFAULT_FAMILY, *client.provider_names()})
    if unknown:
        raise ConfigurationError(
            f"[serve.ray.engines] names no provider {', '.join(unknown)}: a family is a provider name "
            f"({', '.join(client.provider_names())}) or {DEFAULT_FAMILY}"
        )
    spec = pickle.dumps((client.config, client.registry), protocol=pickle.HIGHEST_PROTOCOL)
    families = {DEFAULT_FAMILY: RayEngineConfig(), **ray_config.engines}
    applications = {
        engine_app_name(family): serve.deployment(EngineReplica)
        .options(**_engine_options(engine, ray_config.drain_seconds))
        .bind(spec)
        for family, engine in families.items()
    }
    ingress = serve.deployment(serve.ingress()(Ingress)).options(
        name="ingress",
        num_replicas=ray_config.ingress_replicas,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=1000,  # long polls and downloads wait here; the job queue bounds the work
        graceful_shutdown_timeout_s=30,
        graceful_shutdown_wait_loop_s=STOP_CHECK_S,
        health_check_period_s=HEALTH_CHECK_S,
    )
    direct = (settings.config.host, settings.config.port) if ray_config.http == "direct" else None
    applications[APP_NAME] = ingress.bind(spec, settings, list(families), ray_config.retry_local, direct)
    return applications


def deploy(config: Config, settings: ServeSettings, client: Client | None = None) -> None:
    """Run the applications on the Ray cluster this process is connected to, all at once, and return when every
    one is running; an application already running under the same name is updated (an engine's replicas drain).

    One `serve.run_many` call starts every application's replicas together (Ray Serve's "bulk imperative deploy",
    ray-project/ray#49168), where one `serve.run` per application started them one after the other, each waited
    for by Ray's client in whole seconds."""
    serve = ray_serve()
    applications = build_applications(config, settings, client)
    targets = [
        serve.RunTarget(
            target=application,
            name=name,
            route_prefix="/" if name == APP_NAME and settings.config.ray.http == "proxy" else None,
            # Ray Serve logs every request at INFO in the proxy and the replica; the service's own log says what
            # matters, and the per-request lines cost each job time on a busy machine.
            logging_config={"log_level": "WARNING", "enable_access_log": False},
        )
        for name, application in applications.items()
    ]
    serve.run_many(targets, wait_for_applications_running=False)
    _wait_for_applications(serve, list(applications), deleted=False)


def undeploy() -> None:
    """Delete soundforge's applications from the cluster, the ingress first (no job reaches an engine that is
    being stopped), and return when they are gone."""
    serve = ray_serve()
    names = [name for name in serve.status().applications if name == APP_NAME or name.startswith(f"{APP_NAME}-")]
    for group in ([name for name in names if name == APP_NAME], [name for name in names if name != APP_NAME]):
        for name in group:
            serve.delete(name, _blocking=False)  # waited for below, more finely than Ray's once-a-second poll
        _wait_for_applications(serve, group, deleted=True)


#: How often deploy and undeploy look at the applications' status.
_STATUS_POLL_S = 0.05


def _wait_for_applications(serve: Any, names: list[str], *, deleted: bool) -> None:
    """Wait until every named application is running (or, `deleted`, gone): Ray Serve's controller ends both,
    a replica that cannot start by failing the deployment (raised here, as `serve.run` would) and a replica that
    drains by stopping it after its graceful_shutdown_timeout_s at the latest."""
    from ray.serve.schema import ApplicationStatus

    pending = set(names)
    while pending:
        applications = serve.status().applications
        for name in list(pending):
            status = applications.get(name)
            if deleted:
                done = status is None or status.status == ApplicationStatus.NOT_STARTED
            elif status is None:
                raise RuntimeError(f"Application {name} was deleted while it deployed")
            elif status.status == ApplicationStatus.DEPLOY_FAILED:
                raise RuntimeError(f"Deploying application {name} failed: {status.message}")
            else:
                done = status.status == ApplicationStatus.RUNNING
            if done:
                pending.discard(name)
        if pending:
            time.sleep(_STATUS_POLL_S)


def run(config: Config, settings: ServeSettings, *, address: str, host: str, port: int) -> None:
    """Join (or start, `address="local"`) a Ray cluster and run the applications on Ray Serve's HTTP proxy until
    interrupted. The applications are built (and the settings checked) before the cluster is reached."""
    serve = ray_serve()
    import ray

    build_applications(config, settings)
    if address == "local":
        # Ray starts its workers at niceness 15, as background work; here they are the service itself, and on a
        # busy machine that priority alone cost a third more wall time per job (docs/deploy.md).
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address, include_dashboard=False)  # "local" starts a new cluster, whatever else runs
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot join the Ray cluster at {address!r}: {exc}",
            hint="start one with `ray start --head`, pass its address (ray://HOST:10001), or use --ray local",
        ) from None
    stop = threading.Event()
    try:
        if settings.config.ray.http == "direct":  # the ingress replicas listen themselves: no proxy on the port
            settings = settings.with_fields(host=host, port=port)
            serve.start(http_options={"location": "NoServer"})
        else:
            serve.start(http_options={"host": host, "port": port})
        deploy(config, settings)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a service manager's stop: the same clean end
        log.warning("soundforge is served by Ray Serve at http://%s:%s/ (Ctrl+C stops it)", host, port)
        stop.wait()
    except KeyboardInterrupt:  # Ctrl+C, while deploying or serving
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not cut the clean-up short
        undeploy()
