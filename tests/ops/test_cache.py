"""The result cache: a repeated deterministic request comes back from disk, bit for bit, at no cost."""

from __future__ import annotations

import numpy as np

from soundforge.client import Client
from soundforge.config import Config
from soundforge.ops.cache import DiskCache

from ..helpers import cloud


def test_a_seeded_request_is_served_from_the_cache(tmp_path) -> None:
    cache = DiskCache(tmp_path / "cache")
    client = Client(Config.load(user_file=False), cache=cache)
    first = client.generate("lofi beat", provider="synth", duration=2, seed=7)
    assert not first.provenance.cache_hit and first.cost.basis == "local_compute"
    again = client.generate("lofi beat", provider="synth", duration=2, seed=7)
    assert again.provenance.cache_hit and again.cost.amount == 0 and again.cost.basis == "cache_hit"
    assert np.array_equal(again.audio, first.audio) and again.audio.dtype == np.float32
    assert again.provenance.pcm_sha256 == first.provenance.pcm_sha256 and again.license == first.license
    assert "local" in again.cost.detail  # says what the original call cost
    other_seed = client.generate("lofi beat", provider="synth", duration=2, seed=8)
    unseeded = client.generate("lofi beat", provider="synth", duration=2)  # asks for a new variation: never cached
    assert not other_seed.provenance.cache_hit and not unseeded.provenance.cache_hit
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 2
    uncached = Client(Config.load(user_file=False)).generate("lofi beat", provider="synth", duration=2, seed=7)
    assert not uncached.provenance.cache_hit  # off by default


def test_a_paid_deterministic_call_is_paid_once(stability, replicate, downloads, tmp_path) -> None:
    cache = DiskCache(tmp_path / "cache")
    client = cloud("stability", stability, downloads)
    client.cache = cache
    client.generate("x", provider="stability", duration=2, seed=3)
    hit = client.generate("x", provider="stability", duration=2, seed=3)
    assert stability.requests == 1 and hit.provenance.cache_hit and hit.cost.amount == 0
    # A model that does not declare seed determinism is never cached, seed or not.
    other = cloud("replicate", replicate, downloads, prefer_wait=0)
    other.cache = cache
    for _ in range(2):
        other.generate("x", provider="replicate:someone/sfx-model", duration=1, seed=3)
    assert len(replicate.jobs) == 2


def test_the_key_follows_settings_and_engines_not_secrets() -> None:
    from soundforge.backends.stability import StabilityBackend

    a = StabilityBackend({"api_key": "one"}).cache_identity("stable-audio-2.5")
    b = StabilityBackend({"api_key": "two"}).cache_identity("stable-audio-2.5")
    c = StabilityBackend({"upload_format": "wav"}).cache_identity("stable-audio-2.5")
    assert a == b and a != c and "one" not in str(a) and a["numpy"] == np.__version__


def test_eviction_and_damaged_entries(tmp_path) -> None:
    cache = DiskCache(tmp_path / "cache", max_bytes=800_000)  # room for one 1.5 s stereo track (529 kB)
    client = Client(Config.load(user_file=False), cache=cache)
    client.generate("a", provider="synth", duration=1.5, seed=1)
    client.generate("b", provider="synth", duration=1.5, seed=1)
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1  # the least recently used went
    assert client.generate("b", provider="synth", duration=1.5, seed=1).provenance.cache_hit
    (entries[0] / "0.npy").write_bytes(b"not an array")
    assert not client.generate("b", provider="synth", duration=1.5, seed=1).provenance.cache_hit  # a miss, remade
    assert client.generate("b", provider="synth", duration=1.5, seed=1).provenance.cache_hit


def test_an_entry_that_is_not_what_was_stored_is_a_miss(tmp_path) -> None:
    """Flipped bytes, NaN, a wrong shape, a changed rate and a malformed tracks.json: each a miss (the request is
    made again and the entry replaced), never damaged audio served as a hit, never a crash."""
    import json

    cache = DiskCache(tmp_path / "cache")
    client = Client(Config.load(user_file=False), cache=cache)
    made = client.generate("b", provider="synth", duration=1, seed=1)
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    stored = np.load(entry / "0.npy")
    meta = (entry / "tracks.json").read_text()

    def damaged(write) -> None:
        write()
        again = client.generate("b", provider="synth", duration=1, seed=1)
        assert not again.provenance.cache_hit and np.array_equal(again.audio, made.audio)
        np.save(entry / "0.npy", stored)  # the remade entry is the original one
        (entry / "tracks.json").write_text(meta)

    flipped = stored.copy()
    flipped[0, 100] += np.float32(0.25)
    damaged(lambda: np.save(entry / "0.npy", flipped))
    nan = stored.copy()
    nan[1, 5] = np.nan
    damaged(lambda: np.save(entry / "0.npy", nan))
    damaged(lambda: np.save(entry / "0.npy", stored[:1]))
    records = json.loads(meta)
    records[0]["sample_rate"] = 7
    damaged(lambda: (entry / "tracks.json").write_text(json.dumps(records)))
    damaged(lambda: (entry / "tracks.json").write_text('[{"sample_rate": "x"}]'))
    damaged(lambda: (entry / "tracks.json").write_text('{"not": "a list"}'))
    assert client.generate("b", provider="synth", duration=1, seed=1).provenance.cache_hit
