"""`minimax-music-3`: MiniMax Music 3 (MiniMax, August 2026) run locally through diffusers' modular pipeline.

Extra: `soundforge[minimax-music-3]` (diffusers, transformers). Full songs with vocals from a music description and
tagged lyrics, 44.1 kHz stereo, up to six minutes: an 8.6B Qwen3 language model writes 25 frames of audio codes a
second (an RVQ depth decoder fills each frame's residual codes), a 2.4B flow-matching transformer turns their hidden
states into latents in 200-frame windows, and a DAC-style vocoder renders them. It runs through diffusers' own
blocks (`MiniMaxMusic3Blocks`, diffusers PR #14456) exactly as `ModularPipeline.from_pretrained(...)` and
`load_components()` load it, so its audio is the direct pipeline call's (tests/backends/test_minimax_music_3.py).

The pipeline's input contract is narrow (diffusers' minimax_music3/encoders.py): a non-empty description and
non-empty lyrics, structure tags on lines of their own, at most 5000 prompt tokens and 9000 frames; `audio_duration`
is a ceiling and the model may end the song sooner (the rest of the asked length is silence, and the provenance
says where the song ended). What it does not take (a negative prompt, guidance, an audio prompt) is refused before
anything loads. Weights: about 24 GB in bf16 (docs/providers/minimax-music-3.md); a CUDA GPU with 24 GB or more.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..capabilities import Capabilities, ModelInfo
from ..errors import InvalidRequestError, ModelNotAvailableError
from ..music import parse_key
from ..request import GenerationRequest
from .base import (
    LOCAL_SETTINGS,
    Backend,
    ProgressEvent,
    RawGeneration,
    RunContext,
    checked_extra,
    default_seed,
    fit_length,
)
from .diffusion import DiffusionPipelineEngine
from .local import LocalBackend, check_output_format
from .runtime import module_bytes, revision, run_on_device_thread

EXTRA = 'pip install "soundforge[minimax-music-3]"'
MIN_DIFFUSERS = (0, 42)
#: The release: its diffusers-format components sit beside the original weights (`modular_model_index.json`).
RELEASE = "MiniMaxAI/MiniMax-Music3"
MODULAR_MARKER = "modular_model_index.json"
SAMPLE_RATE = 44100
#: The language model's frame rate and its 9000-frame ceiling (diffusers' `_MAX_AUDIO_FRAMES`): six minutes.
FRAME_RATE = 25.0
MAX_SECONDS = 9000 / FRAME_RATE
#: Flow-matching steps per window when the request names none (the pipeline's default).
DEFAULT_STEPS = 30
#: The autoregressive frames are denoised in 200-frame windows with a 100-frame hop (minimax_music3/before_denoise.py);
#: used only to give the denoising progress its total.
CHUNK_FRAMES, CHUNK_HOP = 200, 100
#: The checkpoint has no track-level instrumental switch: the lyrics are a section tag and the description says
#: so (what MiniMax's own music CLI writes into the description; see docs/providers/minimax-music-3.md).
INSTRUMENTAL_LYRICS = "[instrumental]"
INSTRUMENTAL_CAPTION = "Instrumental, no vocals."
EXTRA_KEYS: dict[str, Any] = {"engine": str}
_FIELDS = frozenset(
    {"seed", "num_outputs", "steps", "lyrics", "instrumental", "bpm", "key", "channels", "sample_rate", "extra"}
)


def _caps(sample_rate: int = SAMPLE_RATE) -> Capabilities:
    return Capabilities(
        min_duration=1.0,
        max_duration=MAX_SECONDS,
        sample_rates=(sample_rate,),
        channels=(2,),
        fields=_FIELDS,
        max_outputs=4,
        seed_deterministic=True,
        vocals=True,
        cost_hint="local; about 24 GB of weights in bf16: a CUDA GPU with 24 GB or more (a CPU cannot hold it)",
    )


@dataclass
class LoadedMiniMaxMusic3:
    """A modular pipeline with its components loaded, and the facts generation needs."""

    pipeline: Any
    sample_rate: int
    codebooks: int
    device: str
    revision: str | None
    lock: threading.Lock


def pipeline_inputs(request: GenerationRequest, *, provider: str = "minimax-music-3") -> dict[str, Any]:
    """The pipeline's `prompt`, `lyrics` and `audio_duration` for a request, checked before anything loads.

    A BPM and a key go into the description the way MiniMax's own music CLI writes them ("BPM: 96. Key: A minor.").
    """
    caption = request.prompt.strip()
    if not caption:
        raise InvalidRequestError(
            "MiniMax Music 3 needs a music description (genre, mood, vocals, instruments)",
            field="prompt",
            provider=provider,
        )
    details = []
    if request.bpm is not None:
        details.append(f"BPM: {request.bpm:g}.")
    if request.key is not None:
        details.append(f"Key: {parse_key(request.key)}.")
    if request.instrumental:
        details.append(INSTRUMENTAL_CAPTION)
    if details:
        caption = f"{caption.rstrip('.')}. {' '.join(details)}"
    if request.instrumental:
        lyrics = INSTRUMENTAL_LYRICS
    elif request.lyrics is not None and request.lyrics.strip():
        lyrics = request.lyrics
    else:
        raise InvalidRequestError(
            "MiniMax Music 3 sings lyrics: it needs them for a song with vocals",
            field="lyrics",
            provider=provider,
            hint="pass lyrics with [verse]/[chorus] tags on lines of their own, or instrumental=True",
        )
    return {"prompt": caption, "lyrics": lyrics, "audio_duration": float(request.duration)}


def _chunks(frames: int) -> int:
    """How many denoising windows the pipeline makes of `frames` language-model frames."""
    return 1 if frames <= CHUNK_FRAMES else len(range(0, frames - CHUNK_HOP, CHUNK_HOP))


class _Watch:
    """Progress and cancellation for one pipeline call, from forward pre-hooks on its models (the modular pipeline
    has no step callback): each language-model frame, then each flow-matching step."""

    def __init__(self, loaded: LoadedMiniMaxMusic3, context: RunContext, max_frames: int, steps: int) -> None:
        self.loaded, self.context = loaded, context
        self.max_frames, self.steps = max_frames, steps
        self.prompt_seen = False
        self.frames = 0
        self.depth_calls = 0
        self.transformer_calls = 0

    def _say(self, phase: str, done: int, total: int) -> None:
        if self.context.on_progress is not None:
            self.context.on_progress(ProgressEvent(phase, done, total))

    def language_model(self, module: Any, args: Any) -> None:
        self.context.cancel.raise_if_cancelled()
        if not self.prompt_seen:  # the first call reads the prompt; each later one advances a frame
            self.prompt_seen = True
            return
        self.frames += 1
        self._say("semantic", min(self.frames, self.max_frames), self.max_frames)

    def depth_decoder(self, module: Any, args: Any) -> None:
        self.depth_calls += 1

    def transformer(self, module: Any, args: Any) -> None:
        self.context.cancel.raise_if_cancelled()
        passes = max(1, int(self.loaded.pipeline.guider.num_conditions))
        self.transformer_calls += 1
        if self.transformer_calls % passes:
            return
        # Each frame the language model emits ran the depth decoder codebooks-1 times; the first run is not a frame.
        frames = max(1, self.depth_calls // max(1, self.loaded.codebooks - 1) - 1)
        self._say("denoise", self.transformer_calls // passes, self.steps * _chunks(frames))

    @contextmanager
    def attached(self) -> Iterator[None]:
        pipeline = self.loaded.pipeline
        handles = [
            pipeline.language_model.model.register_forward_pre_hook(self.language_model),
            pipeline.rvq_depth_decoder.register_forward_pre_hook(self.depth_decoder),
            pipeline.transformer.register_forward_pre_hook(self.transformer),
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class DiffusersMiniMaxMusic3(DiffusionPipelineEngine[LoadedMiniMaxMusic3]):
    """MiniMax Music 3 through diffusers' `MiniMaxMusic3ModularPipeline`."""

    min_diffusers = MIN_DIFFUSERS
    install = EXTRA
    marker = MODULAR_MARKER

    def __init__(self, owner: Backend) -> None:
        super().__init__(owner, cache_label=owner.name)

    def nbytes(self, loaded: LoadedMiniMaxMusic3) -> int:
        return module_bytes(*loaded.pipeline.components.values())

    def load_on(self, model: str, device: str) -> LoadedMiniMaxMusic3:
        """`ModularPipeline.from_pretrained(folder)` and `load_components()`, as diffusers' documentation loads it (a
        moved folder still loads from itself: diffusers reads the index's local paths relative to the folder)."""
        from diffusers import ModularPipeline

        folder = self.folder(model)
        pipeline = ModularPipeline.from_pretrained(folder, local_files_only=True)
        pipeline.load_components(dtype=self.torch_dtype(device), local_files_only=True)
        wanted = ("tokenizer", "language_model", "rvq_depth_decoder", "condition_encoder", "transformer", "vocoder")
        missing = [name for name in wanted if getattr(pipeline, name, None) is None]
        if missing:  # load_components only logs a component it could not load
            raise ModelNotAvailableError(
                self.owner.name,
                model,
                f"{folder} did not load {', '.join(missing)}",
                fix=f"point to a complete MiniMax Music 3 folder (`hf download {RELEASE}`)",
            )
        pipeline.to(device)
        # `pipeline.blocks` is a copy: the blocks that run are `_blocks` (diffusers 0.42's modular_pipeline.py).
        _quiet(getattr(pipeline, "_blocks", None))
        return LoadedMiniMaxMusic3(
            pipeline=pipeline,
            sample_rate=int(pipeline.sampling_rate),
            codebooks=int(pipeline.rvq_depth_decoder.config.num_codebooks),
            device=device,
            revision=revision(folder),
            lock=threading.Lock(),
        )

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        checked_extra(request, EXTRA_KEYS, provider=self.owner.name)
        return {"inputs": pipeline_inputs(request, provider=self.owner.name)}

    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: LoadedMiniMaxMusic3,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:
        import numpy as np

        check_output_format(request, model, 2, loaded.sample_rate, self.owner.name)
        seed = default_seed(request)
        inputs: dict[str, Any] = dict(options["inputs"])
        steps = request.steps or DEFAULT_STEPS
        if request.steps is not None:
            inputs["num_inference_steps"] = request.steps
        rows = [self._call(loaded, inputs, seed + row, steps, context) for row in range(request.num_outputs)]
        lengths = [row.shape[-1] for row in rows]
        audio = np.stack([fit_length(row, max(lengths)) for row in rows])
        parameters = {k: v for k, v in inputs.items() if k not in ("prompt", "lyrics")}
        parameters |= {
            "sample_rate": loaded.sample_rate,
            "seed_scope": "output",
            "num_inference_steps": steps,
            # The model may end a song before audio_duration: where each output's song ended.
            "song_seconds": [round(n / loaded.sample_rate, 3) for n in lengths],
        }
        if request.instrumental:
            parameters["instrumental_by"] = f"lyrics {INSTRUMENTAL_LYRICS!r} and {INSTRUMENTAL_CAPTION!r} in the prompt"
        return self.finish(
            audio, loaded=loaded, duration=request.duration, seed=seed, parameters=parameters, load_seconds=load_seconds
        )

    def _call(
        self, loaded: LoadedMiniMaxMusic3, inputs: dict[str, Any], seed: int, steps: int, context: RunContext
    ) -> Any:
        """One pipeline call on the device's compute thread, one generator seeded `seed` (on the CPU, as the
        pipeline samples codes on the generator's device): numpy (2, samples)."""

        def run() -> Any:
            import torch

            max_frames = min(int(inputs["audio_duration"] * FRAME_RATE), 9000)
            watch = _Watch(loaded, context, max_frames, steps)
            generator = torch.Generator(device="cpu").manual_seed(seed)
            with loaded.lock, watch.attached(), torch.inference_mode():
                audio = loaded.pipeline(**inputs, generator=generator, output="audios")
            return audio[0]

        return run_on_device_thread(loaded.device, run)


