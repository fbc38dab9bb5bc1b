"""`demucs`: stems of any track by Meta's Demucs (local): vocals, drums, bass and the rest, for a mix made anywhere.

A separation is a request with `audio_prompt_mode="extract"`: the mix is the audio prompt, `stem` the part asked
for. Demucs separates every source of its model at once, so the result holds them all, the one asked for first
and each with its role (`soundforge.separate` keeps the ones you name). The call is Demucs' own `demucs.api`
sequence on `demucs.apply.apply_model`: the mix at the model's rate (julius, as Demucs resamples), normalised by the
mean and spread of its mono sum, separated in overlapping segments with `shifts` random time shifts (seeded:
`random` is seeded from the request's seed, so a seed gives the same stems), then scaled back.

Models are Demucs' Hugging Face exports (`adefossez/HTDemucs`, ...: a bag-of-models YAML and one safetensors file
per model, read by `demucs.hf`), found in the Hugging Face cache, downloaded where allowed, or a folder holding
the same files. The weights' licence is not the code's MIT: "provided only for scientific purposes" (their author,
facebookresearch/demucs#327), so a commercial policy refuses them; the licence record says so.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..capabilities import Capabilities, ModelInfo
from ..errors import InvalidRequestError, ModelNotAvailableError
from ..request import GenerationRequest
from .base import (
    LOCAL_SETTINGS,
    Availability,
    RawGeneration,
    RawTrack,
    RunContext,
    checked_extra,
    default_seed,
    fit_length,
)
from .local import LocalBackend, LocalEngine
from .runtime import looks_like_path, missing_modules, module_bytes, offline, run_on_device_thread

#: Demucs' released bags of models: name -> (Hugging Face repository, sources in the model's order).
#: demucs 4.1 `demucs/hf.py` (`hf_repo_name`, `DEFAULT_NAMESPACE`) and `demucs/remote/*.yaml`.
HUB_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "htdemucs": ("adefossez/HTDemucs", ("drums", "bass", "other", "vocals")),
    "htdemucs_ft": ("adefossez/HTDemucs-ft", ("drums", "bass", "other", "vocals")),
    "htdemucs_6s": ("adefossez/HTDemucs-6s", ("drums", "bass", "other", "vocals", "guitar", "piano")),
    "hdemucs_mmi": ("adefossez/Demucs-hdemucs_mmi", ("drums", "bass", "other", "vocals")),
}
#: Demucs' source names that soundforge spells otherwise (`soundforge.music.STEMS`).
STEM_NAMES = {"piano": "keyboard"}
SAMPLE_RATE = 44100
EXTRA_KEYS: dict[str, Any] = {"shifts": int, "overlap": float, "split": bool, "segment": float, "engine": str}
INSTALL = 'pip install "soundforge[demucs]"'
#: `apply_model` draws its shifts from Python's global `random`: seeded and restored under this lock.
_RANDOM_LOCK = threading.Lock()


def stem_name(source: str) -> str:
    """The soundforge stem name of a Demucs source."""
    return STEM_NAMES.get(source, source)


def _caps(sources: tuple[str, ...]) -> Capabilities:
    return Capabilities(
        min_duration=0.1,
        max_duration=600,
        sample_rates=(SAMPLE_RATE,),
        channels=(2,),
        fields=frozenset({"seed", "audio_prompt", "audio_prompt_mode", "stem", "channels", "sample_rate", "extra"}),
        max_outputs=1,
        seed_deterministic=True,
        audio_prompt_modes=frozenset({"extract"}),
        stems=frozenset(stem_name(s) for s in sources),
        cost_hint="local; about real time on a laptop CPU for htdemucs, far faster on a GPU",
    )


@dataclass(frozen=True)
class LoadedDemucs:
    """A bag of Demucs models on a device."""

    bag: Any
    device: str
    sources: tuple[str, ...]
    sample_rate: int
    channels: int


def _options(request: GenerationRequest) -> dict[str, Any]:
    options = checked_extra(request, EXTRA_KEYS, provider="demucs")
    if "shifts" in options and not 0 <= options["shifts"] <= 20:
        raise InvalidRequestError("extra['shifts'] must be 0..20", field="extra", provider="demucs")
    if "overlap" in options and not 0 <= options["overlap"] < 1:
        raise InvalidRequestError("extra['overlap'] must be in [0, 1)", field="extra", provider="demucs")
    if "segment" in options and not options["segment"] > 0:
        raise InvalidRequestError("extra['segment'] must be a positive number of seconds", field="extra")
    return options


def hub_files(model: str) -> tuple[str, str] | None:
    """(repository, bag file) of a hub model name (`htdemucs`, or `namespace/name`); None for a folder."""
    if Path(model).expanduser().is_dir() or looks_like_path(model):
        return None
    namespace, _, name = model.rpartition("/")
    if name in HUB_MODELS and not namespace:
        return HUB_MODELS[name][0], f"{name}.yaml"
    from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name

    return f"{namespace or DEFAULT_NAMESPACE}/{hf_repo_name(name)}", f"{name}.yaml"


def _bag_file(folder: Path) -> Path:
    found = sorted(folder.glob("*.yaml"))
    if len(found) != 1:
        raise ModelNotAvailableError(
            "demucs",
            str(folder),
            f"{folder} holds {len(found)} bag files (*.yaml); a Demucs export holds one",
            fix="point to a folder laid out like adefossez/HTDemucs: NAME.yaml and one safetensors file per model",
        )
    return found[0]


def weight_files(model: str, settings: dict[str, Any], *, allow_fetch: bool) -> tuple[Path, list[Path]]:
    """The bag file and the weight files of `model`, local; downloaded only when `allow_fetch` and downloads are
    on. Raises ModelNotAvailableError naming where they go and how to get them."""
    import yaml

    hub = hub_files(model)
    if hub is None:
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise ModelNotAvailableError("demucs", model, f"folder {folder} does not exist")
        bag = _bag_file(folder)
        sigs = yaml.safe_load(bag.read_text())["models"]
        missing = [f"{s}.safetensors" for s in sigs if not (folder / f"{s}.safetensors").is_file()]
        if missing:
            raise ModelNotAvailableError("demucs", model, f"{folder} has no {', '.join(missing)}")
        return bag, [folder / f"{s}.safetensors" for s in sigs]
    from huggingface_hub import constants, hf_hub_download

    repo, bag_name = hub
    fetch = allow_fetch and not offline(settings)

    def local(filename: str) -> Path:  # the cache first: no network call for weights already here
        try:
            return Path(hf_hub_download(repo, filename, local_files_only=True))
        except Exception:
            if not fetch:
                raise
            return Path(hf_hub_download(repo, filename, etag_timeout=10))

    try:
        bag = local(bag_name)
        sigs = yaml.safe_load(bag.read_text())["models"]
        files = [local(f"{s}.safetensors") for s in sigs]
    except Exception as exc:
        why = "downloads are off (HF_HUB_OFFLINE or allow_download = false)" if offline(settings) else ""
        raise ModelNotAvailableError(
            "demucs",
            model,
            f"the weights of {repo} are not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
            + (f" and {why}" if why else f": {type(exc).__name__}"),
            fix=f"hf download {repo} (or set [providers.demucs] model = a folder with NAME.yaml and its "
            "safetensors files)",
        ) from exc
    return bag, files


def load_bag(bag_file: Path, files: list[Path]) -> Any:
    """Demucs' bag of models from its export, as `demucs.hf.get_hf_model` builds it."""
    import yaml
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model

    bag = yaml.safe_load(bag_file.read_text())
    return BagOfModels([load_safetensors_model(f) for f in files], bag.get("weights"), bag.get("segment")).eval()


