"""AudioSeal watermark through soundforge (#25): cost on this CPU, and robustness to MP3 when the real weights exist.

    python bench/watermark_rows.py

Timing (always): soundforge's `embed_audio` on 10 s of 44.1 kHz stereo (resample to 16 kHz, AudioSeal's generator,
resample back, add) against AudioSeal's own `get_watermark` on the same 16 kHz signal, eager; and the first call
with AudioSeal's default lazy `torch.compile`, which soundforge avoids. Random checkpoints of the real architecture
are used when AudioSeal's weights are not in its cache (timing does not depend on the weights).

Robustness (only with the real weights in AudioSeal's cache; skipped with the reason otherwise): synth tracks
are marked, saved as 16-bit WAV and as MP3 at two of libsndfile's compression levels, decoded and read by
AudioSeal's detector; the rows give the detection share and the payload bits recovered. A random model marks
nothing a detector could find, so these rows cannot be measured without the published weights.
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import numpy as np


def _weight_paths() -> list[str]:
    from soundforge.run import watermarking

    return [str(watermarking.weights_path(card)) for card in watermarking.CHECKPOINT_URLS]


def _real_weights() -> bool:
    return all(os.path.isfile(path) for path in _weight_paths())


def timing_rows(seconds: float = 10.0) -> list[tuple[str, str, str]]:
    import torch
    from audioseal.libs.moshi.utils.compile import no_compile

    from soundforge.audio import resample
    from soundforge.run import watermarking

    if not _real_weights():
        from soundforge.testing.audioseal import install_random_audioseal

        os.environ["AUDIOSEAL_CACHE_DIR"] = tempfile.mkdtemp(prefix="audioseal-bench-")
        install_random_audioseal()
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, int(seconds * 44100)))).astype(np.float32)
    generator = watermarking.load(watermarking.GENERATOR_CARD)
    message = torch.tensor([watermarking.payload_bits("3fa2")] * 2)
    watermarking.embed_audio(audio, 44100, "3fa2")  # warm-up
    start = time.perf_counter()
    watermarking.embed_audio(audio, 44100, "3fa2")
    ours = time.perf_counter() - start
    at_16k = torch.from_numpy(resample(audio, 44100, 16000))[:, None, :]
    with torch.inference_mode(), no_compile():
        start = time.perf_counter()
        generator.get_watermark(at_16k, 16000, message=message)
        direct = time.perf_counter() - start
    with torch.inference_mode():  # AudioSeal's default: its SEANet layers compile themselves on first use
        start = time.perf_counter()
        generator.get_watermark(at_16k, 16000, message=message)
        compiled_first = time.perf_counter() - start
    return [
        (f"embed {seconds:.0f} s 44.1 kHz stereo (soundforge)", f"{ours:.2f} s", f"{ours / direct:.2f}x direct"),
        ("AudioSeal get_watermark at 16 kHz, eager (direct)", f"{direct:.2f} s", "1.00x"),
        ("AudioSeal get_watermark, first call with torch.compile", f"{compiled_first:.2f} s", "-"),
    ]


def robustness_rows(real_weights: bool, where: str, takes: int = 4) -> list[tuple[str, str, str]]:
    import soundfile as sf

    from soundforge import generate
    from soundforge.run import watermarking

    if not real_weights:
        print(f"robustness skipped: AudioSeal's published weights are not in its cache ({where})")
        return []
    # libsndfile's MP3 writer sets its bitrate by compression level (0: highest quality, 1: smallest file).
    encodings = {"wav": ("WAV", "PCM_16", None), "mp3 level 0.3": ("MP3", "MPEG_LAYER_III", 0.3)}
    encodings["mp3 level 0.9"] = ("MP3", "MPEG_LAYER_III", 0.9)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in encodings}
    for seed in range(takes):
        track = generate("warm lofi piano", provider="synth", duration=10, seed=seed, watermark=True).tracks[0]
        payload = track.provenance.watermark["payload"]  # type: ignore[index]
        expected = watermarking.payload_bits(payload)
        for name, (container, subtype, level) in encodings.items():
            buffer = io.BytesIO()
            options = {"compression_level": level} if level is not None else {}
            sf.write(buffer, track.audio.T, track.sample_rate, format=container, subtype=subtype, **options)
            data, rate = sf.read(io.BytesIO(buffer.getvalue()), dtype="float32")
            reading = watermarking.detect_audio(np.ascontiguousarray(np.atleast_2d(data.T)), rate)
            got = watermarking.payload_bits(reading.payload)
            results[name].append((reading.probability, float(np.mean(np.array(got) == np.array(expected)))))
    return [
        (
            f"{name}: detection share / payload bits recovered ({takes} takes)",
            f"{np.mean([p for p, _ in rows]):.2f}",
            f"{np.mean([b for _, b in rows]):.1%}",
        )
        for name, rows in results.items()
    ]


if __name__ == "__main__":
    real = _real_weights()  # asked first: the timing rows install random weights where the real ones are missing
    skipped = ", ".join(str(path) for path in _weight_paths())
    for row in timing_rows() + robustness_rows(real, skipped):
        print(" | ".join(row))
