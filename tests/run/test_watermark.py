"""The invisible watermark (soundforge.run.watermarking): AudioSeal's real generator and detector, built from its own
model cards at their real size with random weights, saved in the published checkpoint layout into AudioSeal's
cache and loaded by AudioSeal's loader; soundforge's marks and readings compared bit for bit with AudioSeal's own
calls; the payload tied to provenance, tags, refusals before any work, streams, serve and the CLI. What only the
real weights show (that the mark survives MP3) is measured in bench/watermark.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

pytest.importorskip("audioseal")

import torch
from audioseal import AudioSeal
from audioseal.libs.moshi.utils.compile import no_compile

from soundforge import InvalidRequestError, ModelNotAvailableError, ProviderUnavailableError
from soundforge.audio import pcm_sha256, resample
from soundforge.cli import EXIT_NO_WATERMARK, cli
from soundforge.client import Client
from soundforge.output.tags import read_tags
from soundforge.run import watermarking as wm
from soundforge.testing.audioseal import install_random_audioseal


@pytest.fixture
def weights(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Random AudioSeal checkpoints in a cache folder of their own, which AUDIOSEAL_CACHE_DIR points at."""
    monkeypatch.setenv("AUDIOSEAL_CACHE_DIR", str(tmp_path_factory.mktemp("audioseal-cache")))
    return install_random_audioseal(seed=3)


def noise(channels: int, rate: int, seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 330 * t)
    return (tone + 0.05 * rng.standard_normal((channels, t.size))).astype(np.float32)


def message(payload: str, rows: int) -> torch.Tensor:
    return torch.tensor([wm.payload_bits(payload)] * rows)


def test_payload_is_the_first_16_bits_of_the_hash_and_round_trips() -> None:
    assert wm.payload_for("3fa2" + "0" * 60) == "3fa2"
    assert wm.payload_bits("8001") == [1] + [0] * 14 + [1]
    for payload in ("0000", "ffff", "3fa2", "8001"):
        assert wm.bits_payload(wm.payload_bits(payload)) == payload
    with pytest.raises(ValueError):
        wm.payload_for("zz")


def test_weights_are_read_from_audioseal_own_cache(weights: dict[str, Path], tmp_path: Path) -> None:
    # The path soundforge checks is the one AudioSeal's loader reads: it loads from there with no network.
    assert weights[wm.GENERATOR_CARD] == wm.weights_path(wm.GENERATOR_CARD)
    assert weights[wm.GENERATOR_CARD].parent.name == "audioseal"
    model = AudioSeal.load_generator(wm.GENERATOR_CARD)
    assert sum(p.numel() for p in model.parameters()) > 10_000_000  # the card's real size


def test_marking_at_16k_is_audioseal_own_call_bit_for_bit(weights: dict[str, Path]) -> None:
    audio = noise(1, wm.MODEL_RATE)
    ours = wm.embed_audio(audio, wm.MODEL_RATE, "3fa2")
    generator = AudioSeal.load_generator(wm.GENERATOR_CARD)
    with torch.inference_mode(), no_compile():
        theirs = generator(torch.from_numpy(audio)[:, None, :], wm.MODEL_RATE, message=message("3fa2", 1))
    np.testing.assert_array_equal(ours, theirs[:, 0, :].numpy())
    assert not np.array_equal(ours, wm.embed_audio(audio, wm.MODEL_RATE, "3fa3"))  # the payload is in the mark


def test_marking_at_44k_stereo_adds_audioseal_mark_made_at_16k(weights: dict[str, Path]) -> None:
    audio = noise(2, 44100)
    ours = wm.embed_audio(audio, 44100, "00ff")
    generator = AudioSeal.load_generator(wm.GENERATOR_CARD)
    with torch.inference_mode(), no_compile():
        at_16k = torch.from_numpy(resample(audio, 44100, wm.MODEL_RATE))[:, None, :]
        mark = generator.get_watermark(at_16k, wm.MODEL_RATE, message=message("00ff", 2))[:, 0, :].numpy()
    np.testing.assert_array_equal(ours, audio + resample(mark, wm.MODEL_RATE, 44100)[:, : audio.shape[1]])


def test_reading_is_audioseal_own_detector_bit_for_bit(weights: dict[str, Path]) -> None:
    audio = wm.embed_audio(noise(2, 22050), 22050, "abcd")
    reading = wm.detect_audio(audio, 22050)
    detector = AudioSeal.load_detector(wm.DETECTOR_CARD)
    with torch.inference_mode(), no_compile():
        at_16k = torch.from_numpy(resample(audio, 22050, wm.MODEL_RATE))[:, None, :]
        probability, bits = detector.detect_watermark(at_16k, wm.MODEL_RATE)
    best = int(torch.argmax(probability))
    assert (reading.channel, reading.probability) == (best, float(probability[best]))
    assert reading.payload == wm.bits_payload(bits[best].tolist())
    assert reading.detected == (reading.probability > 0.5)


def test_a_watermarked_generation_records_its_payload_and_the_hash_it_came_from(
    weights: dict[str, Path], client: Client, tmp_path: Path
) -> None:
    plain = client.generate("lofi beat", provider="synth", duration=2, seed=4)
    marked = client.generate("lofi beat", provider="synth", duration=2, seed=4, watermark=True)
    before = plain.provenance.pcm_sha256
    record = marked.provenance.watermark
    assert record is not None and record["payload"] == before[:4] and record["unmarked_pcm_sha256"] == before
    assert record["method"] == "AudioSeal" and record["model"] == "audioseal_wm_16bits" and record["bits"] == 16
    assert record["engine"] == "audioseal 0.2.0"
    np.testing.assert_array_equal(marked.audio, wm.embed_audio(plain.audio, plain.sample_rate, before[:4]))
    assert marked.provenance.pcm_sha256 == pcm_sha256(marked.audio) != before
    assert marked.provenance.watermarks == [f"AudioSeal (soundforge, payload {before[:4]})"]
    path = marked.tracks[0].save(tmp_path / "marked.wav")
    tags = read_tags(path)
    assert tags["AUDIOSEAL_PAYLOAD"] == before[:4] and "AudioSeal" in tags["WATERMARKS"]
    with pytest.raises(InvalidRequestError, match="already carries"):
        wm.embed(marked.tracks[0])


