"""soundforge benchmarks: one entry point, one table of ratios measured in the same run.

    python bench/run.py                # results go to stdout; copy them into docs/performance.md with date + machine
    python bench/run.py --no-musicgen  # skip the full-size MusicGen section (about 3 minutes on 2 cores)
    python bench/run.py --no-stable-audio  # skip the full-size Stable Audio section (about 12 minutes, 13 GB)
    python bench/run.py --no-batch     # skip the batch section (local vs Ray vs loop, journal, resume; about 1 minute)
    python bench/run.py --only-dtype   # only the bfloat16 / float32 rows of full-size MusicGen on this CPU
    python bench/run.py --only-engines # only the SDK / direct rows of the local engines (MusicGen, Stable Audio)
    python bench/run.py --only-stream  # only streaming: first chunk and streamed total (synth, MusicGen, serve)
    python bench/run.py --only-minimax-music-3  # MiniMax Music 3: SDK / direct (tiny), real-size DiT and vocoder
    python bench/run.py --only-decode  # MusicGen-small's decode step against its memory-bandwidth floor

Never a timed test: numbers depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from alternated import alternate, sdk_direct_row  # bench/ is on sys.path when this file runs as a script


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _subprocess_time(args: list[str], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _on_engine_thread(fn: Any) -> Any:
    """Run torch work on the thread where soundforge runs its CPU engines, so the process keeps one OpenMP team,
    as a script that only calls the engine would (two teams on 2 cores slow both: docs/performance.md)."""
    from soundforge.backends import run_on_device_thread

    return run_on_device_thread("cpu", fn)


def musicgen_rows(seconds: float = 5.0, rounds: int = 5) -> list[tuple[str, str, str]]:
    """Full-size musicgen-small architecture (random weights): SDK vs direct transformers call, same seed."""
    import tempfile

    import numpy as np
    import torch

    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.musicgen import build_musicgen, build_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="soundforge-bench-")) / "musicgen-small-random"
    _on_engine_thread(lambda: build_musicgen(folder, full_size=True))
    build_tokenizer(folder)  # a small word-level tokenizer; T5's real one is not needed for timing
    prompt = "upbeat synthwave with drums and bass"
    client = Client(Config.load(user_file=False, providers={"musicgen": {"device": "cpu"}}))
    spec = f"musicgen:{folder}"
    client.generate(prompt, provider=spec, duration=0.1, seed=0)  # load once, like a warm server

    loaded = client.backend("musicgen").strategy().load(str(folder))  # the same weights in memory: a fair comparison
    model, inputs = loaded.model, loaded.tokenizer([prompt], return_tensors="pt")
    frames = int(np.ceil(seconds * 50))

    def direct() -> np.ndarray:
        torch.manual_seed(7)
        with torch.inference_mode():
            return model.generate(**inputs, max_new_tokens=frames + 3).numpy()

    # Like with like: both sides on the engine's compute thread of this one process, alternated with the order
    # swapped each round, so neither pays a warm-up or an OpenMP-team change the other does not.
    times, results = alternate(
        lambda: _on_engine_thread(direct),
        lambda: client.generate(prompt, provider=spec, duration=seconds, seed=7),
        rounds,
    )
    reference, generation = results["direct"], results["sdk"]
    t_sdk = statistics.median(times["sdk"])
    n = generation.audio.shape[1]
    identical = bool(np.array_equal(generation.audio[0], reference[0, 0, :n]))
    batch_rows = musicgen_batching_rows(client, spec, folder)
    return [
        sdk_direct_row(
            f"musicgen-small arch, {seconds:g} s, SDK / direct transformers (target <= 1.02)",
            times,
            f"identical audio: {identical}",
        ),
        (
            "musicgen-small arch, decoding speed",
            f"{(frames + 3) / t_sdk:.2f} tok/s",
            f"real-time factor {t_sdk / seconds:.1f} (seconds per second of audio)",
        ),
        *batch_rows,
    ]


def musicgen_dtype_rows(seconds: float = 2.0, rounds: int = 2) -> list[tuple[str, str, str]]:
    """Full-size musicgen-small architecture in bfloat16 against float32 on this CPU (AMX units run bf16 matrix
    products): tokens per second and peak memory of the direct call, alternated, on the engine's compute thread."""
    import resource
    import tempfile

    import torch

    from soundforge.testing.musicgen import build_musicgen, build_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="soundforge-bench-")) / "musicgen-small-random"
    _on_engine_thread(lambda: build_musicgen(folder, full_size=True))
    build_tokenizer(folder)
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(["upbeat synthwave with drums and bass"], return_tensors="pt")
    new_tokens = math.ceil(seconds * 50) + 3
    models = {
        dtype: _on_engine_thread(
            lambda d=dtype: MusicgenForConditionalGeneration.from_pretrained(folder, dtype=d).eval()
        )
        for dtype in (torch.float32, torch.bfloat16)
    }
    times: dict[Any, list[float]] = {dtype: [] for dtype in models}

    def run(model: Any) -> None:
        torch.manual_seed(3)
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=new_tokens)

    _on_engine_thread(lambda: [run(m) for m in models.values()])  # warm-up of both
    for _ in range(rounds):
        for dtype, model in models.items():
            start = time.perf_counter()
            _on_engine_thread(lambda m=model: run(m))
            times[dtype].append(time.perf_counter() - start)
    f32, bf16 = statistics.median(times[torch.float32]), statistics.median(times[torch.bfloat16])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return [
        (
            f"musicgen-small arch, {seconds:g} s, bfloat16 / float32 time (CPU)",
            f"{bf16 / f32:.3f}",
            f"{new_tokens / f32:.1f} tok/s float32, {new_tokens / bf16:.1f} tok/s bfloat16 "
            f"(medians of {rounds}); process peak RSS {peak_mb} MB with both loaded",
        )
    ]


