import numpy as np
import pytest

from soundforge.backends.synth.theory import plan_from_prompt
from soundforge.client import Client


def test_same_seed_is_bit_identical_and_other_seed_differs(client: Client) -> None:
    a = client.generate("upbeat house in A minor", provider="synth", duration=4, seed=11)
    b = client.generate("upbeat house in A minor", provider="synth", duration=4, seed=11)
    c = client.generate("upbeat house in A minor", provider="synth", duration=4, seed=12)
    assert a.audio.tobytes() == b.audio.tobytes()
    assert a.provenance.pcm_sha256 == b.provenance.pcm_sha256
    assert not np.array_equal(a.audio, c.audio)


def test_output_shape_and_level(client: Client) -> None:
    g = client.generate("lofi beat", provider="synth", duration=3, seed=1)
    assert g.audio.dtype == np.float32 and g.audio.shape == (2, 3 * 44100)
    assert g.sample_rate == 44100
    assert 0.5 < np.max(np.abs(g.audio)) <= 1.0
    assert np.std(g.audio[0] - g.audio[1]) > 1e-3  # really stereo
    mono = client.generate("lofi beat", provider="synth", duration=2, seed=1, channels=1, sample_rate=22050)
    assert mono.audio.shape == (1, 44100) and mono.sample_rate == 22050


# librosa's beat tracker is numba code compiled on first use (~40 s on a 2-core CPU): its tests share one worker,
# which compiles it once (tests/conftest.py gives each process its own numba cache).
@pytest.mark.xdist_group("librosa")
@pytest.mark.parametrize(
    "prompt, bpm",
    [
        ("lo-fi hip hop, 85 BPM", 85),
        ("rock anthem 100 bpm", 100),
        ("synthwave at 110 BPM", 110),
        ("deep house 124 BPM", 124),
        ("techno 132 BPM", 132),
        ("chiptune 140 bpm", 140),
    ],
)
def test_beat_tracker_finds_requested_tempo(client: Client, prompt: str, bpm: float) -> None:
    librosa = pytest.importorskip("librosa")
    g = client.generate(prompt, provider="synth", duration=30, seed=5)
    tempo, _ = librosa.beat.beat_track(y=g.audio.mean(axis=0), sr=g.sample_rate)
    found = float(np.atleast_1d(tempo)[0])
    assert abs(found - bpm) / bpm < 0.02, (prompt, found)


def test_prompt_words_drive_the_plan() -> None:
    plan = plan_from_prompt("sad cinematic strings in F# minor", 0)
    assert (plan.tonic, plan.minor, plan.style.name) == (6, True, "cinematic")
    plan = plan_from_prompt("happy upbeat pop in Bb major", 0)
    assert (plan.tonic, plan.minor, plan.style.name) == (10, False, "pop")
    assert plan.tempo > plan_from_prompt("pop", 0).tempo
    assert plan_from_prompt("slow ambient drone", 0).tempo < 70
    assert plan_from_prompt("drum and bass 174 bpm", 0).tempo == 174


def test_duration_limits(client: Client) -> None:
    from soundforge import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="600"):
        client.generate("x", provider="synth", duration=601)
    long = client.generate("ambient", provider="synth", duration=600, seed=1, channels=1, sample_rate=22050)
    assert long.audio.shape == (1, 600 * 22050)
    short = client.generate("ambient", provider="synth", duration=1, seed=1)
    assert short.duration == pytest.approx(1.0)


def test_num_outputs_gives_distinct_seeded_tracks(client: Client) -> None:
    g = client.generate("jazz trio", provider="synth", duration=2, seed=100, num_outputs=3)
    assert [t.provenance.seed for t in g.tracks] == [100, 101, 102]
    assert len({t.provenance.pcm_sha256 for t in g.tracks}) == 3
    assert [t.provenance.track_index for t in g.tracks] == [0, 1, 2]


@pytest.mark.parametrize(
    "prompt, tonic",
    [("deep house in A minor", 9), ("house in C major", 0), ("house in G major", 7), ("techno in E minor", 4)],
)
def test_the_low_end_sits_on_the_key_root(client: Client, prompt: str, tonic: int) -> None:
    g = client.generate(prompt, provider="synth", duration=8, seed=3)
    mono = g.audio.mean(axis=0).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(mono.size)))
    freqs = np.fft.rfftfreq(mono.size, 1 / g.sample_rate)
    low = (freqs > 35) & (freqs < 90)  # the kick's and the bass's fundamentals
    peak = freqs[low][np.argmax(spectrum[low])]
    pitch_class = round(12 * np.log2(peak / 440.0) + 69) % 12
    assert pitch_class == tonic, (prompt, peak)


def test_seeds_vary_the_groove(client: Client) -> None:
    def envelope(seed: int) -> np.ndarray:
        audio = client.generate("house 120 BPM in A minor", provider="synth", duration=8, seed=seed).audio
        frames = audio.mean(axis=0)[: (audio.shape[1] // 441) * 441].reshape(-1, 441)
        return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))

    envelopes = [envelope(seed) for seed in range(6)]
    correlations = [np.corrcoef(envelopes[0], other)[0, 1] for other in envelopes[1:]]
    assert min(correlations) < 0.9, correlations


def test_a_metre_in_the_prompt_is_played_as_if_it_were_asked_for(client: Client) -> None:
    """ "waltz in 3/4" is rendered in 3/4, the same audio as `time_signature="3/4"`; a fraction that is no metre
    ("24/7") leaves common time (the synth ignored metres in the prompt)."""
    assert str(plan_from_prompt("a waltz in 3/4", 1).meter) == "3/4"
    assert str(plan_from_prompt("a jig", 1).meter) == "6/8" and str(plan_from_prompt("a slow waltz", 1).meter) == "3/4"
    assert str(plan_from_prompt("24/7 vibes", 1).meter) == "4/4"
    read = client.generate("strings in 3/4", provider="synth", duration=3, seed=4)
    stated = client.generate("strings in 3/4", provider="synth", duration=3, seed=4, time_signature="3/4")
    common = client.generate("strings in 3/4", provider="synth", duration=3, seed=4, time_signature="4/4")
    assert read.tracks[0].provenance.parameters["time_signature"] == "3/4"
    assert np.array_equal(read.audio, stated.audio) and not np.array_equal(read.audio, common.audio)
