"""stable-audio-tools as an engine for Stable Audio Open (`[providers.stable-audio] engine = "stable-audio-tools"`).

Stability AI's own library: `get_pretrained_model` (hub id) or `create_model_from_config` + `load_ckpt_state_dict`
(a folder with `model_config.json` and `model.safetensors`), then `generate_diffusion_cond` with timing
conditioning. It also runs Stable Audio Open Small, which diffusers cannot load. Installing it next to a current
torch takes care: see docs/providers/stable-audio.md.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidRequestError, ModelNotAvailableError
from ...request import GenerationRequest
from ..base import Availability, RawGeneration, RunContext, checked_extra, default_seed, fit_length
from ..local import LocalEngine, batch_generation, check_output_format, variation_clip
from ..runtime import TORCH_RNG_LOCK, files_availability, missing_modules, module_bytes, run_on_device_thread

RECIPE = "see docs/providers/stable-audio.md (stable-audio-tools engine) for an install recipe"
FILES = ("model_config.json", "model.safetensors")
EXTRA_KEYS: dict[str, tuple[type, ...]] = {
    "engine": (str,),
    "sampler_type": (str,),
    "sigma_min": (int, float),
    "sigma_max": (int, float),
    "init_noise_level": (int, float),
}
SAMPLERS = (
    "dpmpp-3m-sde",
    "dpmpp-2m-sde",
    "dpmpp-2m",
    "k-heun",
    "k-lms",
    "k-dpmpp-2s-ancestral",
    "k-dpm-2",
    "k-dpm-fast",
)


@dataclass
class LoadedSat:
    """A stable-audio-tools model in memory, with the facts generation needs."""

    model: Any
    sample_rate: int
    sample_size: int
    channels: int
    device: str
    rectified_flow: bool

    @property
    def max_duration(self) -> float:
        """The model's window in seconds."""
        return self.sample_size / self.sample_rate


def sat_availability() -> Availability:
    """Whether stable-audio-tools and what it imports at load time are installed."""
    missing = missing_modules("torch", "stable_audio_tools", "k_diffusion", "torchaudio")
    if missing:
        return Availability(False, f"{', '.join(missing)} not installed (stable-audio-tools engine)", fix=RECIPE)
    return Availability(True)


def checkpoint_state(model: str, settings: dict[str, Any], *, allow_fetch: bool) -> Availability:
    """Whether the model's config and weights are here (a folder, or the Hugging Face cache)."""
    return files_availability(
        model,
        FILES,
        settings,
        allow_fetch=allow_fetch,
        folder_fix="point to a folder with model_config.json and model.safetensors",
        download_note=f"accept the licence on https://huggingface.co/{model}, log in, then ",
    )


def _options(request: GenerationRequest) -> dict[str, Any]:
    options = checked_extra(request, EXTRA_KEYS, provider="stable-audio", label="stable-audio (stable-audio-tools)")
    sampler = options.get("sampler_type", "dpmpp-3m-sde")
    if sampler not in SAMPLERS:
        raise InvalidRequestError(
            f"sampler_type {sampler!r} is not one of {', '.join(SAMPLERS)}", field="extra", provider="stable-audio"
        )
    return options