def stable_audio_dtype_rows(rounds: int = 2) -> list[tuple[str, str, str]]:
    """Full-size Stable Audio Open 1.0 DiT and VAE (random weights) in bfloat16 against float32 on this CPU: one
    denoising step as the pipeline makes it (classifier-free guidance: a batch of 2, the 1024-latent window) and
    one VAE decode of 10 s, alternated, on the engine's compute thread. The components, not a whole run: a full
    run takes about 12 minutes per dtype here, and the step and the decode are where its time goes."""
    import resource

    import torch
    from diffusers import AutoencoderOobleck, StableAudioDiTModel
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    def build() -> dict[Any, tuple[Any, Any]]:
        torch.manual_seed(0)
        dit, vae = StableAudioDiTModel().eval(), AutoencoderOobleck().eval()
        return {
            torch.float32: (dit, vae),
            torch.bfloat16: (
                StableAudioDiTModel.from_config(dit.config).to(torch.bfloat16).eval(),
                AutoencoderOobleck.from_config(vae.config).to(torch.bfloat16).eval(),
            ),
        }

    models = _on_engine_thread(build)
    for dtype, (dit, vae) in models.items():  # same weights in both dtypes
        if dtype is not torch.float32:
            dit.load_state_dict(models[torch.float32][0].state_dict())
            vae.load_state_dict(models[torch.float32][1].state_dict())
    window, text_tokens = 1024, 128 + 2  # T5 tokens plus the two duration tokens, as the pipeline concatenates
    rotary = get_1d_rotary_pos_embed(32, window + 1, use_real=True, repeat_interleave_real=False)

    def step(dtype: Any) -> None:
        dit = models[dtype][0]
        with torch.inference_mode():
            dit(
                torch.randn(2, 64, window, dtype=dtype),
                torch.tensor([0.5]),
                encoder_hidden_states=torch.randn(2, text_tokens, 768, dtype=dtype),
                global_hidden_states=torch.randn(2, 1, 1536, dtype=dtype),
                rotary_embedding=rotary,
                return_dict=False,
            )

    def decode(dtype: Any) -> None:
        with torch.inference_mode():
            models[dtype][1].decode(torch.randn(1, 64, math.ceil(10 * 44100 / 2048), dtype=dtype))

    times: dict[str, dict[Any, list[float]]] = {"step": {d: [] for d in models}, "decode": {d: [] for d in models}}
    for dtype in models:  # warm-up of both
        _on_engine_thread(lambda d=dtype: (step(d), decode(d)))
    for _ in range(rounds):
        for dtype in models:
            for part, fn in (("step", step), ("decode", decode)):
                start = time.perf_counter()
                _on_engine_thread(lambda f=fn, d=dtype: f(d))
                times[part][dtype].append(time.perf_counter() - start)
    med = {part: {d: statistics.median(v) for d, v in by.items()} for part, by in times.items()}
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    f32, bf16 = torch.float32, torch.bfloat16
    return [
        (
            "stable-audio-open-1.0 DiT, one CFG step, bfloat16 / float32 time (CPU)",
            f"{med['step'][bf16] / med['step'][f32]:.3f}",
            f"{med['step'][f32]:.1f} s float32, {med['step'][bf16]:.1f} s bfloat16 (medians of {rounds}, alternated)",
        ),
        (
            "stable-audio-open-1.0 VAE, decode 10 s, bfloat16 / float32 time (CPU)",
            f"{med['decode'][bf16] / med['decode'][f32]:.3f}",
            f"{med['decode'][f32]:.2f} s float32, {med['decode'][bf16]:.2f} s bfloat16; process peak RSS "
            f"{peak_gb:.1f} GiB with both dtypes loaded",
        ),
    ]


