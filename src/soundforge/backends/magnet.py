"""`magnet`: Meta's MAGNeT through audiocraft (local): text to music (32 kHz) and to sound effects (16 kHz).

MAGNeT is non-autoregressive: it fills a whole window of EnCodec tokens by masked decoding, a few iterations per
codebook (`decoding_steps`, default 20, 10, 10, 10), instead of one token per step like MusicGen. Its attention
after the first codebook is restricted by a mask that audiocraft sends to xformers' CUDA kernels; on a CPU (or
wherever those kernels cannot run) soundforge answers the same call with PyTorch's attention and the same mask
(`audiocraft/attention.py`, which says exactly what differs). The request maps to audiocraft's
`set_generation_params`: temperature (annealed to zero over each codebook unless `anneal_temperature` is false),
top_k, top_p, guidance as `max_cfg_coef` (annealed to `extra["min_guidance"]`, default 1), and `extra` for the
decoding steps, the span arrangement and scoring, and sampling. Each model has a fixed window (10 or 30 s): the
window is generated and cut to the duration asked for. audiocraft cuts a window to whole spans of 3 frames (500
frames -> 498: 9.96 s of a 10 s model), so a request for the whole window ends in up to 2 frames of silence
(`padded_seconds` in the provenance). Progress and cancellation come at every decoding step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ..capabilities import Capabilities, ModelInfo
from ..errors import InvalidRequestError, ModelNotAvailableError
from ..request import GenerationRequest
from .audiocraft import LoadedAudiocraft, audiocraft_availability, checkpoint_state, weights_size
from .base import (
    LOCAL_SETTINGS,
    Availability,
    RawGeneration,
    RunContext,
    checked_extra,
    default_seed,
    fit_length,
)
from .devices import check_device_dtype
from .local import LocalBackend, LocalEngine, batch_generation, check_output_format
from .runtime import TORCH_RNG_LOCK, module_bytes, run_on_device_thread

#: The released checkpoints: id -> (sample rate, window seconds). audiocraft `models/magnet.py` `get_pretrained`
#: (10- and 30-second music models) and docs/MAGNET.md (the sound models are trained at 16 kHz,
#: `solver=magnet/audio_magnet_16khz`, on 10-second samples).
HUB_MODELS = {
    "facebook/magnet-small-10secs": (32000, 10.0),
    "facebook/magnet-medium-10secs": (32000, 10.0),
    "facebook/magnet-small-30secs": (32000, 30.0),
    "facebook/magnet-medium-30secs": (32000, 30.0),
    "facebook/audio-magnet-small": (16000, 10.0),
    "facebook/audio-magnet-medium": (16000, 10.0),
}
EXTRA_KEYS: dict[str, Any] = {
    "decoding_steps": list,
    "span_arrangement": str,
    "span_scoring": str,
    "anneal_temperature": bool,
    "min_guidance": float,
    "do_sample": bool,
    "engine": str,
}
SPAN_ARRANGEMENTS = ("nonoverlap", "stride1")
_KIND = {32000: "music", 16000: "sound effects"}
SPAN_SCORINGS = ("max", "prod")


def _caps(sample_rate: int, window: float) -> Capabilities:
    return Capabilities(
        min_duration=0.04,
        max_duration=window,
        sample_rates=(sample_rate,),
        channels=(1,),
        fields=frozenset(
            {"seed", "num_outputs", "temperature", "top_k", "top_p", "guidance", "channels", "sample_rate", "extra"}
        ),
        max_outputs=8,
        seed_deterministic=True,
        cost_hint="local; a few dozen passes over the whole window instead of one step per token",
    )


def _options(request: GenerationRequest) -> dict[str, Any]:
    """`extra` checked before anything loads (the number of decoding steps is checked against the model's
    codebooks once it is loaded)."""
    options = checked_extra(request, EXTRA_KEYS, provider="magnet")
    steps = options.get("decoding_steps")
    if steps is not None and not (
        steps and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in steps)
    ):
        raise InvalidRequestError(
            "extra['decoding_steps'] must be a list of positive integers, one per codebook (e.g. [20, 10, 10, 10])",
            field="extra",
            provider="magnet",
        )
    for key, allowed in (("span_arrangement", SPAN_ARRANGEMENTS), ("span_scoring", SPAN_SCORINGS)):
        if key in options and options[key] not in allowed:
            raise InvalidRequestError(
                f"extra[{key!r}] must be one of {', '.join(allowed)}", field="extra", provider="magnet"
            )
    return options


class MagnetEngine(LocalEngine[LoadedAudiocraft]):
    """MAGNeT's own audiocraft code: `MAGNeT.get_pretrained`, `set_generation_params`, `generate`."""

    name = "audiocraft"

    def availability(self) -> Availability:
        return audiocraft_availability()

    def model_availability(self, model: str, *, allow_fetch: bool) -> Availability:
        return checkpoint_state(self.owner.name, model, self.settings, allow_fetch=allow_fetch)

    def weights_size(self, model: str) -> int:
        return weights_size(model)

    def nbytes(self, loaded: LoadedAudiocraft) -> int:
        return module_bytes(loaded.model.lm, loaded.model.compression_model)

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        return _options(request)

    def load_on(self, model: str, device: str) -> LoadedAudiocraft:
        state = checkpoint_state(self.owner.name, model, self.owner.settings, allow_fetch=True)
        if not state.available:
            raise ModelNotAvailableError(self.owner.name, model, state.reason, fix=state.fix)
        from audiocraft.models import MAGNeT

        from .audiocraft.attention import backend_kept

        check_device_dtype(self.name, device, "auto", "float32", provider=self.owner.name)
        folder = Path(model).expanduser()
        with backend_kept():  # audiocraft's loader switches every model in the process to xformers
            net = MAGNeT.get_pretrained(str(folder) if folder.is_dir() else model, device=device)
        return LoadedAudiocraft(
            model=net,
            device=device,
            sample_rate=int(net.sample_rate),
            channels=int(net.audio_channels),
            frame_rate=float(net.frame_rate),
            max_duration=float(net.duration),
            melody=False,
        )

    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: LoadedAudiocraft,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:
        import torch

        from .audiocraft.attention import masked_attention

        check_output_format(request, model, loaded.channels, loaded.sample_rate, self.owner.name)
        net = loaded.model
        if request.duration > loaded.max_duration:
            raise InvalidRequestError(
                f"{model} makes {loaded.max_duration:g} s windows; ask for at most that",
                field="duration",
                provider=self.owner.name,
            )
        params = generation_params(request, options, int(net.lm.n_q), self.owner.name)
        descriptions = [request.prompt] * request.num_outputs
        seed = default_seed(request)
        attention = ""

        def on_step(done: int, total: int) -> None:
            context.progress("decode", min(done, total), total)  # raises when the caller cancelled

        def run() -> Any:
            nonlocal attention
            with TORCH_RNG_LOCK, masked_attention(loaded.device) as attention:
                net.set_generation_params(**{k: v for k, v in params.items() if k not in LM_ONLY})
                net.generation_params.update({k: v for k, v in params.items() if k in LM_ONLY})
                net.set_custom_progress_callback(on_step)
                torch.manual_seed(seed)
                try:
                    with torch.inference_mode():
                        wav = net.generate(descriptions, progress=True)
                finally:
                    net.set_custom_progress_callback(None)
            return wav.float().cpu().numpy()

        made = run_on_device_thread(loaded.device, run)
        wanted = round(request.duration * loaded.sample_rate)
        audio = fit_length(made, wanted)
        import audiocraft

        parameters = {
            **params,
            "engine": "audiocraft",
            "attention": attention,
            "window_seconds": loaded.max_duration,
            "padded_seconds": max(0, wanted - made.shape[-1]) / loaded.sample_rate,
            "duration": request.duration,
            "sample_rate": loaded.sample_rate,
            "frame_rate": loaded.frame_rate,
            "seed_scope": "batch",
            "batch_size": request.num_outputs,
        }
        return batch_generation(
            audio,
            sample_rate=loaded.sample_rate,
            seed=seed,
            parameters=parameters,
            device=loaded.device,
            load_seconds=load_seconds,
            engine_versions={"torch": torch.__version__, "audiocraft": audiocraft.__version__},
        )