class SatEngine(LocalEngine[LoadedSat]):
    """Loads and runs Stable Audio Open through stable-audio-tools for the `stable-audio` backend."""

    name = "stable-audio-tools"

    def availability(self) -> Availability:
        return sat_availability()

    def model_availability(self, model: str, *, allow_fetch: bool) -> Availability:
        return checkpoint_state(model, self.settings, allow_fetch=allow_fetch)

    def weights_size(self, model: str) -> int:
        return _weights_size(model)

    def nbytes(self, loaded: LoadedSat) -> int:
        return module_bytes(loaded.model)

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        return _options(request)

    def load_on(self, model: str, device: str) -> LoadedSat:
        state = checkpoint_state(model, self.owner.settings, allow_fetch=True)
        if not state.available:
            raise ModelNotAvailableError(self.owner.name, model, state.reason, fix=state.fix)
        folder = Path(model).expanduser()
        if folder.is_dir():
            from stable_audio_tools.models.factory import create_model_from_config
            from stable_audio_tools.models.utils import load_ckpt_state_dict

            config = json.loads((folder / "model_config.json").read_text("utf-8"))
            net = create_model_from_config(config)
            net.load_state_dict(load_ckpt_state_dict(str(folder / "model.safetensors")))
        else:
            from stable_audio_tools import get_pretrained_model

            net, config = get_pretrained_model(model)
        net = net.to(device).eval().requires_grad_(False)
        return LoadedSat(
            model=net,
            sample_rate=int(config["sample_rate"]),
            sample_size=int(config["sample_size"]),
            channels=int(config.get("audio_channels", 2)),
            device=device,
            rectified_flow=getattr(net, "diffusion_objective", "v") in ("rectified_flow", "rf_denoiser"),
        )

    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: LoadedSat,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:
        """Run one request through `generate_diffusion_cond`."""
        import torch
        from stable_audio_tools.inference.generation import generate_diffusion_cond

        if request.duration > loaded.max_duration + 1e-9:
            raise InvalidRequestError(
                f"duration {request.duration:g} s is over the {loaded.max_duration:g} s window of {model}",
                field="duration",
                provider=self.owner.name,
            )
        check_output_format(request, model, loaded.channels, loaded.sample_rate, self.owner.name)
        seed = default_seed(request)
        steps = request.steps or 100
        conditioning = [{"prompt": request.prompt, "seconds_start": 0, "seconds_total": request.duration}]
        kwargs: dict[str, Any] = {
            "steps": steps,
            "cfg_scale": request.guidance if request.guidance is not None else 7.0,
            "batch_size": request.num_outputs,
            "sample_size": loaded.sample_size,
            "seed": seed,
            "device": loaded.device,
            "sampler_type": options.get("sampler_type", "dpmpp-3m-sde"),
        }
        if not loaded.rectified_flow:
            kwargs |= {
                "sigma_min": float(options.get("sigma_min", 0.3)),
                "sigma_max": float(options.get("sigma_max", 500.0)),
            }
        if request.negative_prompt is not None:
            kwargs["negative_conditioning"] = [
                {**conditioning[0], "prompt": request.negative_prompt}
            ] * request.num_outputs
        if request.audio_prompt is not None:
            audio = variation_clip(request, loaded.sample_rate, loaded.channels, self.owner.name)
            kwargs["init_audio"] = (loaded.sample_rate, torch.from_numpy(np.ascontiguousarray(audio)))
            kwargs["init_noise_level"] = float(options.get("init_noise_level", 1.0))

        def on_step(info: dict[str, Any]) -> None:
            context.progress("denoise", int(info["i"]) + 1, steps)  # raises when the caller cancelled

        def run() -> Any:
            with TORCH_RNG_LOCK, contextlib.redirect_stdout(io.StringIO()), torch.inference_mode():
                wav = generate_diffusion_cond(
                    loaded.model, conditioning=conditioning * request.num_outputs, callback=on_step, **kwargs
                )
            return wav.float().cpu().numpy()

        total = round(request.duration * loaded.sample_rate)
        audio_out = fit_length(run_on_device_thread(loaded.device, run), total)
        parameters = {k: v for k, v in kwargs.items() if k not in ("init_audio", "negative_conditioning", "device")}
        parameters |= {
            "engine": "stable-audio-tools",
            "sample_rate": loaded.sample_rate,
            "seed_scope": "batch",
            "batch_size": request.num_outputs,
        }
        if request.negative_prompt is not None:
            parameters["negative_prompt"] = request.negative_prompt
        from importlib.metadata import version

        return batch_generation(
            audio_out,
            sample_rate=loaded.sample_rate,
            seed=seed,
            parameters=parameters,
            device=loaded.device,
            load_seconds=load_seconds,
            engine_versions={"torch": torch.__version__, "stable-audio-tools": version("stable-audio-tools")},
        )


def _weights_size(model: str) -> int:
    path = Path(model).expanduser() / "model.safetensors"
    return path.stat().st_size if path.is_file() else 0