def ace_step_rows(seconds: float = 10.0, steps: int = 8, rounds: int = 6) -> list[tuple[str, str, str]]:
    """Full-size ACE-Step 1.5 architecture (turbo shapes, random weights) on this CPU: SDK against the direct
    `AceStepPipeline` call, alternated on the engine's compute thread, with identical audio; seconds per step;
    peak memory; then the DiT alone in bfloat16 against float32.

    The pipeline is built in memory and handed to the engine's model cache (what a load would put there): writing
    and reading back 12 GB of random weights would measure the disk, not the SDK.
    """
    import gc
    import resource

    import numpy as np
    import torch

    from soundforge.backends.ace_step import LoadedAceStep
    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.ace_step import build_pipeline

    pipe = _on_engine_thread(lambda: build_pipeline(full_size=True, turbo=True))
    model = "bench/ace-step-1.5-turbo-random"
    client = Client(Config.load(user_file=False, providers={"ace-step": {"device": "cpu"}}))
    engine = client.backend("ace-step").strategy()
    loaded = LoadedAceStep(pipe, int(pipe.sample_rate), True, "cpu", None, threading.Lock())
    engine.cache.get(model, lambda: loaded, device="cpu", estimate=lambda: 0)
    prompt, lyrics = "bright indie pop, female vocals", "[verse]\nwalking home in the rain\n[chorus]\nsing it again"

    def direct() -> np.ndarray:
        torch.manual_seed(5)
        with torch.inference_mode():
            return pipe(
                prompt,
                lyrics=lyrics,
                audio_duration=seconds,
                num_inference_steps=steps,
                bpm=120,
                keyscale="A minor",
                generator=torch.Generator().manual_seed(5),
                output_type="np",
            ).audios

    stamps: list[float] = []

    def sdk() -> Any:
        return client.generate(
            prompt,
            provider=f"ace-step:{model}",
            duration=seconds,
            steps=steps,
            seed=5,
            lyrics=lyrics,
            bpm=120,
            key="A minor",
            on_progress=lambda event: stamps.append(time.perf_counter()),
        )

    def timed_sdk() -> Any:
        stamps.clear()
        return sdk()

    times, results = alternate(lambda: _on_engine_thread(direct), timed_sdk, rounds)
    identical = bool(np.array_equal(results["sdk"].audio, results["direct"][0]))
    per_step = statistics.median(np.diff(stamps)) if len(stamps) > 1 else float("nan")
    t_sdk = statistics.median(times["sdk"])
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    dit = pipe.transformer
    client.close()
    pipe = loaded = None
    gc.collect()

    # The DiT alone, one step as the pipeline makes it (no CFG: turbo), float32 against a bfloat16 copy.
    frames = math.ceil(seconds * 25)
    half = _on_engine_thread(lambda: type(dit).from_config(dit.config).to(torch.bfloat16).eval())
    half.load_state_dict(dit.state_dict())
    conditions = torch.randn(1, 700, 2048)

    def step(model: Any, dtype: Any) -> None:
        with torch.inference_mode():
            model(
                hidden_states=torch.randn(1, frames, 64, dtype=dtype),
                timestep=torch.tensor([0.5], dtype=dtype),
                timestep_r=torch.tensor([0.5], dtype=dtype),
                encoder_hidden_states=conditions.to(dtype),
                context_latents=torch.randn(1, frames, 128, dtype=dtype),
                return_dict=False,
            )

    dtype_times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    pairs = {"float32": (dit, torch.float32), "bfloat16": (half, torch.bfloat16)}
    for m, d in pairs.values():  # warm-up
        _on_engine_thread(lambda m=m, d=d: step(m, d))
    for _ in range(rounds):
        for name, (m, d) in pairs.items():
            start = time.perf_counter()
            _on_engine_thread(lambda m=m, d=d: step(m, d))
            dtype_times[name].append(time.perf_counter() - start)
    f32, bf16 = statistics.median(dtype_times["float32"]), statistics.median(dtype_times["bfloat16"])
    return [
        sdk_direct_row(
            f"ace-step-1.5 arch (turbo), {seconds:g} s, {steps} steps, SDK / direct diffusers (target <= 1.02)",
            times,
            f"identical audio: {identical}",
        ),
        (
            "ace-step-1.5 arch, one denoising step (CPU, float32)",
            f"{per_step:.2f} s",
            f"real-time factor {t_sdk / seconds:.1f} end to end; process peak RSS {peak_gb:.1f} GiB",
        ),
        (
            "ace-step-1.5 DiT, one step, bfloat16 / float32 time (CPU)",
            f"{bf16 / f32:.3f}",
            f"{f32:.2f} s float32, {bf16:.2f} s bfloat16 (medians of {rounds}, alternated)",
        ),
    ]


def ace_step_batching_rows(seconds: float = 10.0, steps: int = 8) -> list[tuple[str, str, str]]:
    """Would batching two concurrent ACE-Step requests into one pipeline call gain on this CPU? The full-size
    architecture (random weights): two prompts one after the other against one call with both, alternated."""
    import torch

    from soundforge.testing.ace_step import build_pipeline

    pipe = _on_engine_thread(lambda: build_pipeline(full_size=True, turbo=True))
    prompts = ["bright indie pop, female vocals", "dark synthwave, male vocals"]

    def call(batch: list[str]) -> None:
        with torch.inference_mode():
            pipe(
                batch if len(batch) > 1 else batch[0],
                lyrics=["[verse]\nla la"] * len(batch) if len(batch) > 1 else "[verse]\nla la",
                audio_duration=seconds,
                num_inference_steps=steps,
                generator=[torch.Generator().manual_seed(i) for i in range(len(batch))],
                output_type="np",
            )

    serial, batched = [], []
    for round_ in range(2):
        for side in ("serial", "batched") if round_ % 2 == 0 else ("batched", "serial"):
            start = time.perf_counter()
            if side == "serial":
                for prompt in prompts:
                    _on_engine_thread(lambda p=prompt: call([p]))
                serial.append(time.perf_counter() - start)
            else:
                _on_engine_thread(lambda: call(prompts))
                batched.append(time.perf_counter() - start)
    t_serial, t_batched = statistics.median(serial), statistics.median(batched)
    return [
        (
            f"ace-step-1.5 arch, 2 requests of {seconds:g} s: one by one / one batched call (CPU)",
            f"{t_serial / t_batched:.2f}x",
            f"{t_serial:.1f} s one by one, {t_batched:.1f} s batched (medians of 2, alternated)",
        )
    ]


