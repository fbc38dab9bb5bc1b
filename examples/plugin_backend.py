"""A plug-in backend written by following src/soundforge/backends/new_backend.md, step by step.

`ClickTrackBackend` is a metronome: it renders a click at the prompt's tempo ("120 BPM"). It is small on purpose;
every step a real engine needs is here: declared models and capabilities, an `extra` key checked by the base,
progress and cancellation between steps, the exact duration asked for, its own licence, and registration (in
code here; a package would use the `soundforge.backends` entry point).

Run it: `python examples/plugin_backend.py` writes click.wav with its licence and provenance.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from soundforge import Client
from soundforge.backends import Backend, RawGeneration, RawTrack, RunContext, checked_extra, default_seed, fit_length
from soundforge.capabilities import Capabilities, ModelInfo
from soundforge.config import Config
from soundforge.licences.licensing import License, LicenseComponent, LicenseRegistry
from soundforge.request import GenerationRequest

RATE = 22050
EXTRA_KEYS: dict[str, Any] = {"accent_every": int}


class ClickTrackBackend(Backend):
    """A metronome: a click on every beat of the prompt's tempo, the first of each bar accented."""

    name = "click"
    description = "metronome click track (example plug-in)"
    default_model = "click-v1"
    local = True
    cpu_bound = True  # numpy work holding the GIL: async callers run it on one thread per core
    settings_keys = frozenset()  # no [providers.click] settings: any key there is a typo, and an error

    def models(self) -> list[ModelInfo]:
        caps = Capabilities(
            min_duration=0.5,
            max_duration=600.0,
            sample_rates=(RATE,),
            channels=(1,),
            fields=frozenset({"seed", "extra"}),
            seed_deterministic=True,
        )
        return [ModelInfo(id=self.default_model, description="click at the prompt's BPM", capabilities=caps)]

    def license_for(self, model: str) -> License | None:
        # Its own output, no weights: CC0, as the built-in synth. A model with weights ships a registry record.
        terms = LicenseRegistry.default().licenses["CC0-1.0"]
        return License.effective([LicenseComponent(role="engine", name="click track", license=terms)])

    def generate(self, request: GenerationRequest, model: str, context: RunContext) -> RawGeneration:
        options = checked_extra(request, EXTRA_KEYS, provider=self.name)
        accent_every = options.get("accent_every", 4)
        match = re.search(r"(\d{2,3})\s*bpm", request.prompt, re.IGNORECASE)
        bpm = int(match.group(1)) if match else 120
        seed = default_seed(request)
        rng = np.random.default_rng(seed)
        samples = round(request.duration * RATE)
        beat = 60.0 / bpm
        beats = int(request.duration / beat) + 1
        audio = np.zeros(samples + RATE, dtype=np.float32)
        click = np.sin(2 * np.pi * 1000 * np.arange(int(0.02 * RATE)) / RATE) * np.exp(
            -np.arange(int(0.02 * RATE)) / 80
        )
        for index in range(beats):
            context.progress("click", index, beats)  # reports progress, raises if the caller cancelled
            start = int(index * beat * RATE)
            gain = 0.9 if index % accent_every == 0 else 0.5
            audio[start : start + click.size] += gain * click * (0.97 + 0.03 * rng.random())
        context.progress("click", beats, beats)
        return RawGeneration(
            tracks=[
                RawTrack(
                    audio=fit_length(audio[np.newaxis, :], samples),
                    sample_rate=RATE,
                    seed=seed,
                    parameters={"bpm": bpm, "accent_every": accent_every},
                )
            ],
            engine_versions={"numpy": np.__version__},
        )


def main() -> None:
    client = Client(Config.load(user_file=False), backends={"click": ClickTrackBackend})
    generation = client.generate("click at 96 BPM", provider="click", duration=4, seed=1, extra={"accent_every": 3})
    path = generation.save("click.wav", overwrite=True)[0]
    print(
        f"{path}: {generation.duration:.1f} s at {generation.provenance.parameters['bpm']} BPM, "
        f"licence {generation.license.id}"
    )


if __name__ == "__main__":
    main()
