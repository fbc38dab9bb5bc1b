"""Seamless loops (soundforge.audio.loops): whole bars, a wrap as continuous as the inside, loop points in the
provenance, the tags and a WAV `smpl` chunk read back by an independent reader (wavinfo), the provider's own loop
mode."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from soundforge import Capabilities, InvalidRequestError
from soundforge.audio.loops import estimate_tempo
from soundforge.client import Client
from soundforge.config import Config
from soundforge.testing import FunctionBackend

SR = 44100


def wrap_and_inside(audio: np.ndarray, frame: int = 2048) -> tuple[float, float, float, float]:
    """(sample step at the wrap, 99th percentile of steps inside, spectral flux across the wrap, 99th percentile
    of flux inside), the loop played twice over."""
    mono = audio.mean(axis=0)
    steps = np.abs(np.diff(mono))
    wrap_step = abs(float(mono[0] - mono[-1]))
    twice = np.concatenate([mono, mono])
    window = np.hanning(frame)

    def spectrum(at: int) -> np.ndarray:
        return np.abs(np.fft.rfft(twice[at : at + frame] * window))

    def flux(at: int) -> float:  # between the frame ending at `at` and the one starting there
        return float(np.maximum(0.0, spectrum(at) - spectrum(at - frame)).sum())

    inside = [flux(at) for at in range(frame, mono.size - frame, frame // 2)]
    return wrap_step, float(np.percentile(steps, 99)), flux(mono.size), float(np.percentile(inside, 99))


@pytest.mark.parametrize("params", [{"bpm": 120}, {}, {"loop_bars": 2, "time_signature": "3/4", "bpm": 96}])
def test_a_synth_loop_is_whole_bars_and_its_wrap_is_no_rougher_than_its_inside(client: Client, params) -> None:
    g = client.generate("upbeat house", provider="synth", duration=8, seed=2, loop=True, **params)
    loop = g.provenance.loop
    assert loop is not None and loop["made_by"] == "soundforge" and loop["start"] == 0
    assert loop["end"] == g.audio.shape[1]
    beats = 3 if params.get("time_signature") == "3/4" else 4
    bar = beats * 60.0 / loop["bpm"] * SR
    assert g.audio.shape[1] == round(loop["bars"] * bar)  # a whole number of bars at the tempo
    assert loop["bars"] == params.get("loop_bars", int(8 * SR // bar))
    assert loop["tempo_source"] == ("request" if "bpm" in params else "provider")
    step, steps, flux, fluxes = wrap_and_inside(g.audio)
    assert step <= steps and flux <= fluxes
    assert (
        g.provenance.pcm_sha256
        != client.generate("upbeat house", provider="synth", duration=8, seed=2).provenance.pcm_sha256
    )


def tone_backend(hz: float = 441.7, bpm: float | None = None) -> FunctionBackend:
    """A steady tone (a period that no bar length divides), with clicks on the beat when `bpm` is given."""

    def make(request, context):
        t = np.arange(round(request.duration * SR)) / SR
        audio = 0.3 * np.sin(2 * np.pi * hz * t)
        if bpm:
            beat = np.round(np.arange(0, request.duration, 60 / bpm) * SR).astype(int)
            for start in beat:
                audio[start : start + 400] += 0.6 * np.exp(-np.arange(400)[: audio.size - start] / 60.0)
        return audio.astype(np.float32)

    # No loop mode of its own (a FunctionBackend's default capabilities declare every field, `loop` included).
    caps = Capabilities(max_duration=600, sample_rates=(SR,), channels=(1,), fields=frozenset({"seed", "bpm"}))
    return FunctionBackend(make, name="tone", sample_rate=SR, capabilities=caps)


def test_the_crossfade_is_what_makes_the_wrap_continuous() -> None:
    client = Client(Config.load(user_file=False), backends={"tone": tone_backend()})
    g = client.generate("tone", provider="tone", duration=4, loop=True, bpm=120, seed=1)
    step, steps, _, _ = wrap_and_inside(g.audio)
    assert step <= steps * 1.01
    # The same cut without the cross-fade: the tone's phase jumps at the wrap.
    loop = g.provenance.loop
    take = client.generate("tone", provider="tone", duration=8, seed=1).audio
    start = round(loop["cut_from_seconds"] * SR)
    naive = take[:, start : start + g.audio.shape[1]]
    assert wrap_and_inside(naive)[0] > 5 * steps


def test_the_tempo_is_estimated_when_nobody_says_it() -> None:
    client = Client(Config.load(user_file=False), backends={"tone": tone_backend(bpm=100)})
    g = client.generate("clicks", provider="tone", duration=6, loop=True, seed=1)
    loop = g.provenance.loop
    assert loop["tempo_source"] == "estimated" and abs(loop["bpm"] - 100) <= 1
    assert g.audio.shape[1] == round(loop["bars"] * 4 * 60 / loop["bpm"] * SR) and loop["bars"] == 2
    synth = client.generate("techno 132 BPM", provider="synth", duration=20, seed=1)
    assert abs(estimate_tempo(synth.audio, SR) - 132) <= 1


def test_loop_points_in_wav_smpl_and_in_the_tags(client: Client, tmp_path) -> None:
    wavinfo = pytest.importorskip("wavinfo")
    g = client.generate("lofi", provider="synth", duration=6, seed=3, loop=True, bpm=90)
    n = g.audio.shape[1]
    path = g.save(tmp_path / "loop.wav")[0]
    sampler = wavinfo.WavInfoReader(str(path)).smpl
    assert sampler is not None and len(sampler.sample_loops) == 1
    only = sampler.sample_loops[0]
    assert (only.start, only.end, only.loop_type, only.repetition_count) == (0, n - 1, 0, 0)
    assert sampler.sample_period_ns == round(1e9 / SR)
    from soundforge.output.tags import read_tags

    assert read_tags(path)["LOOPLENGTH"] == str(n)
    flac = g.save(tmp_path / "loop.flac")[0]
    if shutil.which("ffprobe"):  # an independent reader of the Vorbis comments
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "default=nw=1", str(flac)],
            capture_output=True,
            text=True,
        ).stdout
        assert "TAG:LOOPSTART=0" in probe and f"TAG:LOOPLENGTH={n}" in probe


def test_the_providers_own_loop_mode_is_used_where_there_is_one(eleven, downloads) -> None:
    from ..helpers import cloud

    client = cloud("elevenlabs-sfx", eleven, downloads)
    g = client.generate("rain on a tin roof", provider="elevenlabs-sfx", duration=4, loop=True)
    assert eleven.bodies[-1]["loop"] is True and eleven.bodies[-1]["duration_seconds"] == 4
    assert g.provenance.loop == {"start": 0, "end": g.audio.shape[1], "made_by": "elevenlabs-sfx"}


def test_loop_refusals(client: Client) -> None:
    with pytest.raises(InvalidRequestError, match="loop_bars applies to a loop"):
        client.generate("x", provider="synth", duration=4, loop_bars=2)
    with pytest.raises(InvalidRequestError, match="cannot be streamed"):
        client.stream("x", provider="synth", duration=4, loop=True)
    with pytest.raises(InvalidRequestError, match="over the 600 s maximum"):
        client.generate("x", provider="synth", duration=4, loop=True, loop_bars=256, bpm=60)


@pytest.mark.parametrize("metre", ["1/16", "1/8", "2/16"])
def test_a_bar_shorter_than_a_beat_still_loops(client: Client, metre: str) -> None:
    """One bar of 1/16 at 120 BPM is an eighth of a second, shorter than the beat the cross-fade took: the loop
    raised a broadcasting ValueError (a traceback in generate, internal_error in serve). The fade is now at most
    half the loop."""
    g = client.generate(
        "x", provider="synth", duration=1, seed=1, loop=True, time_signature=metre, loop_bars=1, bpm=120
    )
    loop = g.tracks[0].provenance.loop
    assert loop is not None and loop["bars"] == 1
    length = loop["end"] - loop["start"]
    sixteenths = int(metre.split("/")[0]) * 16 // int(metre.split("/")[1])
    assert length == round(sixteenths * 15 / 120 * g.sample_rate)
    assert 0 < loop["crossfade_seconds"] * g.sample_rate <= length / 2 + 1