def stable_audio_3_rows(rounds: int = 5) -> list[tuple[str, str, str]]:
    """A Stable Audio 3 Small-sized architecture (random weights; DiT 1024 x 16, SAME-Small, T5Gemma-b) on this CPU:
    SDK / direct `StableAudio3Pipeline` for 10 s at the default 8 steps (alternated, order swapped each round),
    identical audio, seconds per step, the real-time factor for 10 s and 60 s, peak memory, bfloat16 / float32."""
    import gc
    import resource
    import tempfile

    import numpy as np
    import torch

    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.stable_audio_3 import build_stable_audio_3

    folder = Path(tempfile.mkdtemp(prefix="soundforge-bench-")) / "sa3-small-random"
    _on_engine_thread(lambda: build_stable_audio_3(folder, full_size=True))
    client = Client(Config.load(user_file=False, providers={"stable-audio-3": {"device": "cpu"}}))
    model = str(folder)
    pipe = client.backend("stable-audio-3").strategy().load(model).text_to_audio  # the direct call's pipeline
    parameters = sum(p.numel() for p in pipe.transformer.parameters()) + sum(p.numel() for p in pipe.vae.parameters())
    prompt = "warm lo-fi piano loop with vinyl crackle"

    def direct(seconds: float) -> np.ndarray:
        with torch.inference_mode():
            return pipe(prompt, duration=seconds, generator=torch.Generator().manual_seed(5), output_type="np").audios

    stamps: list[float] = []

    def sdk(seconds: float) -> Any:
        return client.generate(
            prompt,
            provider=f"stable-audio-3:{model}",
            duration=seconds,
            seed=5,
            on_progress=lambda event: stamps.append(time.perf_counter()),
        )

    _on_engine_thread(lambda: direct(2.0))  # warm-up

    def timed_sdk() -> Any:
        stamps.clear()
        return sdk(10.0)

    times, results = alternate(lambda: _on_engine_thread(lambda: direct(10.0)), timed_sdk, rounds)
    identical = bool(np.array_equal(results["sdk"].audio, results["direct"][0]))
    per_step = statistics.median(np.diff(stamps)) if len(stamps) > 1 else float("nan")
    t_sdk = statistics.median(times["sdk"])
    start = time.perf_counter()
    sdk(60.0)
    t_60 = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    # bfloat16 against float32: the same pipeline cast, 10 s, alternated.
    half_times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(2):
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            _on_engine_thread(lambda d=dtype: pipe.to(d))
            start = time.perf_counter()
            _on_engine_thread(lambda: direct(10.0))
            half_times[name].append(time.perf_counter() - start)
    pipe.to(torch.float32)
    client.close()
    pipe = None
    gc.collect()
    f32, bf16 = statistics.median(half_times["float32"]), statistics.median(half_times["bfloat16"])
    return [
        sdk_direct_row(
            "stable-audio-3 small arch, 10 s, 8 steps, SDK / direct diffusers (target <= 1.02)",
            times,
            f"identical audio: {identical}; DiT + SAME {parameters / 1e6:.0f}M",
        ),
        (
            "stable-audio-3 small arch, real-time factor (seconds of audio per second)",
            f"{10.0 / t_sdk:.2f}x (10 s)",
            f"60 s: {60.0 / t_60:.2f}x ({t_60:.1f} s); one step at 10 s {per_step:.2f} s; peak RSS {peak_gb:.1f} GiB",
        ),
        (
            "stable-audio-3 small arch, 10 s, bfloat16 / float32 time (CPU)",
            f"{bf16 / f32:.3f}",
            f"{f32:.2f} s float32, {bf16:.2f} s bfloat16 (medians of 2, alternated)",
        ),
    ]


def musicgen_batching_rows(client, spec: str, folder: Path, seconds: float = 2.0) -> list[tuple[str, str, str]]:
    """4 concurrent requests: batched by the scheduler vs one by one; cold (load) vs warm request."""
    import asyncio

    from soundforge.client import Client
    from soundforge.config import Config

    prompts = ["calm piano", "upbeat drums", "dark techno", "jazz guitar"]

    async def four(c: Client) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(c.agenerate(p, provider=spec, duration=seconds, seed=1) for p in prompts))
        return time.perf_counter() - start

    batched = Client(Config.load(user_file=False, providers={"musicgen": {"device": "cpu", "batch_window": 0.2}}))
    serial = Client(Config.load(user_file=False, providers={"musicgen": {"device": "cpu", "batching": False}}))
    start = time.perf_counter()
    cold = batched.generate("warm up", provider=spec, duration=0.1, seed=0)
    t_cold = time.perf_counter() - start
    start = time.perf_counter()
    batched.generate("warm up", provider=spec, duration=0.1, seed=0)
    t_warm = time.perf_counter() - start
    serial.generate("warm up", provider=spec, duration=0.1, seed=0)
    t_batched, t_serial = asyncio.run(four(batched)), asyncio.run(four(serial))

    # The engine's own ceiling, same weights, same thread: one generate() for the 4 prompts vs 4 calls.
    import torch

    loaded = batched.backend("musicgen").strategy().load(str(folder))
    new_tokens = math.ceil(seconds * loaded.frame_rate) + loaded.delay

    def direct(texts: list[str]) -> None:
        inputs = loaded.tokenizer(texts, return_tensors="pt", padding=True)
        torch.manual_seed(1)
        with torch.inference_mode():
            loaded.model.generate(**inputs, max_new_tokens=new_tokens)

    start = time.perf_counter()
    _on_engine_thread(lambda: direct(prompts))
    t_direct_batch = time.perf_counter() - start
    start = time.perf_counter()
    for prompt in prompts:
        _on_engine_thread(lambda prompt=prompt: direct([prompt]))
    t_direct_serial = time.perf_counter() - start
    return [
        (
            f"4 concurrent {seconds:g} s requests: one by one / batched (target >= 3x)",
            f"{t_serial / t_batched:.2f}x",
            f"{t_serial:.1f} s one by one, {t_batched:.1f} s batched",
        ),
        (
            "  the engine's ceiling: 4 direct generate() calls / one batched call",
            f"{t_direct_serial / t_direct_batch:.2f}x",
            f"{t_direct_serial:.1f} s vs {t_direct_batch:.1f} s; SDK batched / direct batched "
            f"{t_batched / t_direct_batch:.2f}",
        ),
        (
            "cold request (loads the model) / warm request",
            f"{t_cold / t_warm:.1f}x",
            f"{t_cold:.1f} s cold (load {cold.provenance.timings.load:.1f} s), {t_warm:.2f} s warm",
        ),
        musicgen_serve_row(spec, prompts, seconds, t_batched),
    ]


