"""`DiffusionPipelineEngine`: what every engine that runs a diffusers pipeline from a `save_pretrained` folder
shares, written once (Stable Audio Open, Stable Audio 3, ACE-Step).

An engine names its packages, the diffusers release it needs and its install hint, and may add an access note to
missing weights (a gated repository) or refuse downloads (weights published in a layout diffusers cannot load);
it keeps only "load this folder" (with `load_pipeline`) and "run this request".
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..errors import AdapterError, ConfigurationError
from .adapters import TRAINED_FOR_IT, counted, misfit, require_peft
from .base import AdapterWeights, Availability, RawGeneration, fit_length
from .devices import check_device_dtype, dtype_name
from .local import LocalEngine, batch_generation
from .runtime import (
    Batcher,
    ModelMemory,
    checkpoint_availability,
    missing_modules,
    pick_dtype,
    resolve_checkpoint,
    weights_on_disk,
)

L = TypeVar("L")
I = TypeVar("I")  # noqa: E741 - the batcher's item type, as in `Batcher`
R = TypeVar("R")

#: The file that marks a diffusers pipeline folder.
MARKER = "model_index.json"


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


class DiffusionPipelineEngine(LocalEngine[L]):
    """A local engine over a diffusers pipeline folder (from a path or the Hugging Face cache)."""

    name = "diffusers"
    #: Packages the engine imports, checked without importing them.
    packages: ClassVar[tuple[str, ...]] = ("torch", "diffusers", "transformers")
    #: The first diffusers release with the engine's pipelines (read from the package metadata: importing
    #: diffusers to look would take seconds).
    min_diffusers: ClassVar[tuple[int, ...]] = (0, 0)
    #: The install command that brings them.
    install: ClassVar[str] = ""
    #: Whether a missing hub checkpoint may be downloaded (False for weights diffusers cannot load as published).
    downloads: ClassVar[bool] = True
    #: The file that marks the engine's checkpoint folder (a modular pipeline's is `modular_model_index.json`).
    marker: ClassVar[str] = MARKER

    def pull_note(self, model: str) -> str:
        if self.downloads:
            return ""
        return (
            "its published weights are not in diffusers' layout: convert them first (see its page in docs/providers/)"
        )

    def access_note(self, model: str) -> str:
        """Said before the download hint of missing weights (how to get access to a gated repository)."""
        return ""

    def availability(self) -> Availability:
        missing = missing_modules(*self.packages)
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed", fix=self.install)
        installed = importlib.metadata.version("diffusers")
        if _release(installed) < self.min_diffusers:
            wanted = ".".join(map(str, self.min_diffusers))
            return Availability(
                False,
                f"diffusers {installed} is older than {wanted}, the first with these pipelines",
                fix=f"{self.install} --upgrade",
            )
        return Availability(True)

    def model_availability(self, model: str, *, allow_fetch: bool) -> Availability:
        return checkpoint_availability(
            self.owner.name,
            model,
            self.settings,
            marker=self.marker,
            allow_fetch=allow_fetch and self.downloads,
            access_note=self.access_note(model),
        )

    def folder(self, model: str) -> str:
        """The pipeline folder of `model` (downloaded first where that is allowed)."""
        return resolve_checkpoint(
            self.owner.name,
            model,
            self.settings,
            marker=self.marker,
            allow_fetch=self.downloads,
            access_note=self.access_note(model),
        )

    def weights_size(self, model: str) -> int:
        return weights_on_disk(self.folder(model))

    def torch_dtype(self, device: str) -> Any:
        """The torch dtype of the `dtype` setting on `device`, checked against the known-bad device/dtype pairs."""
        setting = str(self.settings.get("dtype", "auto"))
        dtype = check_device_dtype(self.name, device, setting, dtype_name(setting, device), provider=self.owner.name)
        return pick_dtype(dtype, device)

    def load_pipeline(self, pipeline_class: Any, folder: str, device: str) -> Any:
        """`pipeline_class.from_pretrained(folder)` on `device` in the configured dtype (checked against the
        known-bad device/dtype pairs), progress bars off."""
        pipeline = pipeline_class.from_pretrained(folder, dtype=self.torch_dtype(device), local_files_only=True)
        pipeline = pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def finish(
        self, audio: Any, *, loaded: Any, duration: float, seed: int, parameters: dict[str, Any], load_seconds: float
    ) -> RawGeneration:
        """The result of a pipeline call: numpy (rows, channels, samples) fitted to `duration` exactly, one track a
        row; `loaded` has the pipeline's `sample_rate`, `device` and `revision`."""
        import diffusers
        import torch

        fitted = fit_length(np.asarray(audio, dtype=np.float32), round(duration * loaded.sample_rate))
        return batch_generation(
            fitted,
            sample_rate=loaded.sample_rate,
            seed=seed,
            parameters=parameters,
            device=loaded.device,
            load_seconds=load_seconds,
            revision=loaded.revision,
            engine_versions={"torch": torch.__version__, "diffusers": diffusers.__version__},
        )

    def batcher(self, run_batch: Callable[[list[I]], list[R]]) -> Batcher[I, R]:
        """A batcher with the provider's `batch_window` and `max_batch_size` settings."""
        return Batcher(
            run_batch,
            window=float(self.settings.get("batch_window", 0.02)),
            max_batch=int(self.settings.get("max_batch_size", 8)),
        )

    def batching_setting(self, default: bool | str) -> bool | str:
        """The `batching` setting: true, false, or "auto" where the engine offers it (checked)."""
        setting: bool | str = self.settings.get("batching", default)
        if not (isinstance(setting, bool) or (default == "auto" and setting == "auto")):
            choices = 'true, false or "auto"' if default == "auto" else "true or false"
            raise ConfigurationError(f"[providers.{self.owner.name}] batching must be {choices}, not {setting!r}")
        return setting


