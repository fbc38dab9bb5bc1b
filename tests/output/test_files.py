import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from soundforge import InvalidRequestError
from soundforge import audio as audio_mod
from soundforge.audio import loudness
from soundforge.client import Client
from soundforge.output.tags import read_tags


@pytest.fixture(scope="module")
def track():
    from soundforge.config import Config

    return (
        Client(Config.load(user_file=False))
        .generate("dreamy synthwave in C major", provider="synth", duration=4, seed=9)
        .tracks[0]
    )


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
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
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


@pytest.mark.parametrize("target", [-23.0, -14.0, -8.0])
def test_loudness_reaches_its_target_under_the_peak_ceiling_and_the_tag_says_so(track, tmp_path, target) -> None:
    path = track.save(tmp_path / f"loud{target:g}.wav", loudness=target)
    data, rate = sf.read(path, always_2d=True)
    measured = loudness.integrated_loudness(data.T.astype(np.float32), rate)
    assert measured == pytest.approx(target, abs=0.3)
    assert loudness.true_peak(data.T.astype(np.float32)) <= 10 ** (-1 / 20) + 2e-3
    tag = float(read_tags(path)["LOUDNESS_LUFS"])
    assert tag == pytest.approx(measured, abs=0.15)


def test_loudness_targets_outside_the_range_are_refused_before_anything_is_written(track, tmp_path) -> None:
    for target in (5.0, -80.0, float("nan")):
        with pytest.raises(InvalidRequestError, match="loudness"):
            track.save(tmp_path / "x.wav", loudness=target)
    assert not list(tmp_path.iterdir())


def test_true_peak_memory_is_bounded_by_blocks() -> None:
    import tracemalloc

    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal((2, 44100 * 60))).astype(np.float32)  # 60 s stereo: 21 MB
    tracemalloc.start()
    loudness.true_peak(audio)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # A whole-signal 4x FFT upsample would hold ~170 MB of float64 at once; blocks need a few MB plus the envelope.
    assert peak < 40 * 2**20, peak


def test_to_bytes_and_html(track) -> None:
    blob = track.to_bytes("flac")
    assert blob[:4] == b"fLaC"
    assert "<audio" in track._repr_html_()


