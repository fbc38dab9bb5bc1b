"""How many copies of a long track saving and streaming hold at once: counted with tracemalloc (numpy reports its
buffers to it), so the bounds are exact allocation counts, not timings or RSS readings that vary by machine."""

from __future__ import annotations

import tracemalloc

from soundforge.client import Client
from soundforge.config import Config

SECONDS = 120  # long enough that the samples dwarf everything else allocated on the way


def _peak_over(baseline: int) -> int:
    return tracemalloc.get_traced_memory()[1] - baseline


def test_saving_a_long_track_holds_about_one_more_copy_of_it(tmp_path) -> None:
    """Saving as WAV allocated 2.5 times the samples on top of them at its peak (float copies in quantize, the
    hash's tobytes, copies of the bytes joining the chunks and the ID3 tag): now a float copy and the file's bytes."""
    generation = Client(Config.load(user_file=False)).generate(
        "ambient pad", provider="synth", duration=SECONDS, seed=1
    )
    samples = generation.tracks[0].audio.nbytes
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        generation.save(tmp_path / "long.wav")
        extra = _peak_over(baseline)
    finally:
        tracemalloc.stop()
    assert extra <= 1.75 * samples, f"saving held {extra / samples:.2f} times the samples"


def test_a_long_stream_holds_one_copy_of_its_track(tmp_path) -> None:
    """A stream kept every chunk and then joined them (twice the track at once): now each chunk is copied into the
    track's buffer as it comes, and the backend's chunk is freed."""
    client = Client(Config.load(user_file=False))
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        with client.stream("ambient pad", provider="synth", duration=SECONDS, seed=1) as stream:
            for _ in stream:
                pass
            generation = stream.result()
        extra = _peak_over(baseline)
    finally:
        tracemalloc.stop()
    samples = generation.tracks[0].audio.nbytes
    assert extra <= 1.5 * samples, f"the stream held {extra / samples:.2f} times the track"