def _quiet(blocks: Any) -> None:
    """Turn off the progress bars of a block tree (a library prints nothing unasked)."""
    if hasattr(blocks, "set_progress_bar_config"):
        blocks.set_progress_bar_config(disable=True)
    for child in getattr(blocks, "sub_blocks", {}).values():
        _quiet(child)


def model_facts(folder: Path) -> int:
    """A saved pipeline's sample rate (its vocoder's config)."""
    vocoder = json.loads((folder / "vocoder" / "config.json").read_text("utf-8"))
    return int(vocoder.get("sampling_rate", SAMPLE_RATE))


class MiniMaxMusic3Backend(LocalBackend):
    """MiniMax Music 3 songs with vocals through diffusers' modular pipeline."""

    adapters_refused = "MiniMax has published no adapter format for Music 3, and diffusers' modular pipeline loads none"

    settings_keys = LOCAL_SETTINGS

    name = "minimax-music-3"
    description = "MiniMax Music 3 songs with vocals through diffusers (local; wants a 24 GB GPU)"
    default_model = RELEASE
    engine_types: ClassVar[dict[str, Any]] = {"diffusers": DiffusersMiniMaxMusic3}

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=RELEASE,
                description="8.6B language model + 2.4B flow-matching DiT: 44.1 kHz stereo songs up to 6 min",
                capabilities=_caps(),
            )
        ]

    def model_info(self, model: str) -> ModelInfo:
        folder = Path(model).expanduser()
        if (folder / MODULAR_MARKER).is_file() and (folder / "vocoder" / "config.json").is_file():
            return ModelInfo(id=model, capabilities=_caps(model_facts(folder)))
        if model == RELEASE:
            return super().model_info(model)
        return ModelInfo(id=model, capabilities=_caps())
