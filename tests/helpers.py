"""Backends used by the tests to exercise routing: real Backend subclasses, registered per test."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from soundforge.backends.base import Backend, RawGeneration, RawTrack, RunContext
from soundforge.capabilities import Capabilities, ModelInfo
from soundforge.client import Client
from soundforge.config import Config
from soundforge.errors import ProviderError
from soundforge.licences.licensing import License, LicenseComponent, LicenseRegistry
from soundforge.request import GenerationRequest

CAPS = Capabilities(max_duration=30, sample_rates=(16000,), channels=(1,), fields=frozenset({"seed", "melody"}))


class _Counting(Backend):
    calls = 0
    default_model = "tiny"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id="tiny", capabilities=CAPS)]

    def license_for(self, model: str) -> License:
        """Plug-in backends may supply their own licence instead of a registry record."""
        key = "CC-BY-NC-4.0" if self.name == "nc" else "MIT"
        terms = LicenseRegistry.default().licenses[key]
        return License.effective([LicenseComponent(role="weights", name=f"{self.name} weights", license=terms)])

    def _tone(self, request: GenerationRequest) -> RawGeneration:
        n = int(request.duration * 16000)
        audio = np.sin(np.arange(n) * 2 * np.pi * 440 / 16000).astype(np.float32)[None, :] * 0.5
        return RawGeneration(tracks=[RawTrack(audio=audio, sample_rate=16000, seed=request.seed)])


class FlakyBackend(_Counting):
    """Always fails like a provider returning 503."""

    name = "flaky"

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        type(self).calls += 1
        raise ProviderError("service unavailable", provider=self.name, status=503, request_id="req-1")


class NonCommercialBackend(_Counting):
    """Works, under a non-commercial licence (its own `license_for` hook, as a plug-in would have)."""

    name = "nc"

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        type(self).calls += 1
        context.progress("decode", 1, 1)
        return self._tone(request)


class PeekingStreamer(_Counting):
    """Streams a tone in two chunks; between them it records what `--stream-to`'s growing file holds, then (for
    the prompt "fail") fails like a dropped connection."""

    name = "peek"
    seen: ClassVar[list[tuple[str, int]]] = []

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id="tiny", capabilities=CAPS.model_copy(update={"streaming": True}))]

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        return self._tone(request)

    def stream(self, request: GenerationRequest, model: str, context: RunContext):  # type: ignore[no-untyped-def]
        import soundfile

        from soundforge.backends.base import AudioChunk, ChunkAssembler

        audio = self._tone(request).tracks[0].audio
        half = audio.shape[1] // 2
        assembler = ChunkAssembler()
        yield assembler.add(AudioChunk(audio[:, :half], 0, 16000))
        for growing in Path.cwd().glob("*.partial.wav"):  # the CLI wrote the first chunk before asking for more
            type(self).seen.append((growing.name, soundfile.info(str(growing)).frames))
        if request.prompt == "fail":
            raise ProviderError("connection dropped", provider=self.name, status=502)
        yield assembler.add(AudioChunk(audio[:, half:], half, 16000))
        return RawGeneration(tracks=[RawTrack(assembler.track(0), 16000, seed=request.seed)])


class OtherFlakyBackend(FlakyBackend):
    """A second failing provider, to exhaust a fallback chain."""

    name = "flaky2"


def cloud(name: str, server, downloads, **extra) -> Client:
    """A client whose `name` provider talks to a fake server, with fast retries and polls for tests."""
    from .fakes import KEY

    settings = {
        "base_url": server.url,
        "api_key": KEY,
        "download_dir": str(downloads),
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "poll_interval": 0.02,
        "poll_max_interval": 0.05,
        "allow_loopback_urls": True,
        **extra,
    }
    return Client(Config.load(user_file=False, providers={name: settings}))


#: For the HTTP tests of what the ingress decides alone (admission, refusals, limits, tokens, encodes, the page): the
#: ingress is the same app under `soundforge serve` and `--ray`, so they take the `server` fixture's process value
#: only; the Ray values of the tests that reach the engines (jobs, streams, cancels, a torch model, restarts) cover
#: the Ray path.
ingress_only = pytest.mark.parametrize("server", ["process"], indirect=True)


def hears_ctrl_c() -> None:
    """`preexec_fn` for a child a test sends SIGINT (Ctrl+C): SIGINT at its default, whatever this process inherited.
    A shell that starts a command in the background without job control (`cmd &` in a script) starts it with
    SIGINT ignored, every child inherits that, and a Python that starts with it ignored never raises
    KeyboardInterrupt: the command would run on as if no Ctrl+C had come."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
