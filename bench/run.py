"""soundforge benchmarks: one entry point, one table of ratios measured in the same run.

    python bench/run.py                # results go to stdout; copy them into docs/performance.md with date + machine
    python bench/run.py --no-musicgen  # skip the full-size MusicGen section (about 3 minutes on 2 cores)

Never a timed test: numbers depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


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


def musicgen_rows(seconds: float = 5.0) -> list[tuple[str, str, str]]:
    """Full-size musicgen-small architecture (random weights): SDK vs direct transformers call, same seed."""
    import tempfile

    import numpy as np
    import torch
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.musicgen import build_musicgen, build_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="soundforge-bench-")) / "musicgen-small-random"
    build_musicgen(folder, full_size=True)
    build_tokenizer(folder)  # a small word-level tokenizer; T5's real one is not needed for timing
    prompt = "upbeat synthwave with drums and bass"
    client = Client(Config.load(user_file=False, providers={"musicgen": {"device": "cpu"}}))
    spec = f"musicgen:{folder}"
    client.generate(prompt, provider=spec, duration=0.1, seed=0)  # load once, like a warm server

    model = MusicgenForConditionalGeneration.from_pretrained(folder).eval()
    inputs = AutoTokenizer.from_pretrained(folder)([prompt], return_tensors="pt")
    frames = int(np.ceil(seconds * 50))

    def direct() -> np.ndarray:
        torch.manual_seed(7)
        with torch.inference_mode():
            return model.generate(**inputs, max_new_tokens=frames + 3).numpy()

    start = time.perf_counter()
    reference = direct()
    t_direct = time.perf_counter() - start
    start = time.perf_counter()
    generation = client.generate(prompt, provider=spec, duration=seconds, seed=7)
    t_sdk = time.perf_counter() - start
    n = generation.audio.shape[1]
    identical = bool(np.array_equal(generation.audio[0], reference[0, 0, :n]))
    return [
        (f"musicgen-small arch, {seconds:g} s, SDK / direct transformers (target <= 1.02)", f"{t_sdk / t_direct:.3f}",
         f"{t_direct:.1f} s direct, {t_sdk:.1f} s SDK, identical audio: {identical}"),
        ("musicgen-small arch, decoding speed", f"{(frames + 3) / t_sdk:.2f} tok/s",
         f"real-time factor {t_sdk / seconds:.1f} (seconds per second of audio)"),
    ]


def main() -> None:
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
    t_direct, t_sdk = _best(direct), _best(sdk)
    track = client.generate(prompt, provider="synth", duration=seconds, seed=1).tracks[0]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "soundforge-bench.wav"
    t_save = _best(lambda: track.save(tmp, overwrite=True))

    exe = str(Path(sys.executable).with_name("soundforge"))
    t_python = _subprocess_time([sys.executable, "-c", "pass"])
    t_import = _subprocess_time([sys.executable, "-c", "import soundforge"])
    t_help = _subprocess_time([exe, "--help"])

    rows = [
        ("synth 60 s stereo, real-time factor (target >= 50x)", f"{seconds / t_sdk:.0f}x", f"{t_sdk:.3f} s"),
        ("SDK generate / direct render (same seed)", f"{t_sdk / t_direct:.3f}", f"{t_direct:.3f} s direct"),
        ("save 60 s WAV with tags + sidecar", f"{seconds / t_save:.0f}x real time", f"{t_save:.3f} s"),
        ("import soundforge (target 150 ms), minus bare python", f"{(t_import - t_python) * 1000:.0f} ms",
         f"{t_import * 1000:.0f} ms total"),
        ("soundforge --help (target 300 ms)", f"{t_help * 1000:.0f} ms", ""),
    ]
    if "--no-musicgen" not in sys.argv:
        rows += musicgen_rows()
    print(f"# soundforge bench — {time.strftime('%Y-%m-%d')} — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    width = max(len(r[0]) for r in rows)
    for name, ratio, detail in rows:
        print(f"{name:<{width}}  {ratio:>16}  {detail}")
    tmp.unlink(missing_ok=True)
    tmp.with_name(tmp.name + ".json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
