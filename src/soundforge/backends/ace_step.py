"""`ace-step`: ACE-Step 1.5 (ACE Studio and StepFun) run locally through diffusers' `AceStepPipeline`.

Extra: `soundforge[ace-step]` (diffusers, transformers). Songs with vocals from lyrics, 48 kHz stereo, and the
operations on an audio input the model was trained for: repaint a region, cover, extract a stem (base model),
continue. The request's song vocabulary maps onto the pipeline's arguments one to one; what ACE-Step does not
accept (a BPM outside 30-300, a 5/4 bar, extract on a turbo model) is refused before anything loads, with the
values it does accept. The limits are ACE-Step's own (`acestep/constants.py` in github.com/ace-step/ACE-Step-1.5
at f30aee4, 2026-02-08; docs/providers/ace-step.md).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..capabilities import Capabilities, ModelInfo
from ..errors import InvalidRequestError
from ..music import STEMS, parse_key, parse_time_signature
from ..request import GenerationRequest
from .adapters import adapters_key
from .base import (
    LOCAL_SETTINGS,
    AdapterWeights,
    Backend,
    ProgressEvent,
    RawGeneration,
    RunContext,
    checked_extra,
    default_seed,
    fit_length,
)
from .diffusion import DiffusionPipelineEngine, lora_adapters
from .local import LocalBackend, check_output_format, input_clip
from .runtime import (
    Batcher,
    module_bytes,
    revision,
    run_on_device_thread,
)

EXTRA = 'pip install "soundforge[ace-step]"'
#: The diffusers-format checkpoint the pipeline's own documentation loads (XL turbo: 8 steps, no guidance).
XL_TURBO = "ACE-Step/acestep-v15-xl-turbo-diffusers"
SAMPLE_RATE = 48000
#: The first diffusers release soundforge runs AceStepPipeline on (the extra's floor).
MIN_DIFFUSERS = (0, 42)
#: ACE-Step's own limits (acestep/constants.py): BPM_MIN/BPM_MAX, DURATION_MIN/DURATION_MAX, VALID_TIME_SIGNATURES
#: (2 = 2/4, 3 = 3/4, 4 = 4/4, 6 = 6/8), VALID_LANGUAGES, TASK_TYPES_TURBO.
BPM_RANGE = (30, 300)
DURATION_RANGE = (10.0, 600.0)
TIME_SIGNATURES = {"2/4": "2", "3/4": "3", "4/4": "4", "6/8": "6"}
LANGUAGES = frozenset(
    " ".join(
        (
            "ar az bg bn ca cs da de el en es fa fi fr he hi hr ht hu id is it ja ko la lt ms ne nl no pa pl",
            "pt ro ru sa sk sr sv sw ta te th tl tr uk ur vi yue zh",
        )
    ).split()
)
TURBO_TASKS = ("text2music", "repaint", "cover")
#: What the model card tells users to write for a song without vocals (docs/en/Tutorial.md).
INSTRUMENTAL_LYRICS = "[Instrumental]"
EXTRA_KEYS: dict[str, Any] = {
    "shift": (int, float),
    "cfg_interval_start": (int, float),
    "cfg_interval_end": (int, float),
    "engine": str,
}
_FIELDS = frozenset(
    {
        "seed",
        "num_outputs",
        "steps",
        "guidance",
        "lyrics",
        "instrumental",
        "vocal_language",
        "bpm",
        "key",
        "time_signature",
        "audio_prompt",
        "audio_prompt_mode",
        "strength",
        "region",
        "stem",
        "channels",
        "sample_rate",
        "adapters",
        "extra",
    }
)


def _caps(*, turbo: bool, sample_rate: int = SAMPLE_RATE) -> Capabilities:
    return Capabilities(
        min_duration=DURATION_RANGE[0],
        max_duration=DURATION_RANGE[1],
        sample_rates=(sample_rate,),
        channels=(2,),
        # A turbo model has guidance distilled into its weights: the pipeline would ignore `guidance` with a warning.
        fields=_FIELDS - {"guidance", "stem"} if turbo else _FIELDS,
        max_outputs=8,
        seed_deterministic=True,
        vocals=True,
        audio_prompt_modes=frozenset({"repaint", "cover", "continuation"} | (set() if turbo else {"extract"})),
        stems=frozenset() if turbo else frozenset(STEMS) - {"other"},  # ACE-Step's twelve track names
        cost_hint="local; a GPU sings a song in seconds, a 2-core CPU takes minutes per step at full size",
    )


@dataclass
class LoadedAceStep:
    """A pipeline in memory with the facts generation needs."""

    pipeline: Any
    sample_rate: int
    turbo: bool
    device: str
    revision: str | None
    lock: threading.Lock


@dataclass(frozen=True)
class _Plan:
    """The pipeline arguments of one request, worked out (and checked) before anything loads."""

    kwargs: dict[str, Any]
    task: str


class DiffusersAceStep(DiffusionPipelineEngine[LoadedAceStep]):
    """ACE-Step 1.5 through diffusers' `AceStepPipeline`."""

    min_diffusers = MIN_DIFFUSERS
    install = EXTRA
    loads_adapters = True

    def __init__(self, owner: Backend) -> None:
        super().__init__(owner, cache_label=owner.name)
        self._batcher: Batcher[_BatchItem, tuple[Any, dict[str, Any]]] = self.batcher(self._run_batch)

    def nbytes(self, loaded: LoadedAceStep) -> int:
        return module_bytes(*loaded.pipeline.components.values())

    def load_on(self, model: str, device: str) -> LoadedAceStep:
        from diffusers import AceStepPipeline

        folder = self.folder(model)
        pipeline = self.load_pipeline(AceStepPipeline, folder, device)
        return LoadedAceStep(
            pipeline=pipeline,
            sample_rate=int(pipeline.sample_rate),
            turbo=bool(pipeline.is_turbo),
            device=device,
            revision=revision(folder),
            lock=threading.Lock(),
        )

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        plan = pipeline_plan(request, provider=self.owner.name)
        return {"plan": plan}

    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: LoadedAceStep,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:

        plan: _Plan = options["plan"]
        check_output_format(request, model, 2, loaded.sample_rate, self.owner.name)
        if loaded.turbo and plan.task not in TURBO_TASKS:
            raise InvalidRequestError(
                f"{model} is a turbo model: ACE-Step trained only {', '.join(TURBO_TASKS)} into it, not {plan.task}",
                field="audio_prompt_mode",
                provider=self.owner.name,
                hint="use a base model (ACE-Step/acestep-v15-base, converted to diffusers' format)",
            )
        seed = default_seed(request)
        adapters = context.adapters
        kwargs = dict(plan.kwargs)
        if request.audio_prompt is not None:
            kwargs |= _source(request, loaded.sample_rate, self.owner.name)
        batch_info: dict[str, Any] = {}
        if self._batching() and request.audio_prompt is None:
            # Text to music with the same duration, metadata, steps and settings: one pipeline call for several
            # requests (measured 1.10x on a 2-core CPU at full size: docs/performance.md). A request alone in
            # its window runs exactly as unbatched.
            # Requests with other adapters never share a call: the adapters are part of the key.
            shared = tuple(sorted((k, repr(v)) for k, v in kwargs.items() if k not in ("prompt", "lyrics")))
            audio, batch_info = self._batcher.submit(
                (model, shared, adapters_key(adapters)),
                _BatchItem(kwargs, seed, request.num_outputs, context, loaded, adapters),
                size=request.num_outputs,
            )
            context.cancel.raise_if_cancelled()
        else:
            audio = self._call(loaded, kwargs, [seed + i for i in range(request.num_outputs)], [context], adapters)
        parameters = {k: v for k, v in kwargs.items() if k not in ("src_audio", "prompt", "lyrics")}
        parameters |= {"sample_rate": loaded.sample_rate, "seed_scope": "output", "task_type": plan.task}
        parameters |= batch_info
        generation = self.finish(
            audio, loaded=loaded, duration=request.duration, seed=seed, parameters=parameters, load_seconds=load_seconds
        )
        if request.stem is None:
            return generation
        return replace(generation, tracks=[replace(t, role=request.stem) for t in generation.tracks])

    def _batching(self) -> bool:
        """`batching` setting: true (the default: it gained on a CPU, where Stable Audio Open's did not) or false."""
        return bool(self.batching_setting(True))

    def _run_batch(self, items: list[_BatchItem]) -> list[tuple[Any, dict[str, Any]]]:
        """One pipeline call for several text-to-music requests: each row has its own prompt, lyrics and generator
        (the request's i-th output seeded `seed + i`)."""
        first = items[0]
        if len(items) == 1:
            seeds = [first.seed + i for i in range(first.rows)]
            call = self._call(first.loaded, first.kwargs, seeds, [first.context], first.adapters)
            return [(call, {"batched_requests": 1})]
        kwargs = {
            **first.kwargs,
            "prompt": [it.kwargs["prompt"] for it in items for _ in range(it.rows)],
            "lyrics": [it.kwargs.get("lyrics", "") for it in items for _ in range(it.rows)],
        }
        seeds = [it.seed + i for it in items for i in range(it.rows)]
        audio = self._call(first.loaded, kwargs, seeds, [it.context for it in items], first.adapters)
        results, start = [], 0
        for it in items:
            results.append(
                (
                    audio[start : start + it.rows],
                    {"batched_requests": len(items), "batch_outputs": len(seeds), "batch_offset": start},
                )
            )
            start += it.rows
        return results

    def _call(
        self,
        loaded: LoadedAceStep,
        kwargs: dict[str, Any],
        seeds: list[int],
        contexts: list[RunContext],
        adapters: tuple[AdapterWeights, ...] = (),
    ) -> Any:
        """One pipeline call on the device's compute thread: numpy (rows, 2, samples), one row per seed.

        The request's adapters are loaded with diffusers' own LoRA loader, at their scales, for this call only and
        unloaded after it (under the pipeline's lock), so the next call sees the base model.

        Each row draws its starting noise from its own generator. The pipeline samples the VAE posterior of an
        input clip from torch's global generator, not from `generator`: that is seeded with the first seed inside
        `fork_rng`, so the result is reproducible and the caller's global random state is left as it was.
        Progress goes to every caller still waiting; the call stops when all of them cancelled.
        """
        steps = int(kwargs.get("num_inference_steps", 8))

        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            waiting = [c for c in contexts if not c.cancel.cancelled]
            if not waiting:
                contexts[0].cancel.raise_if_cancelled()
            for context in waiting:
                if context.on_progress is not None:
                    context.on_progress(ProgressEvent("denoise", step + 1, steps))
            return tensors

        def run() -> Any:
            import torch

            device = torch.device(loaded.device)
            generator_device = "cpu" if device.type == "mps" else loaded.device
            generators = [torch.Generator(device=generator_device).manual_seed(seed) for seed in seeds]
            call = dict(kwargs)
            rows = len(seeds)
            if rows > 1 and isinstance(call["prompt"], str):
                call["prompt"] = [call["prompt"]] * rows
                call["lyrics"] = [call.get("lyrics", "")] * rows
            forked = [device.index or 0] if device.type == "cuda" else []
            with (
                loaded.lock,
                lora_adapters(
                    loaded.pipeline, adapters, provider=self.owner.name, memory=self.owner.memory, device=loaded.device
                ),
                torch.random.fork_rng(devices=forked),
                torch.inference_mode(),
            ):
                torch.manual_seed(seeds[0])
                return loaded.pipeline(
                    **call,
                    generator=generators[0] if rows == 1 else generators,
                    callback_on_step_end=on_step,
                    output_type="np",
                ).audios

        return run_on_device_thread(loaded.device, run)


