"""Stems of any track (soundforge.separate, provider demucs): Demucs' real code on a tiny random HTDemucs exported
the way Demucs publishes its models and found in the Hugging Face cache, compared bit for bit with Demucs' own
`demucs.api.Separator`; stems' licences (source + separator), the policy before any work, provenance links,
refusals, progress and cancellation, the CLI."""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

pytest.importorskip("demucs")

from soundforge import (
    CancelToken,
    GenerationCancelledError,
    InvalidRequestError,
    LicensePolicy,
    LicensePolicyError,
    ModelNotAvailableError,
)
from soundforge.cli import cli
from soundforge.client import Client
from soundforge.config import Config
from soundforge.testing.demucs import build_demucs, install_in_hub_cache

SR = 44100
HUB = Path(os.environ["HF_HOME"]) / "hub"


@pytest.fixture(scope="module", autouse=True)
def tiny_htdemucs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-model bag of tiny HTDemucs, installed in the test's Hugging Face cache as adefossez/HTDemucs."""
    folder = build_demucs(tmp_path_factory.mktemp("export"), "htdemucs", models=2, seed=7)
    install_in_hub_cache(folder, "adefossez/HTDemucs", HUB)
    return folder


@pytest.fixture
def mix(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    t = np.arange(int(2.5 * SR)) / SR
    audio = 0.3 * np.sin(2 * np.pi * 220 * t)[None] + 0.05 * rng.standard_normal((2, t.size))
    path = tmp_path / "mix.wav"
    sf.write(path, audio.T.astype(np.float32), SR, subtype="FLOAT")
    return path


def direct_stems(path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Demucs' own API on the same file, offline from the same cache."""
    import huggingface_hub.constants
    import torch
    from demucs.api import Separator

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    separator = Separator("htdemucs", device="cpu", shifts=1, progress=False)
    wav, rate = sf.read(path, dtype="float32", always_2d=True)
    random.seed(seed)
    _, stems = separator.separate_tensor(torch.from_numpy(wav.T.copy()), rate)
    return {name: value.numpy() for name, value in stems.items()}


def test_stems_equal_demucs_own_call_bit_for_bit(mix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(Config.load(user_file=False))
    g = client.separate(mix, ("vocals", "drums", "bass", "other"), seed=11)
    expected = direct_stems(mix, 11, monkeypatch)
    assert [t.role for t in g.tracks] == ["vocals", "drums", "bass", "other"]
    for track in g.tracks:
        assert track.sample_rate == SR and track.audio.shape == (2, int(2.5 * SR))
        assert np.array_equal(track.audio, expected[track.role]), track.role
    assert not np.array_equal(g.tracks[0].audio, g.tracks[1].audio)  # four different stems, not one copied
    # The seed draws Demucs' time shift: the same seed gives the same stems, another seed others.
    again = client.separate(mix, ("vocals",), seed=11)
    assert np.array_equal(again.audio, g.audio)
    other = client.separate(mix, ("vocals",), seed=12)
    assert not np.array_equal(other.audio, g.audio)
    p = g.provenance
    assert p.provider == "demucs" and p.model == "htdemucs" and p.parameters["shifts"] == 1
    assert p.source is not None and p.source["file"] == "mix.wav" and p.source["license"] == "LicenseRef-Unknown"
    import soundforge  # the process-wide client gives the same stems

    assert np.array_equal(soundforge.separate(mix, ("vocals",), seed=11).audio, g.audio)


def test_a_generated_track_gives_stems_with_both_licences_and_a_link_to_it(tmp_path: Path) -> None:
    client = Client(Config.load(user_file=False))
    song = client.generate("house groove", provider="synth", duration=2, seed=4)
    g = client.separate(song, ("drums", "bass"), seed=5)
    assert [t.role for t in g.tracks] == ["drums", "bass"]
    license = g.license
    roles = [c.role for c in license.components]
    assert "source engine" in roles and "weights" in roles  # the synth's CC0 and Demucs' weights
    assert license.id == "LicenseRef-Demucs-Weights-Research" and not license.commercial
    assert g.provenance.source == {
        "pcm_sha256": song.provenance.pcm_sha256,
        "provider": "synth",
        "model": song.provenance.model,
        "license": "CC0-1.0",
    }
    # The float track is separated as it is (no 16-bit round trip): same stems as from a float WAV of it.
    path = tmp_path / "song.wav"
    sf.write(path, song.audio.T, SR, subtype="FLOAT")
    assert np.array_equal(client.separate(path, ("drums",), seed=5).audio, g.audio)
    # A saved soundforge file brings its licence from its sidecar.
    saved = song.tracks[0].save(tmp_path / "saved.flac")
    from_file = client.separate(saved, ("bass",))
    assert from_file.provenance.source["provider"] == "synth" and from_file.provenance.source["license"] == "CC0-1.0"
    files = g.save(tmp_path / "stems.wav")
    assert [f.name for f in files] == ["stems.drums.wav", "stems.bass.wav"]
    sidecar = json.loads((tmp_path / "stems.drums.wav.json").read_text())
    assert sidecar["provenance"]["source"]["pcm_sha256"] == song.provenance.pcm_sha256


def test_a_commercial_policy_refuses_the_research_weights_before_anything_loads(mix: Path) -> None:
    client = Client(Config.load(user_file=False), policy=LicensePolicy.commercial())
    with pytest.raises(LicensePolicyError, match="scientific purposes"):
        client.separate(mix)
    assert client.loaded_models() == []  # nothing was loaded


def test_refusals_say_what_to_do(mix: Path) -> None:
    client = Client(Config.load(user_file=False))
    with pytest.raises(InvalidRequestError, match="guitar") as info:
        client.separate(mix, ("vocals", "guitar"))
    assert "htdemucs_6s" in (info.value.hint or "")
    with pytest.raises(InvalidRequestError, match="is not one of"):
        client.separate(mix, ("kazoo",))
    with pytest.raises(InvalidRequestError, match="name each stem once"):
        client.separate(mix, ("bass", "bass"))
    with pytest.raises(InvalidRequestError, match="does not exist"):
        client.separate(mix.with_name("nope.wav"))
    with pytest.raises(InvalidRequestError, match="makes no audio from a prompt"):
        client.generate("a song", provider="demucs")
    offline = Client(Config.load(user_file=False, providers={"demucs": {"allow_download": False}}))
    with pytest.raises(ModelNotAvailableError) as missing:
        offline.separate(mix, provider="demucs:htdemucs_ft")
    assert "hf download adefossez/HTDemucs-ft" in (missing.value.hint or "")
    assert str(HUB) in str(missing.value)


def test_progress_counts_the_passes_and_cancel_stops_them(mix: Path) -> None:
    client = Client(Config.load(user_file=False))
    events = []
    client.separate(mix, ("vocals",), on_progress=events.append)
    passes = [e for e in events if e.phase == "separate"]
    assert passes[-1].done == passes[-1].total and passes[-1].total >= 2 * 4  # 2 models, >= 4 one-second segments
    token = CancelToken()

    def stop(event) -> None:
        if event.phase == "separate" and event.done >= 1:
            token.cancel()

    with pytest.raises(GenerationCancelledError):
        client.separate(mix, ("vocals",), on_progress=stop, cancel=token)


def test_cli_separate_writes_one_file_per_stem(mix: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts" / "mix.wav"
    out.parent.mkdir()
    result = CliRunner().invoke(cli, ["separate", str(mix), "--stems", "vocals,drums", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.glob("*.wav")) == ["mix.drums.wav", "mix.vocals.wav"]
    assert "LicenseRef-Demucs-Weights-Research" in result.output
    refused = CliRunner().invoke(cli, ["separate", str(mix), "--stems", "kazoo"])
    assert refused.exit_code != 0 and "is not one of" in refused.output and "Traceback" not in refused.output


def test_a_request_with_stems_returns_the_mix_then_its_stems_and_saves_them_beside_it(tmp_path: Path) -> None:
    client = Client(Config.load(user_file=False))
    g = client.generate("drum and bass", provider="synth", duration=2, seed=3, stems=["drums", "Bass"])
    assert [t.role for t in g.tracks] == [None, "drums", "bass"]
    alone = client.separate(g.tracks[0], ("drums", "bass"), seed=3)
    assert np.array_equal(g.tracks[1].audio, alone.tracks[0].audio)  # the same separation as separate()
    assert g.tracks[0].license.id == "CC0-1.0" and not g.tracks[1].license.commercial
    assert g.tracks[2].provenance.source["pcm_sha256"] == g.tracks[0].provenance.pcm_sha256
    paths = g.save(tmp_path / "dnb.wav")
    assert [p.name for p in paths] == ["dnb.wav", "dnb.drums.wav", "dnb.bass.wav"]
    result = CliRunner().invoke(
        cli,
        ["generate", "x", "-p", "synth", "-d", "1", "--seed", "1", "--stems", "vocals", "-o", str(tmp_path / "c.wav")],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.wav").exists() and (tmp_path / "c.vocals.wav").exists()


def test_stems_are_refused_before_the_track_is_generated(tmp_path: Path) -> None:
    events = []
    commercial = Client(Config.load(user_file=False), policy=LicensePolicy.commercial())
    with pytest.raises(LicensePolicyError, match="demucs"):
        commercial.generate("x", provider="synth", duration=2, stems=["drums"], on_progress=events.append)
    client = Client(Config.load(user_file=False))
    with pytest.raises(InvalidRequestError, match="guitar"):
        client.generate("x", provider="synth", duration=2, stems=["guitar"], on_progress=events.append)
    assert events == []  # nothing ran
    with pytest.raises(InvalidRequestError, match="num_outputs=1"):
        client.generate("x", provider="synth", num_outputs=2, stems=["drums"])
    with pytest.raises(InvalidRequestError, match="cannot be streamed"):
        client.stream("x", provider="synth", stems=["drums"])


def test_a_model_that_extracts_stems_itself_is_asked_once_per_stem() -> None:
    """The native path: a provider whose model declares `extract` and the stems makes them (one per call here, as
    ACE-Step does), and no Demucs runs."""
    from soundforge.backends import RawGeneration, RawTrack
    from soundforge.testing import FunctionBackend

    asked = []

    def make(request, context):
        n = round(request.duration * SR)
        if request.audio_prompt_mode != "extract":
            return np.full((2, n), 0.5, np.float32)
        asked.append(request.stem)
        level = {"drums": 0.1, "bass": 0.2}[request.stem]
        return RawGeneration([RawTrack(np.full((2, n), level, np.float32), SR, seed=1, role=request.stem)])

    client = Client(Config.load(user_file=False), backends={"band": FunctionBackend(make, name="band")})
    g = client.generate("x", provider="band", duration=1, stems=["bass", "drums"])
    assert asked == ["bass", "drums"] and [t.role for t in g.tracks] == [None, "bass", "drums"]
    assert g.tracks[1].provenance.provider == "band" and float(g.tracks[2].audio[0, 0]) == pytest.approx(0.1)
    assert client.loaded_models() == []


def test_a_batch_row_with_stems_delivers_the_track_and_each_stem(tmp_path: Path) -> None:
    from soundforge.bulk import batch, load_manifest
    from soundforge.bulk.output import OutputLocation, delivered

    manifest = tmp_path / "m.jsonl"
    rows = [{"name": "dnb", "prompt": "drum and bass", "duration": 2, "seed": 3, "stems": ["drums", "bass"]}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    client = Client(Config.load(user_file=False))
    report = batch(manifest, out, client=client, provider="synth")
    assert report.done == ["dnb"] and not report.failed
    assert sorted(p.name for p in out.glob("dnb*.wav")) == ["dnb.bass.wav", "dnb.drums.wav", "dnb.wav"]
    # The same stems as a generate() with the same request; each file with its sidecar and the row's fingerprint.
    g = client.generate("drum and bass", provider="synth", duration=2, seed=3, stems=["drums", "bass"])
    stem, _ = sf.read(out / "dnb.drums.wav", dtype="float32", always_2d=True)
    assert np.max(np.abs(stem.T - g.tracks[1].audio)) <= 1 / 32768 + 1e-7  # 16-bit WAV of the same samples
    row = load_manifest(manifest)[0]
    sidecar = json.loads((out / "dnb.bass.wav.json").read_text())
    assert sidecar["batch"]["fingerprint"] == row.fingerprint and sidecar["provenance"]["role"] == "bass"
    # The row answers to the stems' licence (the synth's CC0 and Demucs' research-only weights).
    licenses = json.loads((out / "licenses.json").read_text())
    assert [lid for lid, entry in licenses.items() if "dnb" in entry["rows"]] == [g.tracks[1].license.id]
    # A stem lost after the run: the row is not delivered, and a resume makes it again.
    (out / "dnb.drums.wav").unlink()
    assert not delivered(row, OutputLocation(out))
    again = batch(manifest, out, client=client, provider="synth", resume=True)
    assert again.done == ["dnb"] and (out / "dnb.drums.wav").exists()
    # A commercial policy refuses the row before anything runs: Demucs' weights are research-only.
    commercial = Client(Config.load(user_file=False), policy=LicensePolicy.commercial())
    with pytest.raises(LicensePolicyError, match="row 1"):
        batch(manifest, tmp_path / "refused", client=commercial, provider="synth")
    assert not (tmp_path / "refused").exists()


def test_a_served_job_with_stems_stores_each_stem_with_its_licence(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from ..serve.test_app import running, wait

    with running(tmp_path) as url, httpx.Client(base_url=url, timeout=60) as http:
        request = {"prompt": "drum and bass", "duration": 2, "seed": 3, "stems": ["drums", "bass"]}
        job = http.post("/v1/generations", json={"request": request, "provider": "synth"}).json()
        record = wait(http, job["id"], timeout=120)
        assert record["status"] == "succeeded", record
        assert [s["role"] for s in record["stems"]] == ["drums", "bass"]
        assert record["license"]["id"] == "CC0-1.0" and record["stems"][0]["license"]["commercial_use"] != "allowed"
        g = Client(Config.load(user_file=False)).generate(
            "drum and bass", provider="synth", duration=2, seed=3, stems=["drums", "bass"]
        )
        for index, role in enumerate(("drums", "bass"), 1):
            wav = http.get(f"/v1/generations/{job['id']}/audio", params={"stem": role})
            assert wav.status_code == 200 and f".{role}.wav" in wav.headers["content-disposition"]
            data, _ = sf.read(io.BytesIO(wav.content), dtype="float32", always_2d=True)
            assert np.max(np.abs(data.T - g.tracks[index].audio)) <= 1 / 32768 + 1e-7
            assert b"ROLE" in wav.content
        flac = http.get(f"/v1/generations/{job['id']}/audio", params={"stem": "bass", "format": "flac"})
        assert flac.status_code == 200 and flac.content[:4] == b"fLaC"
        missing = http.get(f"/v1/generations/{job['id']}/audio", params={"stem": "vocals"})
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "stem"
        # A commercial server refuses stems by Demucs' research-only weights when the job is submitted.
    commercial = LicensePolicy.commercial()
    with running(tmp_path / "c", policy=commercial) as url, httpx.Client(base_url=url, timeout=60) as http:
        refused = http.post("/v1/generations", json={"request": request, "provider": "synth"})
        assert refused.status_code == 403 and "demucs" in refused.text
