"""MusicGen through transformers: the engine (load, run, batch, stream, continue, long form) and the facts of
the published checkpoints it runs."""

from __future__ import annotations

import contextlib
import json
import math
import queue
import time
from collections.abc import Callable
from concurrent import futures
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...audio import AudioArray, resample, to_channels
from ...capabilities import Capabilities
from ...errors import InvalidRequestError, UnsupportedFeatureError
from ...request import GenerationRequest
from ..adapters import adapters_key, peft_adapters
from ..base import (
    AudioChunk,
    Availability,
    Backend,
    ChunkAssembler,
    ChunkStream,
    ProgressEvent,
    RawGeneration,
    RunContext,
    checked_extra,
    default_seed,
    fit_length,
)
from ..devices import check_device_dtype, dtype_name
from ..local import LocalEngine, batch_generation, check_output_format, input_clip
from ..runtime import (
    TORCH_RNG_LOCK,
    Batcher,
    checkpoint_availability,
    missing_modules,
    module_bytes,
    pick_dtype,
    resolve_checkpoint,
    revision,
    run_on_device_thread,
    submit_on_device_thread,
    weights_on_disk,
)
from .chroma import melody_chroma
from .decode import decode_arguments, decode_mode
from .step import stepping
from .stream import AllTokensIn, StreamDecoder

EXTRA = 'pip install "soundforge[musicgen]"'
HUB_MODELS = {
    # id: (stereo, melody)
    "facebook/musicgen-small": (False, False),
    "facebook/musicgen-medium": (False, False),
    "facebook/musicgen-large": (False, False),
    "facebook/musicgen-melody": (False, True),
    "facebook/musicgen-melody-large": (False, True),
    "facebook/musicgen-stereo-small": (True, False),
    "facebook/musicgen-stereo-medium": (True, False),
    "facebook/musicgen-stereo-large": (True, False),
    "facebook/musicgen-stereo-melody": (True, True),
    "facebook/musicgen-stereo-melody-large": (True, True),
}
WINDOW_SECONDS = 30.0  # the context MusicGen was trained on
EXTEND_STRIDE = 18.0  # audiocraft's default: keep 12 s of context, add 18 s per step
MAX_DURATION = 600.0
SEAM_SECONDS = 0.02  # cross-fade where a long-form chunk joins the audio before it
STREAM_CHUNK_SECONDS = 1.0  # audio per streamed chunk (the first is half as long): `stream_chunk_seconds`
STREAM_CONTEXT_SECONDS = 1.0  # decoded before each streamed chunk, for EnCodec's LSTM: `stream_context_seconds`
EXTRA_KEYS = {"do_sample": bool, "window": float, "extend_stride": float, "engine": str}


def _caps(*, stereo: bool, melody: bool, sample_rate: int = 32000, frame_rate: int = 50) -> Capabilities:
    fields = {"seed", "num_outputs", "temperature", "top_k", "top_p", "guidance", "channels", "sample_rate", "extra"}
    fields |= {"adapters"}  # the transformers engine's (PEFT); the audiocraft engine refuses them
    fields |= {"melody"} if melody else {"audio_prompt", "audio_prompt_mode"}
    return Capabilities(
        min_duration=1.0 / frame_rate,
        max_duration=WINDOW_SECONDS if melody else MAX_DURATION,
        sample_rates=(sample_rate,),
        channels=(2,) if stereo else (1,),
        fields=frozenset(fields),
        audio_prompt_modes=frozenset() if melody else frozenset({"continuation"}),
        max_outputs=8,
        seed_deterministic=True,
        streaming=True,
        cost_hint="local; about 11x slower than real time for musicgen-small on a 2-core CPU",
    )


@dataclass
class LoadedModel:
    """A checkpoint in memory with the facts generation needs."""

    model: Any
    tokenizer: Any
    melody: bool
    sample_rate: int
    frame_rate: int
    channels: int
    delay: int  # codebook delay: frames = new tokens - delay
    device: str
    revision: str | None
    chroma_length: int | None


