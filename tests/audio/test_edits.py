"""Edits on saving (soundforge.audio.edits): a trim cut where the waveform crosses zero, fades, the EDITS tag, a
file that verifies, refusals before anything is written; the request's edits are the defaults of `save`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from soundforge import InvalidRequestError
from soundforge.audio import decoded_sha256
from soundforge.audio.edits import Edits, fade, zero_crossing_before
from soundforge.cli import cli
from soundforge.client import Client
from soundforge.config import Config
from soundforge.output.tags import read_tags
from soundforge.request import GenerationRequest
from soundforge.testing import FunctionBackend

SR = 44100
QUANTUM = 1 / 32768  # one step of the 16-bit WAV the track is saved as


def read(path) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == SR
    return data.T


def test_a_trim_falls_where_the_waveform_crosses_zero_and_the_file_verifies(client: Client, tmp_path) -> None:
    g = client.generate("lofi hip hop", provider="synth", duration=3, seed=5)
    path = g.tracks[0].save(tmp_path / "cut.wav", trim=2.0)
    saved = read(path)
    end = saved.shape[1]
    assert 2.0 * SR - 0.01 * SR <= end <= 2.0 * SR  # within the 10 ms window before the asked length
    mono = g.audio.mean(axis=0)
    assert np.signbit(mono[end - 1]) != np.signbit(mono[end])  # the cut is between a sample and its sign change
    assert np.max(np.abs(saved - g.audio[:, :end])) <= QUANTUM  # nothing else changed
    fields = read_tags(path)
    assert fields["EDITS"] == f"trimmed to {end / SR:.4f} s at a zero crossing"
    assert fields["AUDIO_SHA256"] == decoded_sha256(path.read_bytes())  # the hash covers the edited samples
    sidecar = json.loads((tmp_path / "cut.wav.json").read_text())
    assert sidecar["provenance"]["pcm_sha256"] == g.provenance.pcm_sha256  # the generation's record stays as made
    result = CliRunner().invoke(cli, ["verify", str(path)])
    assert result.exit_code == 0 and "OK" in result.output


def test_with_no_zero_crossing_near_the_cut_the_end_is_faded() -> None:
    audio = np.full((2, SR), 0.5, dtype=np.float32)  # DC: no sign change anywhere
    assert zero_crossing_before(audio, SR // 2, SR) == (SR // 2, False)
    out, note = Edits(trim=0.5).apply(audio, SR)
    assert out.shape == (2, SR // 2) and note == "trimmed to 0.5000 s with a 5 ms fade"
    assert abs(out[0, -1]) < 0.5 * 0.01 and out[0, -round(0.005 * SR) - 1] == 0.5  # faded over the last 5 ms only


def test_fades_shape_the_ends_and_leave_the_middle(client: Client, tmp_path) -> None:
    g = client.generate("ambient pads", provider="synth", duration=4, seed=1)
    path = g.tracks[0].save(tmp_path / "faded.flac", fade_in=0.5, fade_out=1.0)
    saved = read(path)
    expected = fade(fade(g.audio, SR // 2, at_end=False), SR, at_end=True)
    assert saved.shape == g.audio.shape and np.max(np.abs(saved - expected)) <= QUANTUM
    assert np.max(np.abs(saved[:, :64])) < 0.01 and np.max(np.abs(saved[:, -64:])) < 0.01
    middle = slice(SR, 3 * SR)
    assert np.max(np.abs(saved[:, middle] - g.audio[:, middle])) <= QUANTUM
    assert not np.allclose(saved[:, : SR // 2], g.audio[:, : SR // 2], atol=0.01)  # the fade did something
    assert read_tags(path)["EDITS"] == "fade in 0.5 s; fade out 1 s"


def test_the_request_edits_are_the_defaults_of_save_and_the_cli_applies_them(client: Client, tmp_path) -> None:
    g = client.generate("techno", provider="synth", duration=3, seed=2, trim=1.5, fade_out=0.25)
    assert g.duration == 3  # generated whole; the edits belong to the file
    path = g.save(tmp_path / "req.wav")[0]
    assert read(path).shape[1] <= 1.5 * SR and read_tags(path)["EDITS"].endswith("; fade out 0.25 s")
    assert read(g.tracks[0].save(tmp_path / "asked.wav", trim=2.5)).shape[1] > 2.4 * SR  # given beats asked
    out = tmp_path / "cli.wav"
    result = CliRunner().invoke(
        cli, ["generate", "techno", "-p", "synth", "-d", "3", "--seed", "2", "--trim", "1.5", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert read(out).shape[1] <= 1.5 * SR and "trimmed" in read_tags(out)["EDITS"]


def test_edits_that_cannot_apply_are_refused_before_anything_is_written(client: Client, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="break its wrap"):
        GenerationRequest(prompt="x", loop=True, fade_in=0.1)
    with pytest.raises(InvalidRequestError, match="do not fit"):
        GenerationRequest(prompt="x", duration=2, trim=1, fade_in=0.6, fade_out=0.6)
    with pytest.raises(InvalidRequestError, match="trim"):
        GenerationRequest(prompt="x", trim=0)
    g = client.generate("x", provider="synth", duration=2, seed=1, num_outputs=2)
    with pytest.raises(InvalidRequestError, match="do not fit") as info:
        g.save(tmp_path / "set.wav", fade_in=1.5, fade_out=1)
    assert info.value.field == "fade_out"
    assert list(tmp_path.iterdir()) == []  # neither file of the set, nor a sidecar
    loop = client.generate("house", provider="synth", duration=4, seed=1, bpm=120, loop=True)
    with pytest.raises(InvalidRequestError, match="wrap"):
        loop.save(tmp_path / "loop.wav", trim=1)
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(cli, ["generate", "x", "-p", "synth", "-d", "1", "--fade-in", "2", "-o", "y.wav"])
    assert result.exit_code != 0 and "do not fit" in result.output and "Traceback" not in result.output


def test_a_batch_row_saves_with_its_edits(tmp_path) -> None:
    from soundforge.bulk import batch

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"name": "cue", "prompt": "drone", "duration": 2, "seed": 1, "fade_in": 1}) + "\n")
    report = batch(manifest, tmp_path / "out", client=Client(Config.load(user_file=False)), provider="synth")
    assert report.done == ["cue"]
    path = tmp_path / "out" / "cue.wav"
    assert read_tags(path)["EDITS"] == "fade in 1 s" and np.max(np.abs(read(path)[:, :32])) < 0.01


def test_a_backend_track_keeps_its_samples_when_saved_with_edits(tmp_path) -> None:
    """Edits change the file, never the Track (a saved copy is not a new generation)."""
    backend = FunctionBackend(
        lambda request, context: np.full((1, round(request.duration * SR)), 0.25, np.float32), name="ones"
    )
    client = Client(Config.load(user_file=False), backends={"ones": backend})
    g = client.generate("x", provider="ones", duration=1)
    before = g.audio.copy()
    g.tracks[0].save(tmp_path / "f.wav", fade_in=0.5)
    assert np.array_equal(g.audio, before)


@pytest.mark.parametrize(
    "fields",
    [
        {"trim": 1e308},  # was an OverflowError on saving (a traceback; in batch, the whole run aborted)
        {"trim": 1e-9},  # shorter than one sample: nothing left to encode (downloads failed with a 500)
        {"trim": 2, "fade_in": 1, "fade_out": 1},  # fades filling the whole trim
        {"duration": 2, "fade_in": 2},
    ],
)
def test_edits_that_cannot_make_a_file_are_refused_at_validation(fields) -> None:
    from soundforge.request import GenerationRequest

    with pytest.raises(InvalidRequestError):
        GenerationRequest(prompt="x", **{"duration": 4, **fields})