#: Parameters MAGNeT's language model takes that `MAGNeT.set_generation_params` does not expose.
LM_ONLY = ("anneal_temp", "span_scoring")


def generation_params(
    request: GenerationRequest, options: dict[str, Any], codebooks: int, provider: str
) -> dict[str, Any]:
    """The request as MAGNeT's generation parameters: only what it sets, so the rest stay audiocraft's defaults."""
    params: dict[str, Any] = {}
    for field, arg in (
        ("temperature", "temperature"),
        ("top_k", "top_k"),
        ("top_p", "top_p"),
        ("guidance", "max_cfg_coef"),
    ):
        value = getattr(request, field)
        if value is not None:
            params[arg] = value
    steps = options.get("decoding_steps")
    if steps is not None:
        if len(steps) != codebooks:
            raise InvalidRequestError(
                f"extra['decoding_steps'] needs one count per codebook: this model has {codebooks}",
                field="extra",
                provider=provider,
            )
        params["decoding_steps"] = list(steps)
    for key, arg in (
        ("span_arrangement", "span_arrangement"),
        ("min_guidance", "min_cfg_coef"),
        ("do_sample", "use_sampling"),
        ("anneal_temperature", "anneal_temp"),
        ("span_scoring", "span_scoring"),
    ):
        if key in options:
            params[arg] = options[key]
    return params


class MagnetBackend(LocalBackend):
    """Meta MAGNeT (music and sound effects) through audiocraft."""

    settings_keys = LOCAL_SETTINGS

    name = "magnet"
    description = "Meta MAGNeT through audiocraft (local; non-autoregressive music and sound effects)"
    default_model = "facebook/magnet-small-10secs"
    engine_types: ClassVar[dict[str, Callable[[Any], LocalEngine[Any]]]] = {"audiocraft": MagnetEngine}

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=mid,
                description=f"{_KIND[rate]}, {rate // 1000} kHz mono, {window:g} s window",
                capabilities=_caps(rate, window),
            )
            for mid, (rate, window) in HUB_MODELS.items()
        ]

    def model_info(self, model: str) -> ModelInfo:
        if model in HUB_MODELS:
            return super().model_info(model)
        # A folder (or an unknown id): its rate and window are known once loaded, and checked then.
        return ModelInfo(
            id=model,
            capabilities=_caps(16000 if "audio" in model else 32000, 30.0).model_copy(
                update={"sample_rates": (16000, 32000)}
            ),
        )
