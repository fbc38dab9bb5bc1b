import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from soundforge import InvalidRequestError
from soundforge import audio as audio_mod
from soundforge.client import Client
from soundforge.tags import read_tags


@pytest.fixture(scope="module")
def track():
    from soundforge.config import Config

    return Client(Config.load(user_file=False)).generate(
        "dreamy synthwave in C major", provider="synth", duration=4, seed=9).tracks[0]


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_save_every_format_with_tags_and_sidecar(track, tmp_path, fmt: str) -> None:
    path = track.save(tmp_path / f"song.{fmt}")
    data, rate = sf.read(path, always_2d=True)
    assert rate == 44100 and data.shape[1] == 2
    assert abs(data.shape[0] - 4 * 44100) < 3000  # lossy codecs pad a little
    tags = read_tags(path)
    assert tags["AI_GENERATED"] == "true"
    assert tags["LICENSE"] == "CC0-1.0" and tags["PROVIDER"] == "synth"
    assert tags["DIGITAL_SOURCE_TYPE"].endswith("algorithmicMedia")
    assert tags["AUDIO_SHA256"] == audio_mod.decoded_sha256(path.read_bytes())
    side = json.loads((tmp_path / f"song.{fmt}.json").read_text())
    assert side["provenance"]["seed"] == 9 and side["license"]["id"] == "CC0-1.0"
    assert all(tags[key] == value for key, value in side["tags"].items())
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (Debian ffmpeg) is installed by scripts/test")
@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_independent_reader_sees_licence(track, tmp_path, fmt: str) -> None:
    path = track.save(tmp_path / f"song.{fmt}")
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    tags = {k.lower(): v for k, v in info["format"].get("tags", {}).items()}
    for stream in info["streams"]:
        tags.update({k.lower(): v for k, v in stream.get("tags", {}).items()})
    blob = json.dumps(tags)
    assert "CC0-1.0" in blob and "AI_GENERATED" in blob.upper()
    assert "trainedAlgorithmicMedia" in blob or "algorithmicMedia" in blob


def test_never_overwrites_and_leaves_nothing_partial(track, tmp_path) -> None:
    path = tmp_path / "a.wav"
    track.save(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        track.save(path)
    assert path.read_bytes() == before
    track.save(path, overwrite=True)
    with pytest.raises(InvalidRequestError, match="format"):
        track.save(tmp_path / "b.xyz")
    assert sorted(os.listdir(tmp_path)) == ["a.wav", "a.wav.json"]


def test_loudness_normalisation(track, tmp_path) -> None:
    path = track.save(tmp_path / "loud.wav", loudness=-14.0)
    data, rate = sf.read(path, always_2d=True)
    measured = audio_mod.integrated_loudness(data.T.astype(np.float32), rate)
    assert measured == pytest.approx(-14.0, abs=0.5) or audio_mod.true_peak(data.T) > 0.85
    quiet = audio_mod.normalize_loudness(track.audio, track.sample_rate, -23.0)
    assert audio_mod.integrated_loudness(quiet, track.sample_rate) == pytest.approx(-23.0, abs=0.1)
    assert audio_mod.true_peak(quiet) <= 10 ** (-1 / 20) + 1e-3


def test_to_bytes_and_html(track) -> None:
    blob = track.to_bytes("flac")
    assert blob[:4] == b"fLaC"
    assert "<audio" in track._repr_html_()