def test_concurrent_writers_of_one_file_never_collide(tmp_path) -> None:
    import threading

    target = tmp_path / "job.json"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(index: int) -> None:
        start.wait()
        try:
            for round_ in range(25):
                audio_mod.write_atomic(target, f"{index}:{round_}".encode() * 1000, overwrite=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and sorted(os.listdir(tmp_path)) == ["job.json"]
    text = target.read_text()
    assert text == text[: len(text) // 1000] * 1000  # one writer's whole content, never a mix


def test_notebook_preview_is_compressed() -> None:
    from soundforge import generate

    track = generate("calm piano", provider="synth", duration=60, seed=1).tracks[0]
    html = track._repr_html_()
    assert "data:audio/ogg;base64," in html and len(html) < 2_000_000  # a WAV would be ~14 MB of base64


def test_flac_tags_are_listed_once(tmp_path) -> None:
    from soundforge import generate

    path = generate("calm", provider="synth", duration=2, seed=1).save(tmp_path / "t.flac")[0]
    fields = read_tags(path)
    assert "COMMENT" not in {k.upper() for k in fields} and fields["AI_GENERATED"] == "true"


def test_verify_and_read_record_are_the_library_s_own(tmp_path) -> None:
    """`soundforge.verify` and `soundforge.read_record`: the checks the CLI's verify and info print."""
    import numpy as np
    import soundfile as sf

    import soundforge

    track = soundforge.generate("lofi", provider="synth", duration=1, seed=4)
    path = track.tracks[0].save(tmp_path / "a.wav")
    result = soundforge.verify(path)
    assert result.ok and result.status == "ok" and result.actual_sha256 == result.recorded_sha256
    record = soundforge.read_record(path)
    assert record.fields["PROVIDER"] == "synth" and record.license is not None and record.license.id == "CC0-1.0"
    assert record.provenance["seed"] == 4
    # The samples changed: modified. Tags stripped: the sidecar's copy still names the hash.
    samples, rate = sf.read(path, dtype="float32")
    sf.write(tmp_path / "b.wav", samples * np.float32(0.5), rate, subtype="PCM_16")
    (tmp_path / "b.wav.json").write_bytes((tmp_path / "a.wav.json").read_bytes())
    changed = soundforge.verify(tmp_path / "b.wav")
    assert changed.status == "modified" and not changed.ok and changed.record.tags == {}
    assert changed.record.fields["AUDIO_SHA256"] == result.recorded_sha256
    # No record at all: nothing to compare with.
    sf.write(tmp_path / "c.wav", samples, rate)
    assert soundforge.verify(tmp_path / "c.wav").status == "unverifiable"
    assert not soundforge.read_record(tmp_path / "c.wav").found


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_a_damaged_file_is_a_typed_error_never_a_traceback(tmp_path, fmt: str) -> None:
    """Truncated or byte-flipped files (a fixed-seed fuzz: it found struct.error in FLAC comments, IndexError in
    ID3 sizes and a MemoryError from a crafted MP3 header) give `read_record` and `verify` a typed error or an
    answer, and `soundforge verify` an exit code without a traceback."""
    import contextlib
    import random

    from click.testing import CliRunner

    import soundforge
    from soundforge import SoundforgeError
    from soundforge.cli import cli

    track = soundforge.generate("x", provider="synth", duration=1, seed=1).tracks[0]
    data = track.save(tmp_path / f"a.{fmt}", sidecar=False).read_bytes()
    rng = random.Random(1)
    damaged = tmp_path / f"b.{fmt}"
    for attempt in range(40):
        copy = bytearray(data)
        if attempt % 2:
            copy = copy[: rng.randrange(1, len(copy))]
        else:
            for _ in range(8):
                copy[rng.randrange(0, min(len(copy), 4096))] = rng.randrange(256)
        damaged.write_bytes(bytes(copy))
        for read in (soundforge.read_record, soundforge.verify):
            with contextlib.suppress(SoundforgeError):  # a typed error, or an answer: anything else fails the test
                read(damaged)
    result = CliRunner().invoke(cli, ["verify", str(damaged)])
    assert result.exit_code in (0, 1, 2, 5) and "Traceback" not in result.output


def test_an_mp3_is_encoded_once_with_the_same_bytes(tmp_path, monkeypatch) -> None:
    """Saving an MP3 ran LAME twice (once to hash the decoded samples, once with libsndfile's tags: 5.5 s each for
    60 s of stereo here). Its frames do not depend on the tags: one encode plus the ID3v1 trailer libsndfile would
    write gives the same file, byte for byte (a prompt past 30 UTF-8 bytes, with accents, included). This is
    libsndfile's path (no ffmpeg); ffmpeg's is the next test."""
    import soundforge.output.files as files
    from soundforge.audio import FORMATS, encode, lame
    from soundforge.config import Config
    from soundforge.output import tags

    monkeypatch.setenv(lame.ENCODER_ENV, "libsndfile")

    generation = Client(Config.load(user_file=False)).generate(
        "café ünïcode — a prompt longer than thirty bytes", provider="synth", duration=3, seed=2
    )
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("strings"))
        return encode(*args, **kwargs)

    monkeypatch.setattr(files, "encode", counted)
    [path] = generation.save(tmp_path / "once.mp3", sidecar=False)
    assert len(calls) == 1
    track, fmt = generation.tracks[0], FORMATS["mp3"]
    fields = tags.read_tags(path)
    expected = tags.embed(
        encode(track.audio, track.sample_rate, fmt, strings=tags.soundfile_strings(fields)), fmt, fields
    )
    assert path.read_bytes() == expected


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_an_mp3_goes_through_ffmpeg_s_lame_where_installed_and_decodes_to_the_samples_it_was_given(
    tmp_path, monkeypatch
) -> None:
    """MP3 saves took libsndfile's slowest LAME setting (60 s of stereo: 9.8 s against 3.6 s through ffmpeg's LAME
    here). Where ffmpeg has libmp3lame, saves go through it, and the file still decodes to exactly as many samples
    as the track has (ffmpeg writes LAME's delay and padding into a seekable file; a pipe would add 1 152), with
    soundforge's tags and a hash that verifies. Any sample rate LAME takes, mono and stereo."""
    import soundforge
    from soundforge.audio import FORMATS, encode, lame, load_audio

    calls = []
    real = lame.encode_mp3

    def counted(audio, rate):
        calls.append(rate)
        return real(audio, rate)

    monkeypatch.setattr(lame, "encode_mp3", counted)
    rng = np.random.default_rng(3)
    for rate, channels in ((48000, 2), (44100, 1), (32000, 1), (24000, 2), (8000, 1)):
        samples = (0.4 * rng.standard_normal((channels, rate * 2 + 77))).astype(np.float32)
        decoded, decoded_rate = load_audio(encode(samples, rate, FORMATS["mp3"]))
        assert decoded.shape == samples.shape and decoded_rate == rate
    assert calls == [48000, 44100, 32000, 24000, 8000]

    from soundforge.config import Config

    generation = Client(Config.load(user_file=False)).generate("warm lo-fi piano", provider="synth", duration=3, seed=4)
    [path] = generation.save(tmp_path / "fast.mp3", sidecar=False)
    assert len(calls) == 6
    decoded, _ = load_audio(path.read_bytes())
    assert decoded.shape == generation.tracks[0].audio.shape
    assert soundforge.verify(path).ok
    assert read_tags(path)["PROVIDER"] == "synth"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format_tags=title", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(probe.stdout)["format"]["tags"]["title"] == "warm lo-fi piano"


def test_mp3_falls_back_to_libsndfile_when_ffmpeg_fails(monkeypatch, caplog) -> None:
    """A broken ffmpeg is logged and the file is still written, by libsndfile."""
    from soundforge.audio import FORMATS, encode, lame, load_audio

    monkeypatch.setattr(lame, "_ffmpeg_with_lame", lambda: "/bin/false")
    samples = np.zeros((1, 32000), dtype=np.float32)
    with caplog.at_level("WARNING", logger="soundforge.audio.lame"):
        decoded, _ = load_audio(encode(samples, 32000, FORMATS["mp3"]))
    assert decoded.shape == samples.shape
    assert "ffmpeg could not encode MP3 (exit 1" in caplog.text