@dataclass
class _BatchItem:
    """One text-to-music request waiting in the batcher."""

    kwargs: dict[str, Any]
    seed: int
    rows: int
    context: RunContext
    loaded: LoadedAceStep
    adapters: tuple[AdapterWeights, ...] = ()


def pipeline_plan(request: GenerationRequest, *, provider: str = "ace-step") -> _Plan:
    """The `AceStepPipeline` arguments for a request, checked against ACE-Step's limits before anything loads.

    Only what the request sets is passed, so the pipeline's (and the checkpoint's) defaults stay in force.
    """
    extra = checked_extra(request, EXTRA_KEYS, provider=provider)
    kwargs: dict[str, Any] = {"prompt": request.prompt, "audio_duration": request.duration}
    if request.lyrics is not None:
        kwargs["lyrics"] = request.lyrics
    elif request.instrumental:
        kwargs["lyrics"] = INSTRUMENTAL_LYRICS
    if request.vocal_language is not None:
        if request.vocal_language not in LANGUAGES:
            raise InvalidRequestError(
                f"ACE-Step does not sing in {request.vocal_language!r}",
                field="vocal_language",
                provider=provider,
                hint=f"its languages: {', '.join(sorted(LANGUAGES))}",
            )
        kwargs["vocal_language"] = request.vocal_language
    if request.bpm is not None:
        low, high = BPM_RANGE
        if not (float(request.bpm).is_integer() and low <= request.bpm <= high):
            raise InvalidRequestError(
                f"ACE-Step takes a whole BPM from {low} to {high}, not {request.bpm:g}",
                field="bpm",
                provider=provider,
            )
        kwargs["bpm"] = int(request.bpm)
    if request.key is not None:
        kwargs["keyscale"] = str(parse_key(request.key))
    if request.time_signature is not None:
        signature = str(parse_time_signature(request.time_signature))
        if signature not in TIME_SIGNATURES:
            raise InvalidRequestError(
                f"ACE-Step knows the time signatures {', '.join(TIME_SIGNATURES)}, not {signature}",
                field="time_signature",
                provider=provider,
            )
        kwargs["timesignature"] = TIME_SIGNATURES[signature]
    if request.steps is not None:
        kwargs["num_inference_steps"] = request.steps
    if request.guidance is not None:
        kwargs["guidance_scale"] = request.guidance
    for key in ("shift", "cfg_interval_start", "cfg_interval_end"):
        if key in extra:
            kwargs[key] = float(extra[key])
    task = "text2music"
    mode = request.audio_prompt_mode
    if request.audio_prompt is not None:
        if mode is None:
            raise InvalidRequestError(
                "ACE-Step needs to be told what to do with the audio_prompt",
                field="audio_prompt_mode",
                provider=provider,
                hint="set audio_prompt_mode to 'repaint', 'cover', 'extract' or 'continuation'",
            )
        task = {"continuation": "repaint", "repaint": "repaint", "cover": "cover", "extract": "extract"}[mode]
        kwargs["task_type"] = task
        if mode == "repaint":
            assert request.region is not None  # the request's own validation pairs them
            start, end = request.region
            if end > request.duration:
                raise InvalidRequestError(
                    f"region ends at {end:g} s, after the {request.duration:g} s of the result",
                    field="region",
                    provider=provider,
                )
            kwargs |= {"repainting_start": float(start), "repainting_end": float(end)}
        elif mode == "cover" and request.strength is not None:
            kwargs["audio_cover_strength"] = float(request.strength)
        elif mode == "extract":
            kwargs["track_name"] = request.stem
    return _Plan(kwargs=kwargs, task=task)


