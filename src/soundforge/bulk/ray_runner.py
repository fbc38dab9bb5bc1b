"""Rows on a Ray cluster: one actor per local model per GPU (the model loads once, concurrent rows batch inside it),
cloud rows as Ray tasks, every file written by the worker to the shared output location.

The driver keeps the journal and the concurrency bound (cluster-wide: it is the only submitter). Actors restart
when their process dies and Ray retries the rows they held; a retried row whose file already verifies is not
generated again (`produce`), so every row ends up delivered exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .executors import Outcome, Target, produce
from .manifest import BatchRow
from .output import OutputLocation

if TYPE_CHECKING:
    from ..config import Config

RESTARTS = 4  # how often an actor may be restarted (and its rows retried) after its process died


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "the Ray runner needs Ray: pip install 'soundforge[ray]' (or run without --ray)"
        ) from None
    return ray


class RowWorker:
    """A Ray actor holding one client (so one loaded model) and generating the rows sent to it.

    Its methods are coroutines, so Ray runs several rows at once inside it and the client's scheduler batches
    compatible ones into one forward pass.
    """

    def __init__(self, config: Config, out_url: str) -> None:
        from ..client import Client

        self.client = Client(config)
        self.out = OutputLocation(out_url)
        self.sign = config.c2pa_signer()

    async def generate(self, row: BatchRow, spec: str | None) -> Outcome:
        """Generate one row and write its file."""
        return await produce(self.client, row, spec, self.out, self.sign)


def cloud_row(config: Config, out_url: str, row: BatchRow, spec: str | None) -> Outcome:
    """A Ray task for one cloud row: the request goes out from whichever node runs it."""
    from ..client import Client

    client = Client(config)
    try:
        return asyncio.run(produce(client, row, spec, OutputLocation(out_url), config.c2pa_signer()))
    finally:
        client.close()


class RayExecutor:
    """Runs rows on Ray: starts a local cluster (`address="local"`) or joins one ("auto", "ray://host:10001").

    Args:
        config: the driver's configuration, shipped to every worker (API keys included: use a cluster you trust).
        out: where workers write; on a multi-node cluster it must be a location every node can reach.
        workers: actors per local model when the cluster has no GPUs (default 2).
        concurrency: rows each actor may hold at once.
        targets: where the rows will go (to size the actors' share of the cluster).
    """

    def __init__(
        self,
        config: Config,
        out: OutputLocation,
        *,
        address: str | None,
        workers: int | None,
        concurrency: int,
        targets: list[Target],
    ) -> None:
        ray = self.ray = _ray()
        self.started_cluster = False
        if not ray.is_initialized():
            if address in (None, "", "local"):  # this machine's CPUs and GPUs, as Ray detects them
                ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024 * 1024)
                self.started_cluster = True
            else:
                ray.init(address=address, log_to_driver=False)
        self.config = config
        self.out = out
        self.concurrency = concurrency
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        models = sorted({(t.provider, t.model) for t in targets if t.local})
        self.actors_per_model = self.gpus or max(1, workers or 2)
        share = 1 / max(1, len(models))
        if self.gpus:  # one actor per model per GPU; models share each GPU
            self.actor_options = {"num_gpus": share, "num_cpus": 0}
        else:  # the CPUs split evenly between the actors of every model
            cpus = float(resources.get("CPU", 1))
            self.actor_options = {"num_cpus": cpus * share / self.actors_per_model}
        self.pools: dict[tuple[str, str], itertools.cycle[Any]] = {}
        self.actors: list[Any] = []
        self._cloud_task = ray.remote(cloud_row).options(num_cpus=0, max_retries=RESTARTS)

    def _pool(self, target: Target) -> itertools.cycle[Any]:
        key = (target.provider, target.model)
        if key not in self.pools:
            actor_class = self.ray.remote(RowWorker).options(
                max_restarts=RESTARTS,
                max_task_retries=RESTARTS,
                max_concurrency=max(1, self.concurrency),
                **self.actor_options,
            )
            actors = [actor_class.remote(self.config, self.out.url) for _ in range(self.actors_per_model)]
            self.actors.extend(actors)
            self.pools[key] = itertools.cycle(actors)
        return self.pools[key]

    async def run(self, row: BatchRow, spec: str | None, target: Target) -> Outcome:
        """Send one row to its model's next actor (local) or to a Ray task (cloud) and wait for its outcome."""
        if target.local:
            ref = next(self._pool(target)).generate.remote(row, spec)
        else:
            ref = self._cloud_task.remote(self.config, self.out.url, row, spec)
        try:
            outcome: Outcome = await ref
        except self.ray.exceptions.RayError as exc:  # a worker died more often than Ray retries, or a task crashed
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Outcome(error=f"Ray: {first_line}")
        return outcome

    def close(self) -> None:
        """Stop the actors, and the cluster when this executor started it."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors.clear()
        self.pools.clear()
        if self.started_cluster:
            self.ray.shutdown()