class DemucsEngine(LocalEngine[LoadedDemucs]):
    """Demucs' own code: `demucs.hf` to load, `demucs.apply.apply_model` to separate."""

    name = "demucs"

    def availability(self) -> Availability:
        missing = missing_modules("torch", "demucs", "julius", "yaml")
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed", fix=INSTALL)
        return Availability(True)

    def model_availability(self, model: str, *, allow_fetch: bool) -> Availability:
        try:
            weight_files(model, self.settings, allow_fetch=False)
        except ModelNotAvailableError as exc:
            if allow_fetch and not offline(self.settings) and hub_files(model) is not None:
                return Availability(True)  # a download will be tried at load time
            return Availability(False, exc.message.split(": ", 1)[-1], fix=exc.hint)
        return Availability(True)

    def weights_size(self, model: str) -> int:
        try:
            _, files = weight_files(model, self.settings, allow_fetch=False)
        except ModelNotAvailableError:
            return 0
        return sum(f.stat().st_size for f in files)

    def nbytes(self, loaded: LoadedDemucs) -> int:
        return module_bytes(loaded.bag)

    def prepare(self, request: GenerationRequest) -> dict[str, Any]:
        return _options(request)

    def load_on(self, model: str, device: str) -> LoadedDemucs:
        bag_file, files = weight_files(model, self.owner.settings, allow_fetch=True)
        bag = load_bag(bag_file, files).to(device)
        return LoadedDemucs(
            bag=bag,
            device=device,
            sources=tuple(bag.sources),
            sample_rate=int(bag.samplerate),
            channels=int(bag.audio_channels),
        )

    def run(
        self,
        request: GenerationRequest,
        model: str,
        loaded: LoadedDemucs,
        options: dict[str, Any],
        context: RunContext,
        load_seconds: float,
    ) -> RawGeneration:
        import julius.resample
        import torch
        from demucs.apply import apply_model

        from ..audio import to_channels

        assert request.audio_prompt is not None and request.stem is not None  # the request pairs them
        stems = [stem_name(s) for s in loaded.sources]
        if request.stem not in stems:
            raise InvalidRequestError(
                f"{model} separates {', '.join(stems)}; not {request.stem!r}", field="stem", provider=self.owner.name
            )
        clip, rate = request.audio_prompt.load()
        wav = torch.from_numpy(to_channels(clip, loaded.channels).copy())
        if rate != loaded.sample_rate:
            wav = julius.resample.resample_frac(wav, rate, loaded.sample_rate)
        shifts = int(options.get("shifts", 1))
        overlap = float(options.get("overlap", 0.25))
        split = bool(options.get("split", True))
        segment = options.get("segment")
        seed = default_seed(request)
        total = _passes(loaded, wav.shape[-1], shifts, overlap, split, segment)
        done = 0

        def on_event(event: dict[str, Any]) -> None:
            nonlocal done
            if event.get("state") == "end":
                done += 1
            context.progress("separate", min(done, total), total)  # raises when the caller cancelled

        def separate() -> Any:
            ref = wav.mean(0)
            mean, std = ref.mean(), ref.std() + 1e-8
            with _RANDOM_LOCK:
                kept = random.getstate()
                random.seed(seed)
                try:
                    out = apply_model(
                        loaded.bag,
                        ((wav - mean) / std)[None],
                        shifts=shifts,
                        split=split,
                        overlap=overlap,
                        segment=segment,
                        device=loaded.device,
                        callback=on_event,
                    )
                finally:
                    random.setstate(kept)
            return (out * std + mean)[0].float().cpu().numpy()

        separated = run_on_device_thread(loaded.device, separate)
        context.progress("separate", total, total)
        wanted = round(request.duration * loaded.sample_rate)
        order = [stems.index(request.stem)] + [i for i in range(len(stems)) if stems[i] != request.stem]
        parameters = {
            "engine": "demucs",
            "model_sources": list(loaded.sources),
            "shifts": shifts,
            "overlap": overlap,
            "split": split,
            **({"segment": segment} if segment is not None else {}),
            "input_sample_rate": rate,
        }
        tracks = [
            RawTrack(
                audio=fit_length(separated[index], wanted),
                sample_rate=loaded.sample_rate,
                seed=seed,
                parameters={**parameters, "source": loaded.sources[index]},
                role=stems[index],
            )
            for index in order
        ]
        import demucs

        return RawGeneration(
            tracks=tracks,
            engine_versions={"torch": torch.__version__, "demucs": demucs.__version__},
            device=loaded.device,
            load_seconds=load_seconds,
        )


