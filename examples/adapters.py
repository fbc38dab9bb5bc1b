"""Style adapters and their licences: what a commercial product may use, decided before an adapter is loaded.

    pip install "soundforge[ace-step]"
    python examples/adapters.py

It runs in seconds on a CPU with a tiny random ACE-Step pipeline and tiny random LoRAs made here (no download);
with real weights, name the model and the adapters instead (`provider="ace-step"`,
`adapters=["owner/some-lora"]`): the rest is the same. docs/adapters.md explains each step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from soundforge import Adapter, LicensePolicy, LicensePolicyError
from soundforge.client import Client
from soundforge.config import Config
from soundforge.licences.licensing import LicenseRegistry
from soundforge.testing.ace_step import build_ace_step
from soundforge.testing.adapters import build_lora_for


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="soundforge-adapters-"))
    model = str(build_ace_step(root / "tiny-ace-step"))
    mit = str(build_lora_for("ace-step", model, root / "mit-lora", license="mit", seed=1))
    nc = str(build_lora_for("ace-step", model, root / "nc-lora", license="cc-by-nc-4.0", seed=2))
    silent = str(build_lora_for("ace-step", model, root / "no-licence-lora", license=None, seed=3))
    # The tiny model stands for the ACE-Step 1.5 release (MIT): a real checkpoint's card says so itself.
    registry = LicenseRegistry.default().declare(
        "ace-step", model, same_as="ACE-Step/Ace-Step1.5", reason="the example's stand-in"
    )
    commercial = Client(Config.load(user_file=False), policy=LicensePolicy.commercial(), registry=registry)
    spec = f"ace-step:{model}"

    song = commercial.generate("warm lo-fi keys", provider=spec, duration=10, steps=2, seed=1, adapters=[mit])
    print(f"with an MIT adapter: {song.license.summary()}")
    for adapter in song.provenance.adapters or []:
        print(f"  adapter {adapter['source']} x{adapter['scale']} ({adapter['license']}), sha256 {adapter['files']}")
    path = song.tracks[0].save(root / "song.wav")
    print(f"  saved {path} (its tags and sidecar name the adapter)")

    for refused in (nc, silent):
        try:
            commercial.generate("warm lo-fi keys", provider=spec, duration=10, steps=2, adapters=[refused])
        except LicensePolicyError as error:
            print(f"refused before loading {Path(refused).name}: {error.clause}")

    # You know the silent adapter's terms (its author's LICENSE file, say): declare them, and it passes.
    declared = Client(
        Config.load(user_file=False),
        policy=LicensePolicy.commercial(),
        registry=registry.declare_adapter(silent, "MIT", reason="the LICENSE file beside it"),
    )
    song = declared.generate(
        "warm lo-fi keys", provider=spec, duration=10, steps=2, seed=1, adapters=[Adapter(source=silent, scale=0.6)]
    )
    print(f"declared MIT, scale 0.6: {song.license.summary()}")


if __name__ == "__main__":
    main()
