"""`soundforge generate --stream-to` and `--play`: the growing WAV, the final tagged file, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from soundforge import backends
from soundforge.audio.wavstream import GrowingWav, wav_header
from soundforge.cli import cli

from ..helpers import PeekingStreamer
from .test_cli import run


def test_stream_to_writes_the_same_tagged_file_as_generate(tmp_path: Path) -> None:
    streamed = run("generate", "house", "-d", "3", "--seed", "8", "--stream-to", "s.wav", cwd=tmp_path)
    assert streamed.returncode == 0, streamed.stderr
    plain = run("generate", "house", "-d", "3", "--seed", "8", "-o", "g.wav", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.wav", "g.wav.json", "s.wav", "s.wav.json"]
    a, b = sf.read(tmp_path / "s.wav"), sf.read(tmp_path / "g.wav")
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
    assert run("verify", "s.wav", cwd=tmp_path).returncode == 0  # tags and hashes as for a generated file


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stream-to", "s.wav", "-o", "t.wav"], "leave out --output"),
        (["--stream-to", "s.flac"], "writes WAV"),
        (["--stream-to", "s.wav", "-n", "2"], "stream one track"),
        (["--play"], 'pip install "soundforge[play]"'),
    ],
)
def test_stream_options_are_checked_before_any_work(tmp_path: Path, args: list[str], message: str) -> None:
    out = run("generate", "x", "-d", "1", *args, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def peek(monkeypatch: pytest.MonkeyPatch) -> type[PeekingStreamer]:
    monkeypatch.setitem(backends.BUILTIN, "peek", "tests.helpers:PeekingStreamer")
    PeekingStreamer.seen = []
    return PeekingStreamer


def test_the_partial_file_grows_during_the_stream_and_a_failed_stream_leaves_nothing(tmp_path, peek, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    done = runner.invoke(cli, ["generate", "tone", "-p", "peek", "-d", "1", "--stream-to", "t.wav", "-q"])
    assert done.exit_code == 0, done.output
    assert peek.seen == [("t.partial.wav", 8000)]  # half the tone was on disk, as a valid WAV, mid-stream
    assert sf.info(str(tmp_path / "t.wav")).frames == 16000 and not (tmp_path / "t.partial.wav").exists()
    failed = runner.invoke(cli, ["generate", "fail", "-p", "peek", "-d", "1", "--stream-to", "u.wav", "-q"])
    assert failed.exit_code != 0 and "connection dropped" in failed.output
    assert peek.seen[-1] == ("u.partial.wav", 8000)
    assert not (tmp_path / "u.wav").exists() and not (tmp_path / "u.partial.wav").exists()


def test_a_growing_wav_is_a_valid_file_after_every_chunk(tmp_path: Path) -> None:
    path = tmp_path / "g.wav"
    chunks = [np.full((2, n), 0.25 * (i + 1), dtype=np.float32) for i, n in enumerate((100, 1, 57))]
    with GrowingWav(path, 2, 8000) as growing:
        total = 0
        for chunk in chunks:
            growing.write(chunk)
            total += chunk.shape[1]
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
            assert rate == 8000 and data.shape == (total, 2)
    assert np.array_equal(data.T, np.concatenate(chunks, axis=1))  # 0.25 steps are exact in 16 bits
    with pytest.raises(RuntimeError), GrowingWav(tmp_path / "gone.wav", 1, 8000) as doomed:
        doomed.write(np.zeros((1, 10), dtype=np.float32))
        raise RuntimeError("stream cancelled")
    assert not (tmp_path / "gone.wav").exists()
    assert wav_header(1, 8000)[4:8] == b"\xff\xff\xff\xff" and wav_header(1, 8000)[40:44] == b"\xff\xff\xff\xff"


@pytest.mark.parametrize(
    ("option", "field", "tag"), [("--loudness=-14", "loudness", b"LOUDNESS_LUFS"), ("--trim=0.5", "trim", b"EDITS")]
)
def test_stream_to_refuses_what_would_change_the_streamed_file_as_serve_does(
    tmp_path: Path, option: str, field: str, tag: bytes
) -> None:
    """The file --stream-to names is the stream itself (as a streamed serve job's stored file): loudness, a trim or
    fades would make it another file than the one that was listened to. Refused before any work, as serve does."""
    from soundforge import InvalidRequestError

    out = run("generate", "x", "-d", "1", "--stream-to", "s.wav", option, cwd=tmp_path)
    assert out.returncode == InvalidRequestError.exit_code and "Traceback" not in out.stderr
    assert "samples that were streamed" in out.stderr and field in out.stderr
    assert list(tmp_path.iterdir()) == []
    saved = run("generate", "x", "-d", "1", "-o", "g.wav", option, cwd=tmp_path)  # saved, not streamed: applied
    assert saved.returncode == 0, saved.stderr
    assert tag in (tmp_path / "g.wav").read_bytes()