class TransformersEngine(LocalEngine[LoadedModel]):
    """MusicGen through transformers' `MusicgenForConditionalGeneration` / `MusicgenMelodyForConditionalGeneration`
    (the default engine): batching of concurrent requests, continuation, melody, long-form by extension, style
    adapters through PEFT."""

    loads_adapters = True

    name = "transformers"

    def __init__(self, owner: Backend) -> None:
        super().__init__(owner, cache_label=owner.name)
        decode_mode(self.settings, owner.name)  # a wrong `decode` is refused before any model loads
        self._batcher: Batcher[_BatchItem, tuple[Any, int, dict[str, Any]]] = Batcher(
            self._run_batch,
            window=float(self.settings.get("batch_window", 0.02)),
            max_batch=int(self.settings.get("max_batch_size", 8)),
        )

    def pull_note(self, model: str) -> str:
        return ""  # a transformers folder, loaded as published

    def availability(self) -> Availability:
        missing = missing_modules("torch", "transformers")
        if missing:
            return Availability(False, f"{' and '.join(missing)} not installed", fix=EXTRA)
        return Availability(True)

    def model_availability(self, model: str, *, allow_fetch: bool) -> Availability:
        return checkpoint_availability(
            self.owner.name, model, self.settings, marker="config.json", allow_fetch=allow_fetch
        )

    def _folder(self, model: str) -> str:
        return resolve_checkpoint(self.owner.name, model, self.settings, marker="config.json")

    def weights_size(self, model: str) -> int:
        return weights_on_disk(self._folder(model))

    def nbytes(self, loaded: LoadedModel) -> int:
        return module_bytes(loaded.model)

    def load_on(self, model: str, device: str) -> LoadedModel:
        from transformers import (
            AutoConfig,
            AutoTokenizer,
            MusicgenForConditionalGeneration,
            MusicgenMelodyForConditionalGeneration,
        )

        folder = self._folder(model)
        config = AutoConfig.from_pretrained(folder)
        melody = config.model_type == "musicgen_melody"
        cls: Any = MusicgenMelodyForConditionalGeneration if melody else MusicgenForConditionalGeneration
        setting = str(self.settings.get("dtype", "auto"))
        dtype = check_device_dtype(
            self.name,
            device,
            setting,
            dtype_name(setting, device),
            kind="melody" if melody else "any",
            provider=self.owner.name,
        )
        net = cls.from_pretrained(folder, dtype=pick_dtype(dtype, device))
        channels = int(config.decoder.audio_channels)
        return LoadedModel(
            model=net.to(device).eval(),
            tokenizer=AutoTokenizer.from_pretrained(folder),
            melody=melody,
            sample_rate=int(config.audio_encoder.sampling_rate),
            frame_rate=int(config.audio_encoder.frame_rate),
            channels=channels,
            delay=int(config.decoder.num_codebooks) // channels - 1,
            device=device,
            revision=revision(folder),
            chroma_length=getattr(config, "chroma_length", None),
        )

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        return _extra_options(request, self.settings)

    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: LoadedModel,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:
        check_output_format(request, model, loaded.channels, loaded.sample_rate, self.owner.name)
        seed = default_seed(request)
        kwargs = self._generate_kwargs(request, loaded, options)
        total = round(request.duration * loaded.sample_rate)
        batch_info: dict[str, Any] = {}
        if self._batchable(request, options):
            # Same model, same frame count, same sampling settings: concurrent requests share one batch.
            sampling = tuple(
                sorted((k, repr(v)) for k, v in kwargs.items() if k not in ("input_ids", "attention_mask"))
            )
            # Requests with other adapters never share a call: the adapters are part of the key.
            key = (model, self._frames(request.duration, loaded), sampling, adapters_key(context.adapters))
            audio, seed, batch_info = self._batcher.submit(
                key, _BatchItem(request, context, seed, loaded, options), size=request.num_outputs
            )
            context.cancel.raise_if_cancelled()
        else:

            def run() -> Any:
                import torch

                with TORCH_RNG_LOCK, self._adapters(loaded, context):
                    torch.manual_seed(seed)
                    with torch.inference_mode():
                        if request.audio_prompt is not None:
                            return self._continue(request, loaded, kwargs, context)
                        if request.duration <= options["window"]:
                            return self._run(loaded, kwargs, self._frames(request.duration, loaded), [context])
                        return self._long_form(request, loaded, kwargs, options, context)

            audio = run_on_device_thread(loaded.device, run)
        audio = fit_length(audio, total)  # the codec's last frame can fall a few samples short
        parameters = _parameters(request, loaded, kwargs) | batch_info
        if request.duration > options["window"]:
            parameters |= {"window": options["window"], "extend_stride": options["extend_stride"]}
        return _generation(audio, loaded, seed, parameters, load_seconds)

    def check_stream(self, request: GenerationRequest, model: str) -> None:
        """One window of text-to-music (or melody) streams; a continuation and long-form extension do not yet."""
        window = _extra_options(request, self.settings)["window"]
        if request.audio_prompt is not None:
            raise UnsupportedFeatureError(
                "streaming", f"{self.owner.name}:{model}", detail="a continuation of an audio prompt is not streamed"
            )
        if request.duration > window:
            raise UnsupportedFeatureError(
                "streaming",
                f"{self.owner.name}:{model}",
                detail=f"long-form generation past the {window:g} s window is not streamed (ask for at most that)",
            )

    def stream(self, request: GenerationRequest, model: str, context: RunContext) -> ChunkStream:
        """Generate on the device thread while this generator hands on the audio `StreamDecoder` releases.

        Streams are not batched with other requests. Closing the generator cancels the run at its next step and
        waits for the device thread to let go of it.
        """
        options = self.prepare(request)
        started = time.perf_counter()
        loaded = self.load(model)
        load_seconds = time.perf_counter() - started
        check_output_format(request, model, loaded.channels, loaded.sample_rate, self.owner.name)
        seed = default_seed(request)
        kwargs = self._generate_kwargs(request, loaded, options)
        frames = self._frames(request.duration, loaded)
        rate = loaded.frame_rate
        chunk = float(self.settings.get("stream_chunk_seconds", STREAM_CHUNK_SECONDS))
        context_seconds = float(self.settings.get("stream_context_seconds", STREAM_CONTEXT_SECONDS))
        ready: queue.SimpleQueue[list[AudioChunk] | None] = queue.SimpleQueue()
        decoder = StreamDecoder(
            loaded.model,
            batch=request.num_outputs,
            channels=loaded.channels,
            frames=frames,
            samples=round(request.duration * loaded.sample_rate),
            hop=int(np.prod(loaded.model.config.audio_encoder.upsampling_ratios)),
            first_frames=max(1, round(chunk * rate / 2)),
            chunk_frames=max(1, round(chunk * rate)),
            context_frames=math.ceil(context_seconds * rate),
            sample_rate=loaded.sample_rate,
            emit=ready.put,
        )

        def run() -> None:
            import torch

            try:
                with TORCH_RNG_LOCK, self._adapters(loaded, context):
                    torch.manual_seed(seed)
                    with torch.inference_mode():
                        self._run(loaded, kwargs, frames, [context], on_step=decoder.step)
            except AllTokensIn:
                pass
            finally:
                ready.put(None)

        running = submit_on_device_thread(loaded.device, run)
        assembler = ChunkAssembler()
        try:
            while (chunks := ready.get()) is not None:
                for piece in chunks:
                    yield assembler.add(piece)
            running.result()
        finally:
            if not running.done():  # the listener left: stop at the next step, and wait until it has
                context.cancel.cancel()
                futures.wait([running])
        audio = np.stack([assembler.track(index) for index in range(request.num_outputs)])
        parameters = _parameters(request, loaded, kwargs) | {
            "streamed": {
                "chunk_seconds": chunk,
                "context_seconds": context_seconds,
                "lookahead_frames": decoder.lookahead,
            }
        }
        return _generation(audio, loaded, seed, parameters, load_seconds)

    def _adapters(self, loaded: LoadedModel, context: RunContext) -> AbstractContextManager[None]:
        """The call's adapters loaded into the model through PEFT (and counted in the memory ledger) for a block."""
        return peft_adapters(
            loaded.model, context.adapters, provider=self.owner.name, memory=self.owner.memory, device=loaded.device
        )

    def _batchable(self, request: GenerationRequest, options: dict[str, Any]) -> bool:
        """Plain text-to-music within one window can share a batch (unless `batching = false`)."""
        return (
            bool(self.settings.get("batching", True))
            and request.melody is None
            and request.audio_prompt is None
            and request.duration <= options["window"]
        )

    def _run_batch(self, items: list[_BatchItem]) -> list[tuple[Any, int, dict[str, Any]]]:
        """One `generate()` for several requests; each gets its slice, the batch's seed and the batch size."""
        import torch

        first = items[0]
        prompts = [it.request.prompt for it in items for _ in range(it.request.num_outputs)]
        kwargs = self._generate_kwargs(first.request, first.loaded, first.options, prompts=prompts)

        def run() -> Any:
            with TORCH_RNG_LOCK, self._adapters(first.loaded, first.context):
                torch.manual_seed(first.seed)
                with torch.inference_mode():
                    return self._run(
                        first.loaded,
                        kwargs,
                        self._frames(first.request.duration, first.loaded),
                        [it.context for it in items],
                    )

        audio = run_on_device_thread(first.loaded.device, run)
        results, start = [], 0
        for it in items:
            end = start + it.request.num_outputs
            results.append(
                (
                    audio[start:end],
                    first.seed,
                    {"batched_requests": len(items), "batch_outputs": len(prompts), "batch_offset": start},
                )
            )
            start = end
        return results

    def _generate_kwargs(
        self, request: GenerationRequest, loaded: LoadedModel, options: dict[str, Any], prompts: list[str] | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for `model.generate`: only what the request sets, so defaults stay the model's."""
        texts = prompts if prompts is not None else [request.prompt] * request.num_outputs
        inputs = loaded.tokenizer(texts, return_tensors="pt", padding=True)
        kwargs: dict[str, Any] = {k: v.to(loaded.device) for k, v in inputs.items()}
        for field, arg in (
            ("temperature", "temperature"),
            ("top_k", "top_k"),
            ("top_p", "top_p"),
            ("guidance", "guidance_scale"),
        ):
            value = getattr(request, field)
            if value is not None:
                kwargs[arg] = value
        if "do_sample" in request.extra:
            kwargs["do_sample"] = options["do_sample"]
        if request.melody is not None:
            kwargs["input_features"] = self._chroma(request, loaded)
        return kwargs

    def _frames(self, seconds: float, loaded: LoadedModel) -> int:
        return max(1, math.ceil(seconds * loaded.frame_rate))

    def _run(
        self,
        loaded: LoadedModel,
        kwargs: dict[str, Any],
        frames: int,
        contexts: list[RunContext],
        prompt: AudioArray | None = None,
        done: int = 0,
        total_steps: int | None = None,
        on_step: Callable[[Any], None] | None = None,
    ) -> Any:
        """One `generate()` call making `frames` new frames (after an optional audio prompt); numpy (B, C, N).

        `on_step` sees the token matrix after every step (streaming decodes from it)."""
        import torch

        steps = frames + loaded.delay
        call = dict(kwargs)
        if prompt is not None:
            call["input_values"] = torch.from_numpy(prompt).to(loaded.device, loaded.model.dtype)
        from transformers import StoppingCriteriaList

        progress = _progress_criteria(contexts, done, total_steps or steps, on_step)
        mode = decode_mode(self.settings, self.owner.name)
        call |= decode_arguments(mode)
        with stepping(loaded.model, steps) if mode == "fast" else contextlib.nullcontext():
            out = loaded.model.generate(
                **call, max_new_tokens=steps, stopping_criteria=StoppingCriteriaList([progress])
            )
        return out.float().cpu().numpy()

    def _continue(
        self, request: GenerationRequest, loaded: LoadedModel, kwargs: dict[str, Any], context: RunContext
    ) -> Any:
        """Continue an audio prompt: the output is the prompt followed by new audio, `duration` long in all."""
        prompt = input_clip(request, loaded.sample_rate, loaded.channels)
        prompt_seconds = prompt.shape[1] / loaded.sample_rate
        if prompt_seconds >= request.duration:
            raise InvalidRequestError(
                f"the audio prompt ({prompt_seconds:.2f} s) is not shorter than the requested "
                f"duration ({request.duration:g} s); duration counts the prompt too",
                field="duration",
                provider=self.owner.name,
            )
        window = _extra_options(request, self.settings)["window"]
        if request.duration > window:
            raise InvalidRequestError(
                f"continuation output is limited to the {window:g} s window", field="duration", provider=self.owner.name
            )
        batch = np.repeat(prompt[None], request.num_outputs, axis=0)
        new_frames = self._frames(request.duration - prompt_seconds, loaded)
        return self._run(loaded, kwargs, new_frames, [context], prompt=batch)

    def _long_form(
        self,
        request: GenerationRequest,
        loaded: LoadedModel,
        kwargs: dict[str, Any],
        options: dict[str, Any],
        context: RunContext,
    ) -> Any:
        """Past the window: keep `window - extend_stride` seconds as context and add up to `extend_stride` each step."""
        if loaded.melody:
            raise InvalidRequestError(
                "long-form generation is not available for melody models",
                field="duration",
                provider=self.owner.name,
                hint=f"ask for at most {options['window']:g} s",
            )
        sr, window, stride = loaded.sample_rate, options["window"], options["extend_stride"]
        total = round(request.duration * sr)
        context_samples = round((window - stride) * sr)
        chunk_frames = [self._frames(window, loaded)]
        produced = chunk_frames[0] * sr // loaded.frame_rate
        while produced < total:
            add = self._frames(min(stride, (total - produced) / sr), loaded)
            chunk_frames.append(add)
            produced += add * sr // loaded.frame_rate
        total_steps = sum(f + loaded.delay for f in chunk_frames)
        audio = self._run(loaded, kwargs, chunk_frames[0], [context], total_steps=total_steps)
        done = chunk_frames[0] + loaded.delay
        seam = max(1, round(SEAM_SECONDS * sr))
        for frames in chunk_frames[1:]:
            prompt = np.ascontiguousarray(audio[:, :, -context_samples:])
            out = self._run(loaded, kwargs, frames, [context], prompt=prompt, done=done, total_steps=total_steps)
            done += frames + loaded.delay
            # The model re-decodes the context; fade from our audio into its version, then append what is new.
            start = prompt.shape[2]
            fade = np.linspace(0.0, 1.0, seam, dtype=np.float32)
            joined = audio[:, :, -seam:] * (1 - fade) + out[:, :, start - seam : start] * fade
            audio = np.concatenate([audio[:, :, :-seam], joined, out[:, :, start:]], axis=2)
        return audio

    def _chroma(self, request: GenerationRequest, loaded: LoadedModel) -> Any:
        import torch

        assert request.melody is not None
        audio, rate = request.melody.load()
        mono = to_channels(resample(audio, rate, 32000), 1)[0]
        chroma = melody_chroma(mono)
        if loaded.chroma_length:
            chroma = chroma[: loaded.chroma_length]
        batch = np.repeat(chroma[None], request.num_outputs, axis=0)
        return torch.from_numpy(batch).to(loaded.device, loaded.model.dtype)


def _parameters(request: GenerationRequest, loaded: LoadedModel, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the provenance records of a call: the generate() arguments the request set, and the format."""
    return {
        **{k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask", "input_features")},
        "duration": request.duration,
        "sample_rate": loaded.sample_rate,
        "seed_scope": "batch",
        "batch_size": request.num_outputs,
        "frame_rate": loaded.frame_rate,
    }


def _generation(
    audio: Any, loaded: LoadedModel, seed: int, parameters: dict[str, Any], load_seconds: float
) -> RawGeneration:
    import torch
    import transformers

    return batch_generation(
        audio,
        sample_rate=loaded.sample_rate,
        seed=seed,
        parameters=parameters,
        device=loaded.device,
        load_seconds=load_seconds,
        revision=loaded.revision,
        engine_versions={"torch": torch.__version__, "transformers": transformers.__version__},
    )


def _progress_criteria(
    contexts: list[RunContext], done: int, total: int, on_step: Callable[[Any], None] | None = None
) -> Any:
    """A stopping criterion that never stops: it reports each decoding step to every caller of the batch, and
    raises once all of them cancelled (one caller cancelling does not stop the others); then `on_step`, if any,
    sees the tokens so far.

    (transformers' MusicGen `generate` drops its `streamer` argument; stopping criteria run at every step.)
    """
    import torch
    from transformers import StoppingCriteria

    class ProgressCriteria(StoppingCriteria):
        def __init__(self) -> None:
            self.done = done

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            self.done += 1
            for context in contexts:
                if not context.cancel.cancelled and context.on_progress is not None:
                    context.on_progress(ProgressEvent("decode", min(self.done, total), total))
            if all(context.cancel.cancelled for context in contexts):
                contexts[0].cancel.raise_if_cancelled()
            if on_step is not None:
                on_step(input_ids)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return ProgressCriteria()


@dataclass
class _BatchItem:
    """One request waiting in the batcher."""

    request: GenerationRequest
    context: RunContext
    seed: int
    loaded: LoadedModel
    options: dict[str, Any]


def _extra_options(request: GenerationRequest, settings: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "do_sample": True,
        "window": float(settings.get("window", WINDOW_SECONDS)),
        "extend_stride": float(settings.get("extend_stride", EXTEND_STRIDE)),
    }
    options |= checked_extra(request, EXTRA_KEYS, provider="musicgen")
    if not 0 < options["extend_stride"] < options["window"]:
        raise InvalidRequestError(
            "extend_stride must be positive and shorter than the window", field="extra", provider="musicgen"
        )
    return options


def _local_config(model: str) -> dict[str, Any] | None:
    path = Path(model).expanduser() / "config.json"
    if path.is_file():
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return data
    return None