def musicgen_serve_row(spec: str, prompts: list[str], seconds: float, t_library: float) -> tuple[str, str, str]:
    """The same 4 concurrent requests through `soundforge serve` (jobs in its engine process, batched there):
    POST + one waiting download each, against the library's batched time measured just before."""
    from served import soundforge_serve, submit_and_download  # bench/ is on sys.path when run as a script

    def bodies(texts: list[str], duration: float) -> list[dict[str, object]]:
        return [{"request": {"prompt": text, "duration": duration, "seed": 1}, "provider": spec} for text in texts]

    with soundforge_serve("--workers", "4", env={"SOUNDFORGE_MUSICGEN_BATCH_WINDOW": "0.2"}) as url:
        submit_and_download(url, bodies(["warm up"], 0.1))  # the engine loads the model, like a warm server
        t_served = submit_and_download(url, bodies(prompts, seconds))
    return (
        "  the same 4 requests through soundforge serve (engine process) / the library, batched",
        f"{t_served / t_library:.2f}",
        f"{t_served:.1f} s served, {t_library:.1f} s library",
    )


def cloud_fanout_rows(jobs: int = 200, concurrency: int = 32, latency: float = 0.2) -> list[tuple[str, str, str]]:
    """200 cloud jobs against a loopback fake with 200 ms latency: wall time vs the ideal, and memory growth."""
    import asyncio
    import resource

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    # The fake runs in its own process, as a real service would: its threads must not share our GIL.
    import multiprocessing

    from soundforge.client import Client
    from soundforge.config import Config
    from tests.fakes import KEY

    ready: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve_fake, args=(ready, latency), daemon=True)
    process.start()
    url = ready.get(timeout=30)
    client = Client(
        Config.load(
            user_file=False, providers={"stability": {"base_url": url, "api_key": KEY, "max_concurrency": concurrency}}
        )
    )

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(client.agenerate("x", provider="stability", duration=1, seed=i) for i in range(jobs)))
        return time.perf_counter() - start

    asyncio.run(run())  # warm: connections, imports
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = asyncio.run(run())
    after = resource.getrusage(resource.RUSAGE_SELF)
    grown = (after.ru_maxrss - before.ru_maxrss) / 1024
    # The client's own CPU per job: the fake shares the 2 cores, so the wall also carries the fake's work.
    cpu_ms = 1000 * (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / jobs
    process.terminate()
    ideal = -(-jobs // concurrency) * latency
    return [
        (
            f"cloud fan-out: {jobs} jobs, concurrency {concurrency}, {latency * 1000:.0f} ms latency: wall / ideal "
            "(target <= 1.2)",
            f"{wall / ideal:.2f}",
            f"{wall:.2f} s vs {ideal:.2f} s ideal; client CPU {cpu_ms:.1f} ms per job; peak RSS grew {grown:.0f} MiB "
            "on the second run",
        )
    ]


def stable_audio_batching_rows(folder: Path, seconds: float = 10.0, steps: int = 2) -> list[tuple[str, str, str]]:
    """2 concurrent Stable Audio requests: one pipeline call for both (the scheduler) vs one after the other."""
    import asyncio

    from soundforge.client import Client
    from soundforge.config import Config

    spec = f"stable-audio:{folder}"
    prompts = ["warm analog synth pad", "dusty drum loop"]

    def client(**settings: Any) -> Client:
        return Client(Config.load(user_file=False, providers={"stable-audio": {"device": "cpu", **settings}}))

    async def both(c: Client) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(c.agenerate(p, provider=spec, duration=seconds, steps=steps, seed=3) for p in prompts))
        return time.perf_counter() - start

    batched, serial = client(batch_window=0.5, batching=True), client(batching=False)  # on a CPU "auto" is off
    batched.generate("warm up", provider=spec, duration=1, steps=1, seed=0)
    t_batched = asyncio.run(both(batched))
    batched.close()  # one 13 GB model in memory at a time
    serial.generate("warm up", provider=spec, duration=1, steps=1, seed=0)
    t_serial = asyncio.run(both(serial))
    serial.close()
    return [
        (
            f"stable-audio-open-1.0 arch: 2 concurrent {seconds:g} s requests, one by one / batched",
            f"{t_serial / t_batched:.2f}x",
            f"{t_serial:.1f} s one by one, {t_batched:.1f} s batched",
        )
    ]


def stable_audio_rows(seconds: float = 10.0, steps: int = 2, rounds: int = 5) -> list[tuple[str, str, str]]:
    """Full-size Stable Audio Open 1.0 architecture (random weights): SDK vs direct diffusers call, peak memory,
    and the time of one denoising step with a shorter latent window (speed only: random weights say nothing
    about quality, so soundforge does not offer the shorter window)."""
    import resource
    import tempfile

    import numpy as np
    import torch

    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.stable_audio import build_stable_audio

    folder = _on_engine_thread(
        lambda: build_stable_audio(Path(tempfile.mkdtemp(prefix="soundforge-bench-")) / "sao-random", full_size=True)
    )
    client = Client(Config.load(user_file=False, providers={"stable-audio": {"device": "cpu"}}))
    spec = f"stable-audio:{folder}"
    pipe = client.backend("stable-audio").strategy().load(str(folder)).pipeline  # same object for the direct call

    def direct() -> np.ndarray:
        with torch.inference_mode():
            return pipe(
                "warm analog synth pad",
                audio_end_in_s=seconds,
                num_inference_steps=steps,
                generator=torch.Generator().manual_seed(5),
                output_type="np",
            ).audios

    times, results = alternate(
        lambda: _on_engine_thread(direct),
        lambda: client.generate("warm analog synth pad", provider=spec, duration=seconds, steps=steps, seed=5),
        rounds,
    )
    identical = bool(np.array_equal(results["sdk"].audio, results["direct"][0]))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024

    def one_step(sample_size: int) -> float:
        pipe.transformer.register_to_config(sample_size=sample_size)
        latents = torch.randn(1, 64, sample_size)
        start = time.perf_counter()
        with torch.inference_mode():
            pipe(
                "x",
                audio_end_in_s=min(seconds, sample_size * 2048 / 44100),
                num_inference_steps=1,
                latents=latents,
                output_type="latent",
                guidance_scale=7.0,
            )
        return time.perf_counter() - start

    t_full, t_short = _on_engine_thread(lambda: one_step(1024)), _on_engine_thread(lambda: one_step(256))
    pipe.transformer.register_to_config(sample_size=1024)
    pipe = None  # one 13 GB model in memory at a time: drop this one before the batching rows load theirs
    client.close()
    import gc

    gc.collect()
    return [
        sdk_direct_row(
            f"stable-audio-open-1.0 arch, {seconds:g} s, {steps} steps, SDK / direct diffusers (target <= 1.02)",
            times,
            f"identical audio: {identical}",
        ),
        ("stable-audio-open-1.0 arch, peak memory (process)", f"{peak_gb:.1f} GiB", ""),
        (
            "one denoising step: 1024-latent window / 256-latent window (11.9 s)",
            f"{t_full / t_short:.2f}x",
            f"{t_full:.1f} s vs {t_short:.1f} s; not offered: quality unproven without real weights",
        ),
        *stable_audio_batching_rows(folder, seconds, steps),
    ]


def _cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU time of a process so far (Linux /proc); with `children`, plus that of its live children
    (a server and its engine process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir() if children else ():
        for child in (task / "children").read_text().split():
            total += _cpu_seconds(int(child), children=True)
    return total


def serve_rows(
    jobs: int = 96, concurrency: int = 16, seconds: float = 2.0, rounds: int = 3
) -> list[tuple[str, str, str]]:
    """`soundforge serve` in its own process (as deployed): POST + waiting download of 2 s synth tracks at
    concurrency 16 from a loopback client, against the same jobs through the library directly.

    Two servers: as shipped (jobs in a child engine process) and `--engine inline` (jobs in the server's own
    process, as before the engine process existed). Two clients: httpx (what most Python users would pick) and a
    minimal asyncio client (bench/lean_http.py), because the client shares the 2 cores and httpx alone costs more
    CPU per request than the server. Each round runs every variant once; the table gives the median ratio and
    the range."""
    import asyncio
    import socket
    import tempfile

    import httpx
    from lean_http import LeanHTTP  # bench/ is on sys.path when this file runs as a script

    from soundforge.client import Client
    from soundforge.config import Config

    client = Client(Config.load(user_file=False))
    exe = str(Path(sys.executable).with_name("soundforge"))
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for engine in ("process", "inline"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        store = tempfile.mkdtemp(prefix="soundforge-serve-")
        servers[engine] = (
            subprocess.Popen(
                [
                    exe,
                    "serve",
                    "--port",
                    str(port),
                    "--store",
                    store,
                    "--workers",
                    str(concurrency),
                    "--max-queue",
                    str(jobs * 2),
                    "--engine",
                    engine,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            port,
        )
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)

    def body(i: int) -> dict[str, Any]:
        return {"request": {"prompt": "house 124 BPM", "duration": seconds, "seed": i}, "provider": "synth"}

    async def with_httpx(port: int) -> float:
        bound = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

            async def one(i: int) -> None:
                async with bound:
                    job = (await http.post("/v1/generations", json=body(i))).json()
                    # One download that waits for the job (`?wait=`): two requests per job in all.
                    (await http.get(f"/v1/generations/{job['id']}/audio", params={"wait": 30})).raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(jobs)))
            return time.perf_counter() - start

    async def with_lean(port: int) -> float:
        import json

        bound = asyncio.Semaphore(concurrency)
        http = LeanHTTP("127.0.0.1", port)

        async def one(i: int) -> None:
            async with bound:
                status, answer = await http.request("POST", "/v1/generations", body(i))
                assert status == 202, answer
                status, audio = await http.request("GET", f"/v1/generations/{json.loads(answer)['id']}/audio?wait=30")
                assert status == 200 and audio[:4] == b"RIFF", audio[:200]

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(jobs)))
        await http.aclose()
        return time.perf_counter() - start

    saved = Path(tempfile.mkdtemp(prefix="soundforge-direct-"))

    async def direct(keep: bool) -> float:
        """The library alone: the file in memory, or (keep) saved to disk with tags like the service stores it."""
        bound = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with bound:
                generation = await client.agenerate("house 124 BPM", provider="synth", duration=seconds, seed=i)
                if keep:
                    await asyncio.to_thread(
                        generation.tracks[0].save, saved / f"{i}.wav", overwrite=True, sidecar=False
                    )
                else:
                    await asyncio.to_thread(generation.tracks[0].to_bytes, "wav")

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(jobs)))
        return time.perf_counter() - start

    variants = {"lean": (with_lean, "process"), "httpx": (with_httpx, "process"), "inline": (with_lean, "inline")}
    times: dict[str, list[float]] = {name: [] for name in ("direct", "saved", *variants)}
    cpu: dict[str, list[float]] = {
        name: [] for name in ("direct", "server_lean", "server_inline", "client_lean", "client_httpx")
    }
    try:
        asyncio.run(direct(False))  # warm every path
        for run, engine in variants.values():
            asyncio.run(run(servers[engine][1]))
        for _ in range(rounds):
            before = _cpu_seconds(os.getpid())
            times["direct"].append(asyncio.run(direct(False)))
            cpu["direct"].append(_cpu_seconds(os.getpid()) - before)
            times["saved"].append(asyncio.run(direct(True)))
            for name, (run, engine) in variants.items():
                server, port = servers[engine]
                server_before, before = _cpu_seconds(server.pid, children=True), _cpu_seconds(os.getpid())
                times[name].append(asyncio.run(run(port)))
                cpu.setdefault(f"client_{name}", []).append(_cpu_seconds(os.getpid()) - before)
                cpu.setdefault(f"server_{name}", []).append(_cpu_seconds(server.pid, children=True) - server_before)
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(10)

    def ratio(over: str, base: str) -> str:
        values = sorted(a / b for a, b in zip(times[over], times[base], strict=True))
        return f"{statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f})"

    def per_job(name: str) -> str:
        return f"{1000 * statistics.median(cpu[name]) / jobs:.1f} ms"

    def rate(name: str) -> str:
        return f"{jobs / statistics.median(times[name]):.1f} jobs/s"

    return [
        (
            f"serve: {jobs} x {seconds:g} s synth, concurrency {concurrency}, minimal client: HTTP / library in "
            "memory (target <= 1.1)",
            ratio("lean", "direct"),
            f"{rate('lean')} over HTTP, {rate('direct')} direct "
            f"(its rounds: {min(times['direct']):.2f}-{max(times['direct']):.2f} s)",
        ),
        (
            "  same, HTTP / library saving each file to disk (what the service stores)",
            ratio("lean", "saved"),
            rate("saved"),
        ),
        ("  same with httpx as the client: HTTP / library in memory", ratio("httpx", "direct"), rate("httpx")),
        (
            "  same with --engine inline (jobs in the server's process): HTTP / library in memory",
            ratio("inline", "direct"),
            rate("inline"),
        ),
        (
            "  CPU per job: library / server with its engine / minimal client / httpx client",
            per_job("direct"),
            f"server {per_job('server_lean')} (inline {per_job('server_inline')}), client "
            f"{per_job('client_lean')} minimal, {per_job('client_httpx')} httpx",
        ),
    ]