def _source(request: GenerationRequest, sample_rate: int, provider: str) -> dict[str, Any]:
    """The audio prompt as the pipeline's `src_audio`: stereo at its rate, `duration` long (cut, or padded with
    silence; a continuation is padded and its new part repainted)."""
    import torch

    clip = input_clip(request, sample_rate, 2)
    total = round(request.duration * sample_rate)
    extra: dict[str, Any] = {}
    if request.audio_prompt_mode == "continuation":
        given = clip.shape[1] / sample_rate
        if clip.shape[1] >= total:
            raise InvalidRequestError(
                f"the audio prompt ({given:.2f} s) is not shorter than the requested {request.duration:g} s; "
                "duration counts the prompt too",
                field="duration",
                provider=provider,
            )
        extra = {"repainting_start": given, "repainting_end": -1}
    clip = fit_length(clip[None], total)[0]
    return {"src_audio": torch.from_numpy(np.ascontiguousarray(clip)), **extra}


def model_facts(folder: Path) -> tuple[bool, int]:
    """Whether a saved pipeline's transformer is turbo, and its VAE's sample rate (from their configs)."""
    transformer = json.loads((folder / "transformer" / "config.json").read_text("utf-8"))
    vae = json.loads((folder / "vae" / "config.json").read_text("utf-8"))
    turbo = bool(transformer.get("is_turbo")) or transformer.get("model_version") == "turbo"
    return turbo, int(vae.get("sampling_rate", SAMPLE_RATE))


class AceStepBackend(LocalBackend):
    """ACE-Step 1.5 songs (lyrics, vocals, repaint, cover, stems) through diffusers."""

    settings_keys = LOCAL_SETTINGS | {"batching", "batch_window", "max_batch_size"}

    name = "ace-step"
    description = "ACE-Step 1.5 songs with vocals through diffusers (local)"
    default_model = XL_TURBO
    engine_types: ClassVar[dict[str, Any]] = {"diffusers": DiffusersAceStep}

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=XL_TURBO,
                description="XL turbo: 48 kHz stereo songs of 10 s to 10 min in 8 steps; text2music, repaint, cover",
                capabilities=_caps(turbo=True),
            )
        ]

    def model_info(self, model: str) -> ModelInfo:
        folder = Path(model).expanduser()
        if (folder / "model_index.json").is_file():
            turbo, rate = model_facts(folder)
            return ModelInfo(id=model, capabilities=_caps(turbo=turbo, sample_rate=rate))
        if model == XL_TURBO:
            return super().model_info(model)
        # Another hub checkpoint: its kind is known only once it is here; base models offer every task.
        return ModelInfo(id=model, capabilities=_caps(turbo="turbo" in model.lower()))
