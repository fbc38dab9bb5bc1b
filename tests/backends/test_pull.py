"""`soundforge pull` / `Client.pull` against a fake Hugging Face hub on 127.0.0.1 (tests/fake_hub.py, written from
huggingface_hub's client code): the licence policy refuses before any weight byte is fetched; an allowed model is
downloaded, checked against the hub's hashes, and then runs offline; a corrupt file is caught; models pull cannot
fetch say why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from soundforge import LicensePolicy, LicensePolicyError
from soundforge.backends.pull import PullError
from soundforge.client import Client
from soundforge.config import Config
from soundforge.testing.musicgen import build_musicgen

from ..fake_hub import COMMIT, FakeHub

MODEL = "facebook/musicgen-small"  # the registry's record: CC-BY-NC-4.0 weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    folder = build_musicgen(tmp_path_factory.mktemp("pull") / "musicgen-small")
    (folder / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# MusicGen (tiny, random)\n", "utf-8")
    return folder


@pytest.fixture
def hub(tiny, tmp_path, monkeypatch):
    """The fake hub serving the tiny MusicGen as facebook/musicgen-small, and an empty cache that may download."""
    import huggingface_hub.constants as constants

    fake = FakeHub()
    fake.add(MODEL, tiny)
    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "ENDPOINT", fake.url)
    # File URLs come from a template made at import time from HF_ENDPOINT (file_download.hf_hub_url).
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    yield fake
    fake.close()


def weights_fetched(fake: FakeHub) -> list[str]:
    return [path for method, path in fake.requests if method == "GET" and path.endswith(".safetensors")]


def test_a_refused_licence_downloads_no_weight_byte(hub) -> None:
    commercial = Client(Config.load(user_file=False), policy=LicensePolicy.commercial())
    plan = commercial.plan_pull("musicgen")
    assert plan.model == MODEL and not plan.allowed and plan.license.id == "CC-BY-NC-4.0" and not plan.files
    with pytest.raises(LicensePolicyError, match=r"CC-BY-NC-4\.0"):
        commercial.pull("musicgen")
    assert weights_fetched(hub) == []  # only the card (and nothing else) was read
    assert {path for _, path in hub.requests} - {"/api/agent-harnesses"} == {f"/{MODEL}/resolve/main/README.md"}


def test_an_allowed_model_is_downloaded_verified_and_runs_offline(hub, tiny, monkeypatch) -> None:
    client = Client(Config.load(user_file=False))
    seen = []
    result = client.pull("musicgen", on_plan=seen.append)
    plan = seen[0]
    assert plan.allowed and plan.commit == COMMIT and plan.license.id == "CC-BY-NC-4.0"
    names = {f.name for f in plan.files}
    assert "model.safetensors" in names and "config.json" in names and "README.md" in names
    assert plan.total_bytes == sum((tiny / n).stat().st_size for n in names)
    # The card was read first (to decide the licence): it is cached, the rest is still to download.
    assert [f.name for f in plan.files if f.cached] == ["README.md"]
    assert plan.download_bytes == plan.total_bytes - (tiny / "README.md").stat().st_size
    assert result.verified == len(names) and result.offline_ready
    assert Path(result.folder).name == COMMIT
    # Offline now: the default model runs from the cache, the hub out of reach.
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.close()
    g = Client(Config.load(user_file=False)).generate("calm piano", provider="musicgen", duration=0.05, seed=1)
    assert g.provenance.model == MODEL and g.provenance.model_revision == COMMIT


def test_a_file_that_does_not_match_the_hubs_hash_is_caught(hub) -> None:
    hub.corrupt.add("config.json")  # same size, another first byte: only a hash check sees it
    with pytest.raises(PullError, match=r"config\.json does not match the hub's hash"):
        Client(Config.load(user_file=False)).pull("musicgen")


def test_what_pull_cannot_fetch_says_why_before_asking_the_hub(hub, tmp_path) -> None:
    client = Client(Config.load(user_file=False))
    for spec, why in (
        ("stable-audio-3", "not in diffusers' layout: convert them first"),
        ("audiogen", "fetches its own weights"),
        ("stability", "runs in the cloud"),
        (f"musicgen:{tmp_path}", "a folder on this machine"),
    ):
        with pytest.raises(PullError, match=why):
            client.plan_pull(spec)
    with pytest.raises(Exception, match="name the provider"):
        client.plan_pull("auto")
    assert [path for _, path in hub.requests if path != "/api/agent-harnesses"] == []


def test_the_cli_shows_the_plan_and_pulls(hub, tmp_path) -> None:
    import huggingface_hub.constants as constants

    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_CACHE": constants.HF_HUB_CACHE,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "soundforge.cli", "pull", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    refused = run("musicgen", "--dry-run", "--commercial")
    assert refused.returncode == 4, refused.stderr
    assert "licence: CC-BY-NC-4.0" in refused.stdout and "refused by the licence policy" in refused.stderr
    dry = run("musicgen", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "model.safetensors" in dry.stdout and "to download of" in dry.stdout
    assert weights_fetched(hub) == []
    done = run("musicgen")
    assert done.returncode == 0, done.stderr
    assert "files match the hub's hashes; ready to run offline" in done.stdout
    assert weights_fetched(hub) == [f"/{MODEL}/resolve/{COMMIT}/model.safetensors"]


def test_a_long_hub_error_is_cut_at_a_word(hub) -> None:
    """The hub's error for a repository it does not have is long (status, request id, URL, advice): the message keeps
    whole words and says it was cut (it was cut mid-word at 200 characters)."""
    from huggingface_hub import snapshot_download

    from soundforge import ModelNotAvailableError

    with pytest.raises(Exception) as original:
        snapshot_download("nobody/nothing", allow_patterns=["*.json"])
    words = " ".join(str(original.value).split()).split(" ")
    assert len(" ".join(words)) > 300  # long enough to be cut
    with pytest.raises(ModelNotAvailableError) as info:  # named, so the engine may download: it asks the hub
        Client(Config.load(user_file=False)).generate("x", provider="musicgen:nobody/nothing", duration=0.05)
    said = str(info.value.message).split(f"{type(original.value).__name__}: ", 1)[1]
    assert said.endswith(" …")
    kept = said.removesuffix(" …").split(" ")
    assert kept == words[: len(kept)]  # whole words, in order: nothing cut mid-word
