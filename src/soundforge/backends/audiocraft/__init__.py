"""audiocraft as an engine: MusicGen (`[providers.musicgen] engine = "audiocraft"`) and AudioGen (`audiogen`).

Same request, same provenance fields as the transformers engine; the work is audiocraft's own code:
`get_pretrained` (hub id, a folder holding `state_dict.bin` + `compression_state_dict.bin`, or audiocraft's
random `debug` model), `set_generation_params`, then `generate`, `generate_continuation` (audio prompt) or
`generate_with_chroma` (melody, for checkpoints with a chroma conditioner). Long requests use audiocraft's own
sliding-window extension (`extend_stride`). Installing audiocraft next to a current torch takes care: see
docs/providers/audiocraft.md.
"""

from __future__ import annotations

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
    Availability,
    Backend,
    RawGeneration,
    RunContext,
    checked_extra,
    default_seed,
    fit_length,
)
from ..devices import check_device_dtype
from ..local import LocalBackend, LocalEngine, batch_generation, check_output_format, input_clip
from ..runtime import TORCH_RNG_LOCK, files_availability, missing_modules, module_bytes, run_on_device_thread

RECIPE = "see docs/providers/audiocraft.md for an install recipe that works with current torch"
CHECKPOINT_FILES = ("state_dict.bin", "compression_state_dict.bin")
EXTRA_KEYS = {"do_sample": bool, "extend_stride": float, "two_step_cfg": bool, "engine": str, "decoder": str}
DECODERS = ("encodec", "multiband-diffusion")
MBD_REPO = "facebook/multiband-diffusion"
MBD_FILE = "mbd_musicgen_32khz.th"  # MultiBand Diffusion trained on MusicGen's 32 kHz EnCodec tokens


@dataclass
class LoadedAudiocraft:
    """An audiocraft generation model in memory, with the facts generation needs."""

    model: Any  # audiocraft.models.MusicGen | AudioGen
    device: str
    sample_rate: int
    channels: int
    frame_rate: float
    max_duration: float
    melody: bool


def audiocraft_availability() -> Availability:
    """Whether audiocraft and the modules it imports at load time are installed."""
    missing = missing_modules("torch", "audiocraft", "torchaudio", "xformers")
    if missing:
        return Availability(False, f"{', '.join(missing)} not installed (audiocraft engine)", fix=RECIPE)
    return Availability(True)


def checkpoint_state(provider: str, model: str, settings: dict[str, Any], *, allow_fetch: bool) -> Availability:
    """Whether audiocraft can load `model` here without a download (or may download it when allowed)."""
    if model == "debug":
        return Availability(True)
    return files_availability(
        model,
        CHECKPOINT_FILES,
        settings,
        allow_fetch=allow_fetch,
        folder_fix="point to a folder exported by audiocraft (audiocraft.utils.export)",
    )


def extra_options(provider: str, request: GenerationRequest, settings: dict[str, Any]) -> dict[str, Any]:
    """Validated `extra` for the audiocraft engine, with defaults from the provider settings."""
    options: dict[str, Any] = {
        "do_sample": True,
        "two_step_cfg": False,
        "extend_stride": float(settings.get("extend_stride", 0) or 0),
        "decoder": str(settings.get("decoder", "encodec")),
    }
    options |= checked_extra(request, EXTRA_KEYS, provider=provider, label=f"{provider} (audiocraft)")
    if options["decoder"] not in DECODERS:
        raise InvalidRequestError(
            f"decoder {options['decoder']!r} is not one of {', '.join(DECODERS)}", field="extra", provider=provider
        )
    return options


def _checkpoint_globals() -> list[Any]:
    """Classes a MultiBand Diffusion checkpoint pickles besides tensors: its OmegaConf configs.

    torch >= 2.6 loads with `weights_only=True`, which refuses them; allowing these plain data classes (and nothing
    that runs code) lets audiocraft's own loader read the file.
    """
    import collections
    import typing

    from omegaconf import DictConfig, ListConfig, nodes
    from omegaconf.base import ContainerMetadata, Metadata

    return [
        DictConfig,
        ListConfig,
        ContainerMetadata,
        Metadata,
        typing.Any,
        dict,
        list,
        collections.defaultdict,
        nodes.AnyNode,
        nodes.IntegerNode,
        nodes.FloatNode,
        nodes.StringNode,
        nodes.BooleanNode,
    ]


