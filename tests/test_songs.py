"""The song vocabulary: tempo, key, metre, lyric structure, operations on an audio prompt and named tracks; one
spelling for each, honoured by the synthesizer, written into the files' tags and read back by ffprobe."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from soundforge import GenerationRequest, InvalidRequestError, UnsupportedFeatureError
from soundforge.client import Client
from soundforge.config import Config
from soundforge.music import lyric_sections, parse_key
from soundforge.output.files import output_paths
from soundforge.output.tags import read_tags


@pytest.mark.parametrize(
    ("written", "spelled", "short"),
    [
        ("A minor", "A minor", "Am"),
        ("am", "A minor", "Am"),
        ("F#m", "F# minor", "F#m"),
        ("f sharp minor", "F# minor", "F#m"),
        ("Bb major", "Bb major", "Bb"),
        ("E flat", "Eb major", "Eb"),
        ("C", "C major", "C"),
        ("D♭ min", "Db minor", "Dbm"),
        ("GM", "G major", "G"),
    ],
)
def test_a_key_has_one_spelling(written: str, spelled: str, short: str) -> None:
    assert GenerationRequest(prompt="x", key=written).key == spelled
    assert parse_key(written).short == short


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"key": "H major"}, "not a key"),
        ({"key": "A dorian"}, "not a key"),
        ({"time_signature": "4/3"}, "beat unit"),
        ({"time_signature": "waltz"}, "3/4"),
        ({"bpm": 10}, "greater than or equal to 20"),
        ({"vocal_language": "English"}, "vocal_language"),
        ({"vocal_language": "en", "instrumental": True}, "contradict"),
        ({"audio_prompt": (np.zeros(800), 800), "audio_prompt_mode": "repaint"}, "region"),
        ({"audio_prompt": (np.zeros(800), 800), "region": (1.0, 2.0)}, "region"),
        ({"audio_prompt": (np.zeros(800), 800), "audio_prompt_mode": "extract"}, "stem"),
        ({"audio_prompt": (np.zeros(800), 800), "audio_prompt_mode": "extract", "stem": "kazoo"}, "kazoo"),
        ({"audio_prompt": (np.zeros(800), 800), "audio_prompt_mode": "repaint", "region": (3.0, 1.0)}, "start < end"),
        ({"audio_prompt": (np.zeros(800), 800), "audio_prompt_mode": "continuation", "strength": 0.5}, "strength"),
    ],
)
def test_bad_song_fields_are_refused_with_what_to_write(fields: dict, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        GenerationRequest(prompt="x", **fields)


def test_time_signatures_stems_and_sections_are_normalised() -> None:
    request = GenerationRequest(
        prompt="x",
        time_signature=" 6/8 ",
        audio_prompt=(np.zeros(800), 800),
        audio_prompt_mode="extract",
        stem="Backing Vocals",
    )
    assert request.time_signature == "6/8" and request.stem == "backing_vocals"
    assert GenerationRequest(prompt="x", time_signature="3").time_signature == "3/4"
    sections = lyric_sections("opening line\n[Chorus]\nla la\n\n[bridge]\n[verse]\none\ntwo")
    assert [(s.name, s.lines) for s in sections] == [
        ("verse", ("opening line",)),
        ("chorus", ("la la",)),
        ("bridge", ()),
        ("verse", ("one", "two")),
    ]


def _client() -> Client:
    return Client(Config.load(user_file=False))


@pytest.mark.xdist_group("librosa")  # with tests/backends/test_synth.py's beat tests: numba compiles once per worker
def test_the_synth_plays_the_tempo_the_request_states_over_the_prompt() -> None:
    librosa = pytest.importorskip("librosa")
    g = _client().generate("deep house 124 BPM", provider="synth", duration=30, seed=5, bpm=97)
    tempo, _ = librosa.beat.beat_track(y=g.audio.mean(axis=0), sr=g.sample_rate)
    found = float(np.atleast_1d(tempo)[0])
    assert abs(found - 97) / 97 < 0.02, found
    assert g.provenance.parameters["tempo_bpm"] == 97


@pytest.mark.parametrize(("key", "tonic"), [("F# minor", 6), ("D major", 2), ("Bb minor", 10)])
def test_the_synth_plays_in_the_key_the_request_states(key: str, tonic: int) -> None:
    g = _client().generate("deep house in A minor", provider="synth", duration=8, seed=3, key=key)
    mono = g.audio.mean(axis=0).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(mono.size)))
    freqs = np.fft.rfftfreq(mono.size, 1 / g.sample_rate)
    low = (freqs > 35) & (freqs < 90)  # the kick's and the bass's fundamentals sit on the key's root
    peak = freqs[low][np.argmax(spectrum[low])]
    assert round(12 * np.log2(peak / 440.0) + 69) % 12 == tonic, (key, peak)
    assert g.provenance.parameters["key"].split()[1] == key.split()[1]


def _bar_periodicity(audio: np.ndarray, sr: int, beat_s: float) -> tuple[float, float]:
    """Autocorrelation of the onset envelope at three and at four beats: which bar length the music repeats in."""
    mono = audio.mean(axis=0).astype(np.float64)
    hop = sr // 100
    envelope = np.sqrt(np.add.reduceat(mono**2, np.arange(0, mono.size, hop)))
    onset = np.maximum(np.diff(envelope), 0)
    onset -= onset.mean()
    ac = np.correlate(onset, onset, "full")[onset.size - 1 :]
    beat = round(beat_s * 100)
    return ac[3 * beat] / ac[0], ac[4 * beat] / ac[0]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_synth_plays_the_metre_the_request_states(seed: int) -> None:
    client = _client()
    common = client.generate("rock anthem", provider="synth", duration=20, seed=seed, bpm=120)
    waltz = client.generate("rock anthem", provider="synth", duration=20, seed=seed, bpm=120, time_signature="3/4")
    three, four = _bar_periodicity(common.audio, common.sample_rate, 0.5)
    assert four > three + 0.15, (three, four)
    three, four = _bar_periodicity(waltz.audio, waltz.sample_rate, 0.5)
    assert three > four + 0.05, (three, four)
    assert waltz.provenance.parameters["time_signature"] == "3/4"
    assert common.provenance.parameters["time_signature"] == "4/4"
    compound = client.generate("rock anthem", provider="synth", duration=4, seed=seed, time_signature="6/8")
    assert compound.audio.shape[1] == 4 * compound.sample_rate


def test_a_4_4_request_sounds_as_before_the_metre_existed() -> None:
    client = _client()
    stated = client.generate("house in A minor 124 BPM", provider="synth", duration=4, seed=8, time_signature="4/4")
    unstated = client.generate("house in A minor 124 BPM", provider="synth", duration=4, seed=8)
    assert stated.audio.tobytes() == unstated.audio.tobytes()


def test_song_fields_reach_the_tags(tmp_path) -> None:
    g = _client().generate("waltz", provider="synth", duration=2, seed=1, bpm=96, key="f#m", time_signature="3/4")
    for fmt in ("wav", "flac", "mp3", "ogg"):
        tags = read_tags(g.tracks[0].save(tmp_path / f"w.{fmt}"))
        assert (tags["BPM"], tags["KEY"], tags["TIME_SIGNATURE"]) == ("96", "F#m", "3/4"), fmt
        assert "ROLE" not in tags
    sidecar = json.loads((tmp_path / "w.wav.json").read_text())
    assert sidecar["provenance"]["request"]["key"] == "F# minor"


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (Debian ffmpeg) is installed by scripts/test")
@pytest.mark.parametrize(
    ("fmt", "bpm_tag", "key_tag"),
    [("mp3", "TBPM", "TKEY"), ("flac", "BPM", "KEY")],  # ffprobe reads a WAV's INFO only
)
def test_an_independent_reader_sees_tempo_and_key(tmp_path, fmt: str, bpm_tag: str, key_tag: str) -> None:
    g = _client().generate("x", provider="synth", duration=2, seed=1, bpm=128, key="A minor")
    path = g.tracks[0].save(tmp_path / f"s.{fmt}")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", str(path)], capture_output=True, text=True, check=True
    )
    tags = {k.upper(): v for k, v in json.loads(out.stdout)["format"].get("tags", {}).items()}
    assert tags[bpm_tag] == "128" and tags[key_tag] == "Am", tags


def test_tracks_with_roles_are_saved_under_their_names(tmp_path) -> None:
    assert [p.name for p in output_paths(tmp_path / "song.wav", 2, ["vocals", "drums"])] == [
        "song.vocals.wav",
        "song.drums.wav",
    ]
    # Without a role each, or with one role twice, tracks are numbered as before.
    assert [p.name for p in output_paths(tmp_path / "song.wav", 2, ["vocals", None])] == ["song-1.wav", "song-2.wav"]
    assert [p.name for p in output_paths(tmp_path / "song.wav", 1)] == ["song.wav"]


def test_a_backend_without_a_mode_refuses_it_by_value() -> None:
    client = _client()
    with pytest.raises(UnsupportedFeatureError) as info:
        client.generate("x", provider="musicgen", audio_prompt=(np.zeros(800), 800), audio_prompt_mode="variation")
    assert info.value.field == "audio_prompt_mode" and "continuation" in str(info.value)
    assert "stable-audio" in info.value.supported_by and "musicgen" not in info.value.supported_by


def test_the_synth_renders_a_named_section_structure() -> None:
    from soundforge.backends.synth.render import SECTION_PARTS

    client = _client()
    # 120 BPM in 4/4: a bar is 2 s; 16 s is 8 bars, shared by the sections in order.
    song = client.generate(
        "rock anthem", provider="synth", duration=16, seed=4, bpm=120, extra={"sections": ["intro", "chorus"]}
    )
    plain = client.generate("rock anthem", provider="synth", duration=16, seed=4, bpm=120)
    sr = song.sample_rate

    def low_band_energy(audio: np.ndarray, start: float, end: float) -> float:
        part = audio.mean(axis=0)[int(start * sr) : int(end * sr)].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(part)) ** 2
        freqs = np.fft.rfftfreq(part.size, 1 / sr)
        return float(spectrum[(freqs > 35) & (freqs < 120)].sum() / spectrum.sum())

    # The intro has no kick and no bass; the chorus has both, as the whole plain piece does.
    assert low_band_energy(song.audio, 0.5, 7.5) < 0.25 * low_band_energy(song.audio, 8.5, 15.5)
    assert low_band_energy(plain.audio, 0.5, 7.5) > 0.5 * low_band_energy(plain.audio, 8.5, 15.5)
    assert song.provenance.parameters["sections"] == ["intro", "chorus"]
    assert "sections" not in plain.provenance.parameters
    with pytest.raises(InvalidRequestError, match="unknown synth section"):
        client.generate("x", provider="synth", duration=4, extra={"sections": ["interlude-of-doom"]})
    assert {"intro", "verse", "chorus", "bridge", "outro"} <= set(SECTION_PARTS)