def _serve_fake(ready: Any, latency: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.fakes import FakeStability

    server = FakeStability()
    server.latency = latency
    ready.put(server.url)
    time.sleep(3600)


def operations_rows(
    jobs: int = 200, concurrency: int = 32, latency: float = 0.2, rounds: int = 3
) -> list[tuple[str, str, str]]:
    """What the team features cost: accounting + budget + callbacks + OpenTelemetry spans on a 200-job cloud fan-out
    (alternated rounds against one fake process), a cache hit for 60 s of audio, and the job journal per job."""
    import asyncio
    import multiprocessing
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from soundforge import Budget
    from soundforge.backends.cloud import CloudJobJournal
    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.ops.cache import DiskCache
    from soundforge.request import GenerationRequest
    from tests.fakes import KEY

    ready: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve_fake, args=(ready, latency), daemon=True)
    process.start()
    url = ready.get(timeout=30)
    config = Config.load(
        user_file=False, providers={"stability": {"base_url": url, "api_key": KEY, "max_concurrency": concurrency}}
    )
    plain = Client(config)
    seen: list[Any] = []
    watched = Client(config, budget=Budget(1e9), callbacks=[seen.append])
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(provider)
        traced = "with OpenTelemetry spans"
    except ImportError:
        traced = "without OpenTelemetry (not installed)"

    def fan_out(client: Any) -> float:
        async def run() -> float:
            start = time.perf_counter()
            await asyncio.gather(
                *(client.agenerate("x", provider="stability", duration=1, seed=i) for i in range(jobs))
            )
            return time.perf_counter() - start

        return asyncio.run(run())

    fan_out(plain), fan_out(watched)  # warm both: connections, imports
    plain_times, watched_times = [], []
    for round_ in range(rounds):
        order = [(plain, plain_times), (watched, watched_times)]
        for client, times in order if round_ % 2 == 0 else reversed(order):
            times.append(fan_out(client))
    process.terminate()
    ratio = min(watched_times) / min(plain_times)
    rows = [
        (
            f"cost + budget + callbacks {traced}, {jobs}-job cloud fan-out: wall / plain (target <= 1.02)",
            f"{ratio:.3f}",
            f"best of {rounds} alternated: {min(watched_times):.3f} s vs {min(plain_times):.3f} s; {len(seen)} events",
        )
    ]
    folder = Path(tempfile.mkdtemp(prefix="soundforge-bench-cache-"))
    cache = DiskCache(folder)
    synth = Client(Config.load(user_file=False), cache=cache)
    made = synth.generate("upbeat house at 124 BPM", provider="synth", duration=60, seed=1)
    key = next(p.name for p in folder.iterdir() if not p.name.startswith("."))
    t_get = _best(lambda: cache.get(key), repeat=7)
    t_hit = _best(lambda: synth.generate("upbeat house at 124 BPM", provider="synth", duration=60, seed=1), repeat=7)
    rows.append(
        (
            "cache hit, 60 s stereo track (target <= 20 ms)",
            f"{t_get * 1000:.1f} ms",
            f"DiskCache.get; the whole generate() on a hit: {t_hit * 1000:.1f} ms ({made.audio.nbytes / 1e6:.0f} MB)",
        )
    )
    journal = CloudJobJournal(folder / "jobs.sqlite")
    request = GenerationRequest(prompt="x", duration=10, seed=1).record()
    count = 200
    start = time.perf_counter()
    for i in range(count):
        journal.record(f"k{i}", "replicate", "meta/musicgen", f"job{i}", request, {"status_url": "u"})
        journal.claim(f"k{i}")
        journal.forget(f"job{i}")
    per_job = (time.perf_counter() - start) / count
    rows.append(
        (
            "job journal per cloud job: record + lookup + forget (target <= 2 ms)",
            f"{per_job * 1000:.2f} ms",
            f"mean of {count} jobs, SQLite WAL on {folder.parent}",
        )
    )
    return rows


