"""`stable-audio-3`: Stable Audio 3 (Stability AI, May 2026) run locally through diffusers' three SA3 pipelines.

Extra: `soundforge[stable-audio-3]` (diffusers, transformers). Text to audio, audio to audio (a variation with a
strength) and inpainting (the song vocabulary's repaint, and continuation), on one loaded set of components: the
audio-to-audio and inpaint pipelines are made from the text-to-audio pipeline's modules, so a model is in memory
once. The Small models (433M, music or sound effects, up to 120 s) are made to run on a CPU; Medium (1.4B, 380 s)
wants a GPU (github.com/Stability-AI/stable-audio-3 README at 636f906). Stability publishes the weights in
stable-audio-3's own layout: diffusers' `scripts/convert_stable_audio_3_to_diffusers.py` writes the folder this
provider loads (docs/providers/stable-audio-3.md).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..capabilities import Capabilities, ModelInfo
from ..errors import InvalidRequestError, ModelNotAvailableError
from ..request import GenerationRequest
from .base import (
    LOCAL_SETTINGS,
    Availability,
    Backend,
    ProgressEvent,
    RawGeneration,
    RunContext,
    checked_extra,
    default_seed,
)
from .diffusion import DiffusionPipelineEngine
from .local import LocalBackend, check_output_format, input_clip
from .runtime import (
    module_bytes,
    revision,
    run_on_device_thread,
)

EXTRA = 'pip install "soundforge[stable-audio-3]"'
MIN_DIFFUSERS = (0, 42)
SMALL_MUSIC = "stabilityai/stable-audio-3-small-music"
SMALL_SFX = "stabilityai/stable-audio-3-small-sfx"
MEDIUM = "stabilityai/stable-audio-3-medium"
#: Model -> (what it is for, longest output in seconds), from the stable-audio-3 README's model table.
MODELS = {
    SMALL_MUSIC: ("music, 433M parameters, runs on a CPU", 120.0),
    SMALL_SFX: ("sound effects, 433M parameters, runs on a CPU", 120.0),
    MEDIUM: ("music and sound, 1.4B parameters, wants a CUDA GPU", 380.0),
}
#: The duration embedder's range (`StableAudio3DurationEmbedder.max_val`): nothing longer is conditioned for.
EMBEDDER_MAX_SECONDS = 384.0
CONVERT_REASON = "Stability publishes it in stable-audio-3's own layout, which diffusers cannot load as it is"
CONVERT = (
    "accept its licence at https://huggingface.co/{model} (gated), convert it with diffusers' "
    "scripts/convert_stable_audio_3_to_diffusers.py --checkpoint_path {model} --text_encoder_repo "
    'google/t5gemma-b-b-ul2, then set [providers.stable-audio-3] model = "/path/to/the/folder". A folder keeps '
    "the Community License's conditions and is otherwise of unknown terms: record that it is an unchanged "
    'conversion with LicenseRegistry.default().declare("stable-audio-3", "/path/to/the/folder", '
    'same_as="{model}", reason="converted from the hub release")'
)
EXTRA_KEYS: dict[str, Any] = {"logsnr_min": (int, float), "logsnr_max": (int, float), "engine": str}
_FIELDS = frozenset(
    {
        "seed",
        "num_outputs",
        "steps",
        "audio_prompt",
        "audio_prompt_mode",
        "strength",
        "region",
        "channels",
        "sample_rate",
        "extra",
    }
)


def _caps(*, distilled: bool, max_duration: float, sample_rate: int = 44100) -> Capabilities:
    return Capabilities(
        max_duration=max_duration,
        sample_rates=(sample_rate,),
        channels=(2,),
        # The distilled (released) models have guidance trained in: the pipeline's docs say leave it at 1 and pass
        # no negative prompt. The base models take both.
        fields=_FIELDS if distilled else _FIELDS | {"guidance", "negative_prompt"},
        max_outputs=8,
        seed_deterministic=True,
        audio_prompt_modes=frozenset({"variation", "repaint", "continuation"}),
        cost_hint="local; Small runs on a CPU (8 steps), Medium wants a GPU",
    )


@dataclass
class LoadedStableAudio3:
    """The three pipelines over one set of components, and the facts generation needs."""

    text_to_audio: Any
    audio_to_audio: Any
    inpaint: Any
    sample_rate: int
    device: str
    revision: str | None
    lock: threading.Lock


class DiffusersStableAudio3(DiffusionPipelineEngine[LoadedStableAudio3]):
    """Stable Audio 3 through `StableAudio3Pipeline`, `StableAudio3AudioToAudioPipeline` and
    `StableAudio3InpaintPipeline`."""

    min_diffusers = MIN_DIFFUSERS
    install = EXTRA
    downloads = False  # a repository in stable-audio-3's layout is nothing diffusers can load

    def __init__(self, owner: Backend) -> None:
        super().__init__(owner, cache_label=owner.name)

    def model_availability(self, model: str, *, allow_fetch: bool) -> Availability:
        found = super().model_availability(model, allow_fetch=False)
        if not found.available and model in MODELS:
            return Availability(False, CONVERT_REASON, fix=CONVERT.format(model=model))
        return found

    def folder(self, model: str) -> str:
        try:
            return super().folder(model)
        except ModelNotAvailableError:
            if model not in MODELS:
                raise
            raise ModelNotAvailableError(
                self.owner.name, model, CONVERT_REASON, fix=CONVERT.format(model=model)
            ) from None

    def nbytes(self, loaded: LoadedStableAudio3) -> int:
        return module_bytes(*loaded.text_to_audio.components.values())

    def load_on(self, model: str, device: str) -> LoadedStableAudio3:
        from diffusers import StableAudio3AudioToAudioPipeline, StableAudio3InpaintPipeline, StableAudio3Pipeline

        folder = self.folder(model)
        text = self.load_pipeline(StableAudio3Pipeline, folder, device)
        pipelines = [
            text,
            StableAudio3AudioToAudioPipeline(**text.components),
            StableAudio3InpaintPipeline(**text.components),
        ]
        for pipeline in pipelines:
            pipeline.set_progress_bar_config(disable=True)
        return LoadedStableAudio3(
            text_to_audio=pipelines[0],
            audio_to_audio=pipelines[1],
            inpaint=pipelines[2],
            sample_rate=int(text.vae.config.sampling_rate),
            device=device,
            revision=revision(folder),
            lock=threading.Lock(),
        )

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        extra = checked_extra(request, EXTRA_KEYS, provider=self.owner.name)
        if request.negative_prompt is not None and not (request.guidance or 1.0) > 1.0:
            raise InvalidRequestError(
                "Stable Audio 3 uses a negative prompt only with guidance above 1 (otherwise it is ignored)",
                field="negative_prompt",
                provider=self.owner.name,
                hint="set guidance= too, e.g. guidance=3.0",
            )
        variation = request.audio_prompt is not None and request.audio_prompt_mode in (None, "variation")
        if variation and request.strength is None:
            raise InvalidRequestError(
                "a Stable Audio 3 variation needs strength= (its init_noise_level: 1.0 ignores the clip)",
                field="strength",
                provider=self.owner.name,
                hint="e.g. strength=0.6",
            )
        if request.region is not None and request.region[1] > request.duration:
            raise InvalidRequestError(
                f"region ends at {request.region[1]:g} s, after the {request.duration:g} s of the result",
                field="region",
                provider=self.owner.name,
            )
        return extra

    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: LoadedStableAudio3,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:
        import torch

        check_output_format(request, model, 2, loaded.sample_rate, self.owner.name)
        seed = default_seed(request)
        kwargs: dict[str, Any] = {"prompt": request.prompt, "duration": request.duration}
        if request.num_outputs > 1:
            kwargs["num_waveforms_per_prompt"] = request.num_outputs
        if request.steps is not None:
            kwargs["num_inference_steps"] = request.steps
        if request.guidance is not None:
            kwargs["guidance_scale"] = request.guidance
        if request.negative_prompt is not None:
            kwargs["negative_prompt"] = request.negative_prompt
        for key in ("logsnr_min", "logsnr_max"):
            if key in options:
                kwargs[key] = float(options[key])
        pipeline, task = loaded.text_to_audio, "text-to-audio"
        if request.audio_prompt is not None:
            clip = input_clip(request, loaded.sample_rate, 2)
            kwargs["audio"] = torch.from_numpy(np.ascontiguousarray(clip[None]))
            mode = request.audio_prompt_mode or "variation"
            if mode == "variation":
                pipeline, task = loaded.audio_to_audio, "audio-to-audio"
                kwargs["init_noise_level"] = float(request.strength or 1.0)
            else:
                pipeline, task = loaded.inpaint, "inpaint"
                if mode == "repaint":
                    assert request.region is not None
                    start, end = request.region
                else:  # continuation: the part after the clip, to the end
                    start, end = clip.shape[1] / loaded.sample_rate, request.duration
                    if start >= request.duration:
                        raise InvalidRequestError(
                            f"the audio prompt ({start:.2f} s) is not shorter than the requested "
                            f"{request.duration:g} s; duration counts the prompt too",
                            field="duration",
                            provider=self.owner.name,
                        )
                kwargs |= {"mask_start_seconds": float(start), "mask_end_seconds": float(end)}
        audio = self._call(loaded, pipeline, kwargs, seed, request.num_outputs, context)
        parameters = {k: v for k, v in kwargs.items() if k not in ("audio", "prompt", "negative_prompt")}
        parameters |= {"sample_rate": loaded.sample_rate, "seed_scope": "output", "pipeline": task}
        return self.finish(
            audio, loaded=loaded, duration=request.duration, seed=seed, parameters=parameters, load_seconds=load_seconds
        )

    def _call(
        self,
        loaded: LoadedStableAudio3,
        pipeline: Any,
        kwargs: dict[str, Any],
        seed: int,
        rows: int,
        context: RunContext,
    ) -> Any:
        """One pipeline call on the device's compute thread: numpy (rows, 2, samples).

        Row i has its own generator seeded `seed + i`. The distilled sampler draws fresh noise from it on every
        step, so the generator goes to the pipeline whole and nothing else draws from it.
        """

        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            context.cancel.raise_if_cancelled()
            if context.on_progress is not None:
                context.on_progress(ProgressEvent("denoise", step + 1, pipe.num_timesteps))
            return tensors

        def run() -> Any:
            import torch

            device = "cpu" if loaded.device == "mps" else loaded.device
            generators = [torch.Generator(device=device).manual_seed(seed + i) for i in range(rows)]
            with loaded.lock, torch.inference_mode():
                return pipeline(
                    **kwargs,
                    generator=generators[0] if rows == 1 else generators,
                    callback_on_step_end=on_step,
                    output_type="np",
                ).audios

        return run_on_device_thread(loaded.device, run)


def model_facts(folder: Path) -> tuple[bool, float, int]:
    """A converted folder's sampler (distilled: ping-pong), longest conditioned duration and sample rate."""
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text("utf-8"))
    vae = json.loads((folder / "vae" / "config.json").read_text("utf-8"))
    embedder_file = folder / "duration_embedder" / "config.json"
    embedder = json.loads(embedder_file.read_text("utf-8")) if embedder_file.is_file() else {}
    longest = min(float(embedder.get("max_val", EMBEDDER_MAX_SECONDS)), EMBEDDER_MAX_SECONDS)
    return bool(scheduler.get("stochastic_sampling", False)), longest, int(vae.get("sampling_rate", 44100))


class StableAudio3Backend(LocalBackend):
    """Stable Audio 3 (Small-Music, Small-SFX, Medium) through diffusers."""

    adapters_refused = (
        "diffusers has no LoRA loader for StableAudio3Pipeline, and the official SA3 runtimes' adapter format is not "
        "mapped onto diffusers' transformer yet (docs/adapters.md)"
    )

    settings_keys = LOCAL_SETTINGS

    name = "stable-audio-3"
    description = "Stable Audio 3 through diffusers (local; Small runs on a CPU)"
    default_model = SMALL_MUSIC
    engine_types: ClassVar[dict[str, Any]] = {"diffusers": DiffusersStableAudio3}

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(id=model, description=what, capabilities=_caps(distilled=True, max_duration=longest))
            for model, (what, longest) in MODELS.items()
        ]

    def model_info(self, model: str) -> ModelInfo:
        folder = Path(model).expanduser()
        if (folder / "model_index.json").is_file():
            distilled, longest, rate = model_facts(folder)
            return ModelInfo(id=model, capabilities=_caps(distilled=distilled, max_duration=longest, sample_rate=rate))
        return super().model_info(model)