@contextmanager
def lora_adapters(
    pipeline: Any,
    adapters: tuple[AdapterWeights, ...],
    *,
    provider: str,
    memory: ModelMemory | None = None,
    device: str = "cpu",
) -> Iterator[None]:
    """Load `adapters` into a diffusers pipeline with its own LoRA loader (`load_lora_weights`, `set_adapters` at
    their scales) for the body of the block, then unload them, so the pipeline is the base model again.

    The caller holds the pipeline's lock. An adapter that cannot be loaded (not for this model: shapes that differ;
    keys that match none of its modules) raises `AdapterError` before anything is generated, the pipeline unloaded
    as it was. Nothing happens without adapters.
    """
    if not adapters:
        yield
        return
    require_peft(provider)
    names = [f"soundforge_{index}" for index in range(len(adapters))]
    try:
        for name, found in zip(names, adapters, strict=True):
            _load_lora(pipeline, found, name, provider)
        pipeline.set_adapters(names, [found.adapter.scale for found in adapters])
        with counted(adapters, memory, owner=provider, device=device):  # in the memory ledger while loaded
            yield
    finally:
        pipeline.unload_lora_weights()


def _load_lora(pipeline: Any, found: AdapterWeights, name: str, provider: str) -> None:
    """Load one adapter, or raise `AdapterError` saying why it does not fit this pipeline."""
    source = found.adapter.source
    try:
        pipeline.load_lora_weights(
            found.folder, weight_name=found.weight_name, adapter_name=name, local_files_only=True
        )
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        raise misfit(source, pipeline, exc, provider=provider, no_match="none of its keys match") from exc
    loaded = {n for names in pipeline.get_list_adapters().values() for n in names}
    if name not in loaded:
        raise AdapterError(
            source,
            f"none of its keys match a module of {type(pipeline).__name__}",
            provider=provider,
            hint=TRAINED_FOR_IT,
        )