class AudiocraftEngine(LocalEngine[LoadedAudiocraft]):
    """Loads and runs one audiocraft model family ("musicgen" or "audiogen") for a backend."""

    name = "audiocraft"

    def __init__(self, owner: Backend, family: str | None = None) -> None:
        super().__init__(owner)
        self.family = family or owner.name
        self._decoders: dict[str, Any] = {}  # model id -> MultiBandDiffusion over that model's codec

    def availability(self) -> Availability:
        return audiocraft_availability()

    def model_availability(self, model: str, *, allow_fetch: bool) -> Availability:
        return checkpoint_state(self.owner.name, model, self.settings, allow_fetch=allow_fetch)

    def weights_size(self, model: str) -> int:
        return weights_size(model)

    def nbytes(self, loaded: LoadedAudiocraft) -> int:
        return module_bytes(loaded.model.lm, loaded.model.compression_model)

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        return extra_options(self.owner.name, request, self.settings)

    def unload(self, model: str | None = None) -> None:
        """Forget one loaded model, or all of them, with their diffusion decoders."""
        super().unload(model)
        for key in [k for k in self._decoders if model is None or k == model]:
            del self._decoders[key]

    def multiband_diffusion(self, model: str, loaded: LoadedAudiocraft) -> Any:
        """MultiBand Diffusion for a loaded MusicGen (`mbd_model` setting: hub id or folder), loaded once."""
        if self.family != "musicgen" or loaded.sample_rate != 32000 or loaded.channels != 1:
            raise InvalidRequestError(
                "MultiBand Diffusion decodes MusicGen's 32 kHz mono tokens only",
                field="extra",
                provider=self.owner.name,
                hint="use decoder 'encodec'",
            )
        if model not in self._decoders:
            import torch
            from audiocraft.models.loaders import load_diffusion_models
            from audiocraft.models.multibanddiffusion import DiffusionProcess, MultiBandDiffusion
            from audiocraft.modules.diffusion_schedule import NoiseSchedule

            source = str(self.owner.settings.get("mbd_model", MBD_REPO))
            state = files_availability(
                source,
                (MBD_FILE,),
                self.owner.settings,
                allow_fetch=True,
                folder_fix=f"point mbd_model to a folder holding {MBD_FILE}",
            )
            if not state.available:
                raise ModelNotAvailableError(self.owner.name, source, state.reason, fix=state.fix)
            folder = Path(source).expanduser()
            with torch.serialization.safe_globals(_checkpoint_globals()):
                models, processors, cfgs = load_diffusion_models(
                    str(folder) if folder.is_dir() else source, filename=MBD_FILE, device=loaded.device
                )
            processes = [
                DiffusionProcess(
                    model=m.eval(),
                    noise_schedule=NoiseSchedule(**cfg.schedule, sample_processor=processor, device=loaded.device),
                )
                for m, processor, cfg in zip(models, processors, cfgs, strict=True)
            ]
            self._decoders[model] = MultiBandDiffusion(DPs=processes, codec_model=loaded.model.compression_model)
        return self._decoders[model]

    def load_on(self, model: str, device: str) -> LoadedAudiocraft:
        state = checkpoint_state(self.owner.name, model, self.owner.settings, allow_fetch=True)
        if not state.available:
            raise ModelNotAvailableError(self.owner.name, model, state.reason, fix=state.fix)
        from audiocraft.models import AudioGen, MusicGen

        check_device_dtype(self.name, device, "auto", "float32", provider=self.owner.name)

        cls: Any = MusicGen if self.family == "musicgen" else AudioGen
        folder = Path(model).expanduser()
        net = cls.get_pretrained(str(folder) if model != "debug" and folder.is_dir() else model, device=device)
        conditioners = net.lm.condition_provider.conditioners
        return LoadedAudiocraft(
            model=net,
            device=device,
            sample_rate=int(net.sample_rate),
            channels=int(net.audio_channels),
            frame_rate=float(net.frame_rate),
            max_duration=float(net.max_duration),
            melody="self_wav" in conditioners,
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
        """Run one request through audiocraft and return its tracks."""
        import torch

        check_output_format(request, model, loaded.channels, loaded.sample_rate, self.owner.name)
        if request.melody is not None and not loaded.melody:
            raise InvalidRequestError(
                f"{model} has no melody (chroma) conditioner",
                field="melody",
                provider=self.owner.name,
                hint="use a -melody checkpoint",
            )
        net = loaded.model
        stride = options["extend_stride"] or min(18.0, loaded.max_duration * 0.6)
        if not 0 < stride < loaded.max_duration:
            raise InvalidRequestError(
                f"extend_stride must be positive and shorter than the {loaded.max_duration:g} s window",
                field="extra",
                provider=self.owner.name,
            )
        params: dict[str, Any] = {
            "use_sampling": options["do_sample"],
            "duration": request.duration,
            "two_step_cfg": options["two_step_cfg"],
            "extend_stride": stride,
        }
        for field, arg in (
            ("temperature", "temperature"),
            ("top_k", "top_k"),
            ("top_p", "top_p"),
            ("guidance", "cfg_coef"),
        ):
            value = getattr(request, field)
            if value is not None:
                params[arg] = value
        descriptions = [request.prompt] * request.num_outputs
        seed = default_seed(request)

        def on_step(done: int, total: int) -> None:
            context.progress("decode", min(done, total), total)  # raises when the caller cancelled

        def run() -> Any:
            diffusion = self.multiband_diffusion(model, loaded) if options["decoder"] == "multiband-diffusion" else None
            with TORCH_RNG_LOCK:
                net.set_generation_params(**params)
                net.set_custom_progress_callback(on_step)
                torch.manual_seed(seed)
                try:
                    with torch.inference_mode():
                        if request.audio_prompt is not None:
                            wav, tokens = self._continue(request, loaded, descriptions)
                        elif request.melody is not None:
                            melody, rate = request.melody.load()
                            wav, tokens = net.generate_with_chroma(
                                descriptions,
                                torch.from_numpy(melody)[None].expand(len(descriptions), -1, -1),
                                rate,
                                progress=True,
                                return_tokens=True,
                            )
                        else:
                            wav, tokens = net.generate(descriptions, progress=True, return_tokens=True)
                        if diffusion is not None:  # the same tokens, decoded by diffusion instead of EnCodec's
                            wav = diffusion.tokens_to_wav(tokens)
                finally:
                    net.set_custom_progress_callback(None)
            return wav.float().cpu().numpy()

        audio = run_on_device_thread(loaded.device, run)
        total = round(request.duration * loaded.sample_rate)
        audio = fit_length(audio, total)  # the codec's last frame can fall a few samples short
        parameters = {
            **params,
            "engine": "audiocraft",
            "decoder": options["decoder"],
            "sample_rate": loaded.sample_rate,
            "frame_rate": loaded.frame_rate,
            "seed_scope": "batch",
            "batch_size": request.num_outputs,
        }
        import audiocraft

        return batch_generation(
            audio,
            sample_rate=loaded.sample_rate,
            seed=seed,
            parameters=parameters,
            device=loaded.device,
            load_seconds=load_seconds,
            engine_versions={"torch": torch.__version__, "audiocraft": audiocraft.__version__},
        )

    def _continue(self, request: GenerationRequest, loaded: LoadedAudiocraft, descriptions: list[str]) -> Any:
        import torch

        prompt = input_clip(request, loaded.sample_rate, loaded.channels)
        if prompt.shape[1] / loaded.sample_rate >= request.duration:
            raise InvalidRequestError(
                "the audio prompt is not shorter than the requested duration; duration counts the prompt too",
                field="duration",
                provider=self.owner.name,
            )
        batch = torch.from_numpy(np.ascontiguousarray(prompt))[None].expand(len(descriptions), -1, -1)
        return loaded.model.generate_continuation(
            batch, loaded.sample_rate, descriptions, progress=True, return_tokens=True
        )


def weights_size(model: str) -> int:
    """Bytes of an exported audiocraft checkpoint folder (0 for a hub id: its size is not known before download)."""
    path = Path(model).expanduser()
    return sum((path / f).stat().st_size for f in CHECKPOINT_FILES if (path / f).is_file()) if path.is_dir() else 0


def audiogen_caps(max_duration: float = 600.0) -> Capabilities:
    """What AudioGen accepts: sound effects at 16 kHz mono, continuation, long-form by extension."""
    return Capabilities(
        min_duration=0.04,
        max_duration=max_duration,
        sample_rates=(16000,),
        channels=(1,),
        fields=frozenset(
            {
                "seed",
                "num_outputs",
                "temperature",
                "top_k",
                "top_p",
                "guidance",
                "channels",
                "sample_rate",
                "extra",
                "audio_prompt",
                "audio_prompt_mode",
            }
        ),
        audio_prompt_modes=frozenset({"continuation"}),
        max_outputs=8,
        seed_deterministic=True,
        cost_hint="local; AudioGen medium (1.5B) wants a GPU",
    )


class AudiogenBackend(LocalBackend):
    """Meta AudioGen (text to sound effects) through audiocraft."""

    settings_keys = LOCAL_SETTINGS | {"extend_stride", "decoder", "mbd_model"}

    name = "audiogen"
    description = "Meta AudioGen through audiocraft (local, sound effects)"
    default_model = "facebook/audiogen-medium"
    engine_types: ClassVar[dict[str, Callable[[Any], LocalEngine[Any]]]] = {"audiocraft": AudiocraftEngine}

    @property
    def runner(self) -> AudiocraftEngine:
        """The audiocraft engine (AudioGen's only one)."""
        engine = self.engine_named("audiocraft")
        assert isinstance(engine, AudiocraftEngine)
        return engine

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=self.default_model,
                description="16 kHz mono sound effects, 10 s window",
                capabilities=audiogen_caps(),
            )
        ]

    def model_info(self, model: str) -> ModelInfo:
        return ModelInfo(id=model, capabilities=audiogen_caps())