def _passes(loaded: LoadedDemucs, length: int, shifts: int, overlap: float, split: bool, segment: Any) -> int:
    """How many segment passes `apply_model` makes (for progress): per model, per shift, per segment."""
    models = len(loaded.bag.models)
    if not split:
        return models * max(1, shifts)
    seconds = float(segment) if segment is not None else float(loaded.bag.models[0].segment)
    segment_length = int(loaded.sample_rate * seconds)
    stride = max(1, int((1 - overlap) * segment_length))
    # A shifted pass covers up to half a second more of padded audio.
    longest = length + (int(0.5 * loaded.sample_rate) if shifts else 0)
    return models * max(1, shifts) * math.ceil(longest / stride)


class DemucsBackend(LocalBackend):
    """Meta Demucs stem separation (local)."""

    settings_keys = LOCAL_SETTINGS

    name = "demucs"
    description = "Meta Demucs stem separation (local; vocals, drums, bass, other for any track)"
    default_model = "htdemucs"
    engine_types: ClassVar[dict[str, Callable[[Any], LocalEngine[Any]]]] = {"demucs": DemucsEngine}

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                id=name,
                description=f"{len(sources)} stems ({', '.join(stem_name(s) for s in sources)}), 44.1 kHz stereo",
                capabilities=_caps(sources),
            )
            for name, (_, sources) in HUB_MODELS.items()
        ]

    def check(self, request: GenerationRequest, model: str) -> None:
        if request.audio_prompt_mode != "extract":
            raise InvalidRequestError(
                "demucs separates a mix into stems; it makes no audio from a prompt",
                field="audio_prompt_mode",
                provider=self.name,
                hint="call soundforge.separate(track_or_file), or give audio_prompt with audio_prompt_mode='extract' "
                "and a stem",
            )
        super().check(request, model)

    def model_info(self, model: str) -> ModelInfo:
        if model in HUB_MODELS:
            return super().model_info(model)
        # A folder or another export: its sources are known once loaded, and the stem asked for is checked then.
        return ModelInfo(id=model, capabilities=_caps(tuple(HUB_MODELS["htdemucs_6s"][1])))