def main() -> None:
    if "--only-stream" in sys.argv:
        from stream_rows import stream_rows  # bench/ is on sys.path when this file runs as a script

        for name, ratio, detail in stream_rows():
            print(f"{name}  {ratio}  {detail}")
        return
    if "--only-minimax-music-3" in sys.argv:
        from minimax_music3_rows import minimax_music3_rows  # bench/ is on sys.path when this file runs as a script

        for name, ratio, detail in minimax_music3_rows():
            print(f"{name}  {ratio}  {detail}")
        return
    if "--only-decode" in sys.argv:
        from decode_rows import decode_rows  # bench/ is on sys.path when this file runs as a script

        for name, share, detail in decode_rows(["small"]):
            print(f"{name}  {share}  {detail}")
        return
    if "--only-operations" in sys.argv:
        for name, ratio, detail in operations_rows():
            print(f"{name}  {ratio}  {detail}")
        return
    if any(
        flag in sys.argv
        for flag in (
            "--only-dtype",
            "--only-engines",
            "--only-ace-step",
            "--only-ace-step-batching",
            "--only-stable-audio-3",
        )
    ):
        if "--only-dtype" in sys.argv:
            rows = [*musicgen_dtype_rows(), *stable_audio_dtype_rows()]
        elif "--only-ace-step" in sys.argv:
            rows = ace_step_rows()
        elif "--only-ace-step-batching" in sys.argv:
            rows = ace_step_batching_rows()
        elif "--only-stable-audio-3" in sys.argv:
            rows = stable_audio_3_rows()
        else:
            rows = [*musicgen_rows(), *stable_audio_rows()]
        for name, ratio, detail in rows:
            print(f"{name}  {ratio}  {detail}")
        return
    import numpy as np

    from soundforge.backends.synth.render import render
    from soundforge.backends.synth.theory import plan_from_prompt
    from soundforge.client import Client
    from soundforge.config import Config

    client = Client(Config.load(user_file=False))
    prompt, seconds = "upbeat house at 124 BPM in A minor", 60.0

    def direct() -> None:
        rng = np.random.default_rng(1)
        render(plan_from_prompt(prompt, int(rng.integers(1 << 30))), seconds, 44100, rng)

    def sdk() -> None:
        client.generate(prompt, provider="synth", duration=seconds, seed=1)

    client.generate(prompt, provider="synth", duration=1, seed=1)  # warm caches (wavetables, imports)
    times, _ = alternate(direct, sdk)
    t_sdk = statistics.median(times["sdk"])
    track = client.generate(prompt, provider="synth", duration=seconds, seed=1).tracks[0]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "soundforge-bench.wav"
    t_save = _best(lambda: track.save(tmp, overwrite=True))

    exe = str(Path(sys.executable).with_name("soundforge"))
    t_python = _subprocess_time([sys.executable, "-c", "pass"])
    t_import = _subprocess_time([sys.executable, "-c", "import soundforge"])
    t_help = _subprocess_time([exe, "--help"])

    rows = [
        ("synth 60 s stereo, real-time factor (target >= 50x)", f"{seconds / t_sdk:.0f}x", f"{t_sdk:.3f} s"),
        sdk_direct_row("synth 60 s, SDK generate / direct render (same seed)", times),
        ("save 60 s WAV with tags + sidecar", f"{seconds / t_save:.0f}x real time", f"{t_save:.3f} s"),
        (
            "import soundforge (target 150 ms), minus bare python",
            f"{(t_import - t_python) * 1000:.0f} ms",
            f"{t_import * 1000:.0f} ms total",
        ),
        ("soundforge --help (target 300 ms)", f"{t_help * 1000:.0f} ms", ""),
    ]
    rows += cloud_fanout_rows()
    rows += operations_rows()
    rows += serve_rows()
    if "--no-batch" not in sys.argv:
        from batch_rows import batch_rows  # bench/ is on sys.path when this file runs as a script

        rows += batch_rows()
    if "--no-musicgen" not in sys.argv:
        rows += musicgen_rows()
        rows += musicgen_dtype_rows()
    if "--no-stable-audio" not in sys.argv:
        rows += stable_audio_rows()
        rows += stable_audio_dtype_rows()
    if "--no-ace-step" not in sys.argv:
        rows += ace_step_rows()
        rows += ace_step_batching_rows()
    if "--no-stable-audio-3" not in sys.argv:
        rows += stable_audio_3_rows()
    print(
        f"# soundforge bench — {time.strftime('%Y-%m-%d')} — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    width = max(len(r[0]) for r in rows)
    for name, ratio, detail in rows:
        print(f"{name:<{width}}  {ratio:>16}  {detail}")
    tmp.unlink(missing_ok=True)
    tmp.with_name(tmp.name + ".json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
