"""The contract every backend keeps, run against each one that can run here (diffusers' PipelineTesterMixin is the
model): local engines on tiny random checkpoints, cloud adapters against their loopback fakes, the test double.

Every built-in provider gets every check (`CASES` is derived from the registry; `EXEMPT` names the few that are
tested elsewhere, with the reason):
the exact duration and rate asked for, a declared channel layout, identical audio for a repeated seed where the
model declares it, refusal of an unsupported field naming it, cancellation before work, progress for local
engines, style adapters applied and removed (or refused by name), and a licence record for its default model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from soundforge import CancelToken, GenerationCancelledError, UnsupportedFeatureError
from soundforge.backends import BUILTIN, PLANNED
from soundforge.client import Client
from soundforge.config import Config
from soundforge.licences.licensing import LicenseRegistry
from soundforge.testing import FunctionBackend

from ..fakes import KEY

#: Fields tried, in order, for the "refuses what it cannot do" check: the first one the model does not declare.
PROBE_FIELDS = {
    "melody": lambda: (np.zeros(8000, dtype=np.float32), 8000),
    "negative_prompt": lambda: "drums",
    "temperature": lambda: 0.9,
    "steps": lambda: 4,
    "lyrics": lambda: "la la",
    "top_k": lambda: 20,
}


@dataclass
class Case:
    client: Client
    spec: str
    duration: float
    params: dict[str, Any]


def _tone(request, context):
    context.progress("render", 1, 1)
    return np.sin(np.arange(int(request.duration * 8000)) * 0.1)


@contextmanager
def _case(kind: str, tmp_path_factory) -> Iterator[Case]:
    if kind == "synth":
        yield Case(Client(Config.load(user_file=False)), "synth", 1.3, {})
    elif kind == "function":
        fake = FunctionBackend(_tone, name="fake", sample_rate=8000, license="CC0-1.0")
        yield Case(Client(Config.load(user_file=False), backends={"fake": fake}), "fake", 0.7, {})
    elif kind == "musicgen":
        pytest.importorskip("transformers")
        from soundforge.testing.musicgen import build_musicgen

        folder = build_musicgen(tmp_path_factory.mktemp("contract-mg") / "tiny")
        yield Case(Client(Config.load(user_file=False)), f"musicgen:{folder}", 0.05, {})
    elif kind == "stable-audio":
        pytest.importorskip("diffusers")
        from soundforge.testing.stable_audio import build_stable_audio

        folder = build_stable_audio(tmp_path_factory.mktemp("contract-sao") / "tiny")
        yield Case(Client(Config.load(user_file=False)), f"stable-audio:{folder}", 0.5, {"steps": 2})
    elif kind == "stable-audio-3":
        pytest.importorskip("diffusers")
        from soundforge.testing.stable_audio_3 import build_stable_audio_3

        folder = build_stable_audio_3(tmp_path_factory.mktemp("contract-sa3") / "tiny")
        yield Case(Client(Config.load(user_file=False)), f"stable-audio-3:{folder}", 1.237, {"steps": 2})
    elif kind == "ace-step":
        pytest.importorskip("diffusers")
        from soundforge.testing.ace_step import build_ace_step

        folder = build_ace_step(tmp_path_factory.mktemp("contract-ace") / "tiny")
        yield Case(Client(Config.load(user_file=False)), f"ace-step:{folder}", 10.03, {"steps": 2})
    elif kind == "minimax-music-3":
        pytest.importorskip("diffusers")
        from soundforge.testing.minimax_music3 import build_minimax_music3

        folder = build_minimax_music3(tmp_path_factory.mktemp("contract-mm3") / "tiny")
        # It sings only given lyrics (or told to play): an instrumental, so every check needs no lyrics of its own.
        params = {"steps": 2, "instrumental": True}
        yield Case(Client(Config.load(user_file=False)), f"minimax-music-3:{folder}", 1.3, params)
    elif kind == "lyria-realtime":
        pytest.importorskip("google.genai")
        from ..fake_lyria_realtime import FakeLyriaRealtime

        live = FakeLyriaRealtime(KEY)
        trusted = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = str(live.trust_file)  # Google's client always connects with wss
        try:
            settings = {"base_url": live.url, "api_key": KEY}
            yield Case(Client(Config.load(user_file=False, providers={kind: settings})), kind, 1.2, {})
        finally:
            if trusted is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = trusted
            live.close()
    else:
        from .. import fakes

        server = {
            "stability": fakes.FakeStability,
            "elevenlabs": fakes.FakeElevenLabs,
            "replicate": fakes.FakeReplicate,
            "fal": fakes.FakeFal,
            "lyria": fakes.FakeLyria,
            "gemini": fakes.FakeGemini,
            "minimax": fakes.FakeMiniMax,
            "elevenlabs-sfx": fakes.FakeElevenLabs,
        }[kind]()
        downloads = tmp_path_factory.mktemp(f"contract-{kind}")
        settings: dict[str, Any] = {
            "base_url": server.url,
            "api_key": KEY,
            "download_dir": str(downloads),
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "allow_loopback_urls": True,
        }
        if kind in ("replicate", "fal"):
            settings |= {"poll_interval": 0.02, "poll_max_interval": 0.05}
        if kind == "lyria":
            settings |= {"project": "demo"}
        try:
            duration = {"elevenlabs": 3.0, "stability": 2.0, "lyria": 5.0, "gemini": 4.0}.get(kind, 2.0)
            params = {"instrumental": True} if kind == "minimax" else {}  # MiniMax sings only given lyrics
            yield Case(Client(Config.load(user_file=False, providers={kind: settings})), kind, duration, params)
        finally:
            server.close()


#: Built-in providers that do not run this suite here, each with where its contract is tested instead.
EXEMPT = {
    "audiogen": "audiocraft needs torchaudio, which has no build for the torch installed here: "
    "tests/engines/test_audiocraft_engine.py runs it in a subprocess with a stand-in",
    "magnet": "audiocraft needs torchaudio (see audiogen): tests/engines/test_magnet_engine.py",
    "demucs": "a separator of a given track, not a generator from a prompt: tests/backends/test_demucs.py compares "
    "it with demucs.api.Separator",
}
#: Every built-in provider that is not exempt, and the test double; derived from the registry, so a new provider
#: runs this suite (or must be named in EXEMPT with its reason) without anyone remembering a list.
CASES = [name for name in BUILTIN if name not in EXEMPT] + ["function"]


def test_every_builtin_provider_runs_the_contract_or_says_why_not() -> None:
    assert set(EXEMPT) <= set(BUILTIN), "an exemption names no provider"
    assert all(reason for reason in EXEMPT.values())
    missing = sorted(set(BUILTIN) - set(CASES) - set(EXEMPT))
    assert not missing, f"no contract case and no named exemption: {missing}"


@pytest.fixture(scope="module", params=CASES)
def case(request, tmp_path_factory) -> Iterator[Case]:
    with _case(request.param, tmp_path_factory) as made:
        yield made


def _caps(case: Case):
    backend_name, _, model = case.spec.partition(":")
    backend = case.client.backend(backend_name)
    return backend, backend.capabilities(model or case.client.router.model_for(backend))


def test_exact_duration_rate_and_layout(case: Case) -> None:
    _, caps = _caps(case)
    seed = {"seed": 3} if caps.supports("seed") else {}
    g = case.client.generate("contract check", provider=case.spec, duration=case.duration, **seed, **case.params)
    for track in g.tracks:
        assert track.audio.dtype == np.float32 and track.audio.ndim == 2 and track.audio.flags.c_contiguous
        assert track.sample_rate in caps.sample_rates and track.audio.shape[0] in caps.channels
        assert track.audio.shape[1] == round(case.duration * track.sample_rate), "the duration asked for, exactly"
        assert np.isfinite(track.audio).all()


def test_a_repeated_seed_repeats_the_audio_where_declared(case: Case) -> None:
    _, caps = _caps(case)
    if not caps.seed_deterministic:
        pytest.skip("the model does not declare seed determinism")
    first = case.client.generate("contract seed", provider=case.spec, duration=case.duration, seed=11, **case.params)
    again = case.client.generate("contract seed", provider=case.spec, duration=case.duration, seed=11, **case.params)
    assert first.provenance.seed == again.provenance.seed == 11
    assert np.array_equal(first.audio, again.audio)


def test_an_unsupported_field_is_refused_by_name(case: Case) -> None:
    _, caps = _caps(case)
    probe = next((f for f in PROBE_FIELDS if not caps.supports(f)), None)
    if probe is None:
        pytest.skip("the model supports every probe field")
    with pytest.raises(UnsupportedFeatureError) as info:
        case.client.generate("x", provider=case.spec, duration=case.duration, **{probe: PROBE_FIELDS[probe]()})
    assert info.value.field == probe and probe in str(info.value)


def test_a_cancelled_request_does_no_work(case: Case) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(GenerationCancelledError):
        case.client.generate("x", provider=case.spec, duration=case.duration, cancel=token, **case.params)


def test_local_engines_report_progress(case: Case) -> None:
    backend, _ = _caps(case)
    if not backend.local:
        pytest.skip("cloud calls report job progress only where the API has jobs")
    events = []
    case.client.generate("x", provider=case.spec, duration=case.duration, on_progress=events.append, **case.params)
    assert events and all(0 <= e.done <= e.total for e in events)


def test_adapters_change_the_audio_and_leave_no_trace_or_are_refused_by_name(case: Case, tmp_path) -> None:
    backend, caps = _caps(case)
    if not caps.supports("adapters"):
        with pytest.raises(UnsupportedFeatureError) as info:
            case.client.generate("x", provider=case.spec, duration=case.duration, adapters=[str(tmp_path)])
        assert info.value.field == "adapters"
        return
    from soundforge.testing.adapters import build_lora_for

    lora = str(build_lora_for(backend.name, case.spec.partition(":")[2], tmp_path / "lora"))

    def make(**fields: Any) -> Any:
        return case.client.generate("contract", provider=case.spec, duration=case.duration, seed=5, **fields)

    base, styled, after = make(**case.params), make(adapters=[lora], **case.params), make(**case.params)
    assert not np.array_equal(base.audio, styled.audio) and np.array_equal(base.audio, after.audio)
    assert styled.provenance.adapters[0]["source"] == lora and base.provenance.adapters is None
    assert any(c.role == "adapter" for c in styled.license.components)


@pytest.mark.parametrize("name", sorted({*BUILTIN, *PLANNED}))
def test_every_provider_has_a_licence_record_for_its_default_model(name: str) -> None:
    registry = LicenseRegistry.default()
    client = Client(Config.load(user_file=False))
    try:
        backend = client.backend(name)
    except Exception:  # a planned provider: its record is under its licence key
        planned = PLANNED[name]
        assert registry.record_for(planned.license_key, planned.default_model) is not None
        return
    model = client.router.model_for(backend)
    assert backend.license_for(model) is not None or registry.record_for(name, model) is not None, name
