from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Hugging Face libraries read these at import: never reach a hub from tests, keep caches in a temp dir.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="soundforge-hf-")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# numba (librosa's beat tracker) caches compiled functions beside their source; two test workers writing that cache
# at once can leave an entry another loads and crashes on (a segfault in a gufunc, seen in CI): one cache per process,
# a copy of the one scripts/test compiles before the tests (loading it takes seconds, compiling 45 s).
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="soundforge-numba-")
if (Path(sys.prefix) / "numba-cache").is_dir():
    shutil.copytree(Path(sys.prefix) / "numba-cache", os.environ["NUMBA_CACHE_DIR"], dirs_exist_ok=True)

from soundforge import backends
from soundforge.client import Client
from soundforge.config import Config
from soundforge.testing import BLOCK_REMOTE_ENV

from .helpers import FlakyBackend, NonCommercialBackend

#: Keys the vendors' SDKs (and soundforge's cloud backends) read: a developer's real keys never reach a test.
VENDOR_KEYS = frozenset(
    {
        "STABILITY_API_KEY",
        "ELEVENLABS_API_KEY",
        "XI_API_KEY",
        "REPLICATE_API_TOKEN",
        "FAL_KEY",
        "FAL_KEY_ID",
        "FAL_KEY_SECRET",
        "GOOGLE_ACCESS_TOKEN",
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "MINIMAX_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
    }
)

# tests/engines/ run in their own process with test-only stand-ins on the path (tests/test_audiocraft.py);
# tests/stand_ins/ hold those stand-ins. Neither is collected by the main run.
collect_ignore = ["stand_ins"] + ([] if os.environ.get("SOUNDFORGE_ENGINE_TESTS") else ["engines"])


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No user config, no project file, no SOUNDFORGE_* variables leak into a test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))  # AudioSeal's weights: never the user's
    monkeypatch.delenv("AUDIOSEAL_CACHE_DIR", raising=False)
    for name in list(os.environ):
        if name.startswith("SOUNDFORGE_") or name in VENDOR_KEYS:
            monkeypatch.delenv(name)
    # The kill switch: any request to a host that is not loopback fails before it is sent (engine processes too).
    monkeypatch.setenv(BLOCK_REMOTE_ENV, "1")
    monkeypatch.chdir(home)


@pytest.fixture
def test_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the flaky and non-commercial test backends as built-ins."""
    monkeypatch.setitem(backends.BUILTIN, "flaky", "tests.helpers:FlakyBackend")
    monkeypatch.setitem(backends.BUILTIN, "flaky2", "tests.helpers:OtherFlakyBackend")
    monkeypatch.setitem(backends.BUILTIN, "nc", "tests.helpers:NonCommercialBackend")
    FlakyBackend.calls = 0
    NonCommercialBackend.calls = 0


@pytest.fixture
def client() -> Client:
    return Client(Config.load(user_file=False))


def _serve(kind):
    from . import fakes

    server = getattr(fakes, kind)()
    yield server
    server.close()


@pytest.fixture
def stability():
    yield from _serve("FakeStability")


@pytest.fixture
def eleven():
    yield from _serve("FakeElevenLabs")


@pytest.fixture
def replicate():
    yield from _serve("FakeReplicate")


@pytest.fixture
def fal():
    yield from _serve("FakeFal")


@pytest.fixture
def lyria_rt(monkeypatch):
    """The fake Lyria RealTime over TLS; its certificate is the one clients trust (Google's client always uses wss)."""
    pytest.importorskip("google.genai")
    from .fake_lyria_realtime import FakeLyriaRealtime
    from .fakes import KEY

    server = FakeLyriaRealtime(KEY)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.trust_file))
    yield server
    server.close()


@pytest.fixture
def gemini():
    yield from _serve("FakeGemini")


@pytest.fixture
def minimax():
    yield from _serve("FakeMiniMax")


@pytest.fixture
def downloads(tmp_path):
    """An empty folder for the cloud layer's temp files: tests check nothing is left in it."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray cluster on this machine for the whole session (a second `ray.init` in one process after a
    shutdown is unreliable), started by the first test that needs it.

    Ray's processes inherit the environment at `ray.init`: it is the isolated one here (no vendor keys, no
    SOUNDFORGE_* variables, the kill switch for remote hosts on), whatever the test session started with.
    """
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("ray-home")
        patch.setenv("HOME", str(home))
        patch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        for name in list(os.environ):
            if name.startswith("SOUNDFORGE_") or name in VENDOR_KEYS:
                patch.delenv(name)
        patch.setenv(BLOCK_REMOTE_ENV, "1")
        # Ray starts its workers at niceness 15, as background work: beside the other tests (scripts/test runs them
        # at once) the replicas starved, and the Ray tests took several times longer. `--ray local` does the same.
        patch.setenv("RAY_worker_niceness", "0")
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024 * 1024)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_serve_url(ray_cluster):
    """Ray Serve on the session's cluster, its HTTP proxy on a free loopback port; its base URL."""
    serve = pytest.importorskip("ray.serve")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(params=["process", "ray"])
def server(request: pytest.FixtureRequest) -> str:
    """Where an HTTP test's server runs: "process" (soundforge serve, one process and its engine) or the base URL
    of Ray Serve's proxy (soundforge serve --ray on a local cluster)."""
    return "process" if request.param == "process" else request.getfixturevalue("ray_serve_url")


def _uses_ray(item: pytest.Item) -> bool:
    """Whether a test needs the session's Ray cluster (directly, or as the Ray value of the `server` fixture)."""
    if {"ray_cluster", "ray_serve_url"} & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("server") == "ray"


#: Test files that start or use a Ray cluster in every test (their own `ray start` included), from tests/.
_RAY_FILES = frozenset({"serve/test_ray.py", "bulk/test_batch_ray.py"})
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that need Ray are marked `ray` and run last, together, in order: first those marked
    `own_ray_cluster`, which start a cluster of their own in a child process (`--ray local`), then those that share
    the session's cluster, which starts at the first of them (two local clusters at once would share ports).
    scripts/test runs them in one process beside the others (on two workers, pytest-xdist): they mostly wait on
    Ray, and must not run on two workers, which would start two clusters."""
    own = [item for item in items if item.get_closest_marker("own_ray_cluster") is not None]
    own_ids = {id(item) for item in own}
    shared = [
        item
        for item in items
        if id(item) not in own_ids and (_uses_ray(item) or item.path.relative_to(_TESTS).as_posix() in _RAY_FILES)
    ]
    for item in [*own, *shared]:
        item.add_marker(pytest.mark.ray)
    ray = {id(item) for item in [*own, *shared]}
    items[:] = [item for item in items if id(item) not in ray] + own + shared
