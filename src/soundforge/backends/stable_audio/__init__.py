"""`stable-audio`: Stable Audio Open run locally through diffusers' `StableAudioPipeline`.

Extra: `soundforge[stable-audio]` (diffusers, transformers, torchsde).

One readable path: resolve and load the pipeline (cached), map the request to the pipeline's arguments,
run it with a per-step callback for progress and cancellation, trim to the exact duration.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...capabilities import Capabilities, ModelInfo
from ...errors import InvalidRequestError, ModelNotAvailableError
from ...request import GenerationRequest
from ..base import (
    LOCAL_SETTINGS,
    Backend,
    ProgressEvent,
    RawGeneration,
    RunContext,
    checked_extra,
    default_seed,
)
from ..diffusion import DiffusionPipelineEngine
from ..local import LocalBackend, LocalEngine, variation_clip
from ..runtime import Batcher, module_bytes, revision, run_on_device_thread

EXTRA = 'pip install "soundforge[stable-audio]"'
OPEN_1_0 = "stabilityai/stable-audio-open-1.0"
SMALL = "stabilityai/stable-audio-open-small"
GATED = (
    "Stable Audio Open is gated on the Hugging Face hub: accept its licence at "
    f"https://huggingface.co/{OPEN_1_0} and log in (`hf auth login`), then "
)
#: Extra parameters: pipeline arguments and scheduler settings a user may pass through `extra`.
EXTRA_KEYS: dict[str, tuple[type, ...]] = {
    "audio_start": (int, float),
    "eta": (int, float),
    "scheduler": (dict,),
    "engine": (str,),
}
SCHEDULER_KEYS = {"sigma_min", "sigma_max", "sigma_data", "sigma_schedule", "solver_order", "rho", "final_sigmas_type"}
_FIELDS = frozenset(
    {
        "seed",
        "num_outputs",
        "negative_prompt",
        "guidance",
        "steps",
        "audio_prompt",
        "audio_prompt_mode",
        "extra",
        "channels",
        "sample_rate",
    }
)


def _caps(max_duration: float = 47.55, sample_rate: int = 44100, channels: int = 2) -> Capabilities:
    return Capabilities(
        max_duration=max_duration,
        sample_rates=(sample_rate,),
        channels=(channels,),
        fields=_FIELDS,
        audio_prompt_modes=frozenset({"variation"}),
        max_outputs=8,
        seed_deterministic=True,
        cost_hint="local; about 27 s per denoising step at full size on a 2-core CPU",
    )


@dataclass
class LoadedPipeline:
    """A pipeline in memory with the facts generation needs."""

    pipeline: Any
    sample_rate: int
    channels: int
    max_duration: float
    device: str
    revision: str | None
    lock: threading.Lock


def _sat_engine(owner: StableAudioBackend) -> LocalEngine[Any]:
    from .sat import SatEngine  # only when asked for: stable-audio-tools is an optional install

    return SatEngine(owner)


class DiffusersEngine(DiffusionPipelineEngine[LoadedPipeline]):
    """Stable Audio Open through diffusers' `StableAudioPipeline` (the default engine)."""

    packages = ("torch", "diffusers", "transformers", "torchsde")
    install = EXTRA

    def __init__(self, owner: Backend) -> None:
        super().__init__(owner, cache_label=owner.name)
        self._batcher: Batcher[_BatchItem, tuple[Any, dict[str, Any]]] = self.batcher(self._run_batch)

    def access_note(self, model: str) -> str:
        return GATED if model == OPEN_1_0 else ""

    def nbytes(self, loaded: LoadedPipeline) -> int:
        return module_bytes(*loaded.pipeline.components.values())

    def load_on(self, model: str, device: str) -> LoadedPipeline:
        from diffusers import StableAudioPipeline

        folder = self.folder(model)
        pipeline = self.load_pipeline(StableAudioPipeline, folder, device)
        rate = int(pipeline.vae.sampling_rate)
        return LoadedPipeline(
            pipeline=pipeline,
            sample_rate=rate,
            channels=int(pipeline.vae.config.audio_channels),
            max_duration=pipeline.transformer.config.sample_size * pipeline.vae.hop_length / rate,
            device=device,
            revision=revision(folder),
            lock=threading.Lock(),
        )

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        return _extra(request)

    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: LoadedPipeline,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:
        extra = options
        start_s = float(extra.get("audio_start", 0.0))
        if start_s + request.duration > loaded.max_duration + 1e-9:
            raise InvalidRequestError(
                f"audio_start + duration ({start_s + request.duration:g} s) is over the "
                f"{loaded.max_duration:g} s window of {model}",
                field="duration",
                provider=self.owner.name,
            )
        seed = default_seed(request)
        kwargs = self._pipeline_kwargs(request, loaded, extra, start_s)
        batch_info: dict[str, Any] = {}
        if self._batching(loaded) and request.audio_prompt is None:
            # Same window, steps, guidance, eta and scheduler: concurrent requests share one pipeline call.
            shared = tuple(
                sorted(
                    (k, repr(v))
                    for k, v in kwargs.items()
                    if k not in ("prompt", "negative_prompt", "num_waveforms_per_prompt")
                )
            )
            key = (model, shared, "negative_prompt" in kwargs, repr(extra.get("scheduler")))
            audio, batch_info = self._batcher.submit(
                key, _BatchItem(request, kwargs, seed, context, loaded, extra), size=request.num_outputs
            )
            context.cancel.raise_if_cancelled()
        else:
            audio = self._call(loaded, kwargs, extra, _generator(loaded, seed), [context])
        parameters = {k: v for k, v in kwargs.items() if k not in ("initial_audio_waveforms", "prompt")}
        parameters |= {"sample_rate": loaded.sample_rate, "seed_scope": "batch", "batch_size": request.num_outputs}
        parameters |= batch_info
        if "scheduler" in extra:
            parameters["scheduler"] = extra["scheduler"]
        return self.finish(
            audio, loaded=loaded, duration=request.duration, seed=seed, parameters=parameters, load_seconds=load_seconds
        )

    def _batching(self, loaded: LoadedPipeline) -> bool:
        """`batching` setting: true, false, or "auto" (the default): batch on CUDA only. On a CPU a pipeline call is
        compute-bound, and two requests in one call took as long as one after the other (0.93-1.11x per step,
        0.84x end to end, full-size model on 2 cores: docs/performance.md), while each waited for the other."""
        setting = self.batching_setting("auto")
        if setting == "auto":
            return str(loaded.device).startswith("cuda")
        return bool(setting)

    def _call(
        self,
        loaded: LoadedPipeline,
        kwargs: dict[str, Any],
        extra: dict[str, Any],
        generator: Any,
        contexts: list[RunContext],
    ) -> Any:
        """One pipeline call (under the pipeline's lock, with the request's scheduler settings); numpy (B, C, N).

        Progress goes to every caller still waiting; the call stops only when all of them cancelled.
        """
        steps = int(kwargs.get("num_inference_steps", 100))

        def on_step(step: int, timestep: Any, latents: Any) -> None:
            waiting = [c for c in contexts if not c.cancel.cancelled]
            if not waiting:
                contexts[0].cancel.raise_if_cancelled()
            for context in waiting:
                if context.on_progress is not None:
                    context.on_progress(ProgressEvent("denoise", step + 1, steps))

        def run() -> Any:  # on the device's compute thread
            import torch

            with loaded.lock:  # a pipeline (and its scheduler) serves one call at a time
                pipeline = loaded.pipeline
                original_scheduler = pipeline.scheduler
                if "scheduler" in extra:
                    pipeline.scheduler = type(original_scheduler).from_config(
                        original_scheduler.config, **extra["scheduler"]
                    )
                try:
                    with torch.inference_mode():
                        return pipeline(
                            **kwargs, generator=generator, callback=on_step, callback_steps=1, output_type="np"
                        ).audios
                finally:
                    pipeline.scheduler = original_scheduler

        return run_on_device_thread(loaded.device, run)

    def _run_batch(self, items: list[_BatchItem]) -> list[tuple[Any, dict[str, Any]]]:
        """One pipeline call for several requests. A request alone runs exactly as unbatched; in a batch each
        output row draws its noise from its own generator, seeded `seed + i` for the request's i-th output."""
        first = items[0]
        if len(items) == 1:
            audio = self._call(
                first.loaded, first.kwargs, first.extra, _generator(first.loaded, first.seed), [first.context]
            )
            return [(audio, {"batched_requests": 1})]
        kwargs = {
            **first.kwargs,
            "num_waveforms_per_prompt": 1,
            "prompt": [it.request.prompt for it in items for _ in range(it.request.num_outputs)],
        }
        if "negative_prompt" in first.kwargs:
            kwargs["negative_prompt"] = [
                it.request.negative_prompt for it in items for _ in range(it.request.num_outputs)
            ]
        generators = [_generator(it.loaded, it.seed + i) for it in items for i in range(it.request.num_outputs)]
        audio = self._call(first.loaded, kwargs, first.extra, generators, [it.context for it in items])
        results, start = [], 0
        for it in items:
            end = start + it.request.num_outputs
            results.append(
                (
                    audio[start:end],
                    {
                        "batched_requests": len(items),
                        "batch_outputs": len(kwargs["prompt"]),
                        "batch_offset": start,
                        "seed_scope": "output",
                    },
                )
            )
            start = end
        return results

    def _pipeline_kwargs(
        self, request: GenerationRequest, loaded: LoadedPipeline, extra: dict[str, Any], start_s: float
    ) -> dict[str, Any]:
        """Pipeline arguments: only what the request sets, so the pipeline's defaults stay in force otherwise."""
        import torch

        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "audio_start_in_s": start_s,
            "audio_end_in_s": start_s + request.duration,
            "num_waveforms_per_prompt": request.num_outputs,
        }
        if request.negative_prompt is not None:
            kwargs["negative_prompt"] = request.negative_prompt
        if request.steps is not None:
            kwargs["num_inference_steps"] = request.steps
        if request.guidance is not None:
            kwargs["guidance_scale"] = request.guidance
        if "eta" in extra:
            kwargs["eta"] = float(extra["eta"])
        if request.audio_prompt is not None:
            audio = variation_clip(request, loaded.sample_rate, loaded.channels, self.owner.name)
            kwargs["initial_audio_waveforms"] = torch.from_numpy(audio[None]).to(
                loaded.device, loaded.pipeline.vae.dtype
            )
            kwargs["initial_audio_sampling_rate"] = loaded.sample_rate
        return kwargs