def test_missing_weights_are_refused_before_anything_is_generated(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUDIOSEAL_CACHE_DIR", str(tmp_path / "empty"))

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("generated before the watermark was checked")

    monkeypatch.setattr(client.attempts, "run", must_not_run)
    with pytest.raises(ModelNotAvailableError) as caught:
        client.generate("x", provider="synth", duration=1, watermark=True)
    message = str(caught.value) + str(caught.value.hint)
    assert str(tmp_path / "empty" / "audioseal") in message and "generator_base.pth" in message
    monkeypatch.setitem(sys.modules, "audioseal", None)  # as if soundforge[watermark] were not installed
    with pytest.raises(ProviderUnavailableError, match="audioseal") as missing:
        client.generate("x", provider="synth", duration=1, watermark=True)
    assert "soundforge[watermark]" in str(missing.value.hint)


def test_a_stream_refuses_a_watermark(client: Client) -> None:
    with pytest.raises(InvalidRequestError, match="cannot be streamed") as caught:
        client.stream("x", provider="synth", duration=1, watermark=True)
    assert caught.value.field == "watermark"


def test_stems_of_a_watermarked_request_are_each_marked_with_their_own_payload(
    weights: dict[str, Path], client: Client, tmp_path: Path
) -> None:
    pytest.importorskip("demucs")
    import os

    from soundforge.testing.demucs import build_demucs, install_in_hub_cache

    # The same tiny bag tests/backends/test_demucs.py installs, so either order of the two modules sees one cache.
    folder = build_demucs(tmp_path / "export", "htdemucs", models=2, seed=7)
    install_in_hub_cache(folder, "adefossez/HTDemucs", Path(os.environ["HF_HOME"]) / "hub")
    g = client.generate("drums and bass", provider="synth", duration=2, seed=1, stems=["drums", "bass"], watermark=True)
    assert [t.role for t in g.tracks] == [None, "drums", "bass"]
    records = [t.provenance.watermark for t in g.tracks]
    assert all(r is not None for r in records)
    assert len({r["payload"] for r in records if r}) == 3  # each from its own track's hash


def test_cli_generate_watermark_and_verify_reads_it(weights: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "t.wav"
    made = runner.invoke(cli, ["generate", "rain", "-p", "synth", "-d", "2", "--watermark", "-o", str(out), "-q"])
    assert made.exit_code == 0, made.output
    recorded = read_tags(out)["AUDIOSEAL_PAYLOAD"]
    audio, rate = sf.read(out, dtype="float32", always_2d=True)
    reading = wm.detect_audio(np.ascontiguousarray(audio.T), rate)
    checked = runner.invoke(cli, ["verify", "--watermark", str(out)])
    # A random detector decides at random; what it decides is what verify reports, with its exit code.
    assert f"payload {reading.payload}" in checked.output or "none detected" in checked.output
    expected = 0 if reading.detected and reading.payload == recorded else EXIT_NO_WATERMARK
    assert checked.exit_code == expected, checked.output
    assert "OK, audio unchanged" in checked.output and "not proven" in checked.output
    # Tags stripped: the watermark is all there is, and verify still reads it.
    bare = tmp_path / "bare.wav"
    sf.write(bare, audio, rate, subtype="PCM_16")
    stripped = runner.invoke(cli, ["verify", "--watermark", str(bare)])
    assert "watermark:" in stripped.output and stripped.exit_code in (0, EXIT_NO_WATERMARK)
    assert "no soundforge audio hash" not in stripped.output


def test_serve_marks_a_job_and_refuses_a_marked_stream(weights: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from ..serve.test_app import running, wait

    with running(tmp_path) as url, httpx.Client(base_url=url, timeout=60) as http:
        job = http.post(
            "/v1/generations", json={"request": {"prompt": "x", "duration": 1, "watermark": True}, "provider": "synth"}
        ).json()
        assert wait(http, job["id"], timeout=120)["status"] == "succeeded"
        wav = http.get(f"/v1/generations/{job['id']}/audio").content
        assert b"AUDIOSEAL_PAYLOAD" in wav
        refused = http.post(
            "/v1/generations",
            json={"request": {"prompt": "x", "watermark": True}, "provider": "synth", "stream": True},
        )
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "watermark"


def test_a_batch_row_with_watermark_delivers_a_marked_file(weights: dict[str, Path], tmp_path: Path) -> None:
    import json

    from soundforge.bulk import batch

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"name": "cue", "prompt": "rain", "duration": 1, "seed": 2, "watermark": True}))
    report = batch(manifest, tmp_path / "out", provider="synth")
    assert report.done == ["cue"]
    sidecar = json.loads((tmp_path / "out" / "cue.wav.json").read_text())
    record = sidecar["provenance"]["watermark"]
    assert read_tags(tmp_path / "out" / "cue.wav")["AUDIOSEAL_PAYLOAD"] == record["payload"]
    assert record["payload"] == record["unmarked_pcm_sha256"][:4]