class StableAudioBackend(LocalBackend):
    """Stable Audio Open through diffusers, or through stable-audio-tools (`engine = "stable-audio-tools"`)."""

    adapters_refused = (
        "neither diffusers' StableAudioPipeline nor stable-audio-tools loads LoRA adapters (community LoRAW "
        "adapters need their own trainer's code; docs/adapters.md)"
    )

    settings_keys = LOCAL_SETTINGS | {"batching", "batch_window", "max_batch_size"}

    name = "stable-audio"
    description = "Stable Audio Open through diffusers (local)"
    default_model = OPEN_1_0
    engine_types: ClassVar[dict[str, Callable[[Any], LocalEngine[Any]]]] = {
        "diffusers": DiffusersEngine,
        "stable-audio-tools": _sat_engine,
    }

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=OPEN_1_0, description="44.1 kHz stereo, up to 47.55 s", capabilities=_caps())]

    def model_info(self, model: str) -> ModelInfo:
        if model == SMALL and self.engine() == "stable-audio-tools":
            return ModelInfo(id=model, capabilities=_caps(max_duration=11.0))
        if model == SMALL:
            raise ModelNotAvailableError(
                self.name,
                model,
                "Stable Audio Open Small is published for stable-audio-tools only; diffusers' "
                "StableAudioPipeline cannot load it",
                fix="use stabilityai/stable-audio-open-1.0 (the "
                'stable-audio-tools engine runs it: [providers.stable-audio] engine = "stable-audio-tools")',
            )
        if model == OPEN_1_0:
            return super().model_info(model)
        index = Path(model).expanduser()
        if (index / "model_index.json").is_file():
            transformer = json.loads((index / "transformer" / "config.json").read_text("utf-8"))
            vae = json.loads((index / "vae" / "config.json").read_text("utf-8"))
            hop = int(np.prod(vae.get("downsampling_ratios", [2, 4, 4, 8, 8])))
            rate = int(vae.get("sampling_rate", 44100))
            return ModelInfo(
                id=model,
                capabilities=_caps(
                    transformer.get("sample_size", 1024) * hop / rate, rate, int(vae.get("audio_channels", 2))
                ),
            )
        return ModelInfo(id=model, capabilities=_caps())


@dataclass
class _BatchItem:
    """One request waiting in the batcher."""

    request: GenerationRequest
    kwargs: dict[str, Any]
    seed: int
    context: RunContext
    loaded: LoadedPipeline
    extra: dict[str, Any]


def _generator(loaded: LoadedPipeline, seed: int) -> Any:
    import torch

    return torch.Generator(device="cpu" if loaded.device == "mps" else loaded.device).manual_seed(seed)


def _extra(request: GenerationRequest) -> dict[str, Any]:
    extra = checked_extra(request, EXTRA_KEYS, provider="stable-audio")
    scheduler = extra.get("scheduler", {})
    bad = set(scheduler) - SCHEDULER_KEYS
    if bad:
        raise InvalidRequestError(
            f"unknown scheduler setting(s): {', '.join(sorted(bad))}",
            field="extra",
            provider="stable-audio",
            hint=f"known: {', '.join(sorted(SCHEDULER_KEYS))}",
        )
    if float(extra.get("audio_start", 0.0)) < 0:
        raise InvalidRequestError("extra['audio_start'] must be >= 0", field="extra", provider="stable-audio")
    return extra
