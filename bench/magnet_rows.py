"""MAGNeT against MusicGen on this CPU (#27): full-size small architectures with random weights, through soundforge.

    PYTHONPATH=tests/stand_ins python bench/magnet_rows.py   # where torchaudio has no build for the installed torch

Both run audiocraft's own code on the same full-size 32 kHz EnCodec shapes and a lookup-table text conditioner
(T5's weights are not needed for timing): MAGNeT-small (300M, 10 s window, decoding steps 20/10/10/10) against
MusicGen-small through audiocraft (300M, one token per step), 10 s each, seconds per second of audio.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def _blank_spacy() -> None:
    """audiocraft's whitespace tokenizer loads spaCy's `en_core_web_sm`, which only GitHub serves: a blank English
    pipeline (without lemmas) splits the same words where it is missing."""
    import spacy

    try:
        spacy.load("en_core_web_sm")
    except OSError:
        from audiocraft.modules import conditioners

        blank = spacy.blank
        spacy.load = lambda name, *args, **kwargs: blank("en")
        init = conditioners.WhiteSpaceTokenizer.__init__

        def without_lemmas(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            init(self, *args, **kwargs)
            self.lemma = False

        conditioners.WhiteSpaceTokenizer.__init__ = without_lemmas  # type: ignore[method-assign]


def magnet_rows(seconds: float = 10.0) -> list[tuple[str, str, str]]:
    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.audiocraft import build_audiocraft

    _blank_spacy()
    root = Path(tempfile.mkdtemp(prefix="soundforge-bench-"))
    magnet = build_audiocraft(root / "magnet-small", "magnet", segment_duration=10, full_size=True)
    musicgen = build_audiocraft(root / "musicgen-small", "musicgen", segment_duration=30, full_size=True)
    client = Client(Config.load(user_file=False, providers={"musicgen": {"engine": "audiocraft", "device": "cpu"}}))
    prompt = "upbeat synthwave with drums and bass"
    times = {}
    for name, spec in (("magnet", f"magnet:{magnet}"), ("musicgen", f"musicgen:{musicgen}")):
        client.generate(prompt, provider=spec, duration=0.5, seed=0, **_quick(name))  # load once, warm
        start = time.perf_counter()
        client.generate(prompt, provider=spec, duration=seconds, seed=7)
        times[name] = time.perf_counter() - start
    return [
        (
            f"magnet-small arch {seconds:g} s (20/10/10/10 passes), seconds per second of audio",
            f"{times['magnet'] / seconds:.2f}",
            f"{times['magnet']:.1f} s",
        ),
        (
            f"musicgen-small arch {seconds:g} s through audiocraft, seconds per second of audio",
            f"{times['musicgen'] / seconds:.2f}",
            f"{times['musicgen']:.1f} s",
        ),
        ("magnet / musicgen, same audio length", f"{times['magnet'] / times['musicgen']:.2f}", "one run each"),
    ]


def _quick(name: str) -> dict:
    return {"extra": {"decoding_steps": [1, 1, 1, 1]}} if name == "magnet" else {}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    for row in magnet_rows():
        print("  ".join(row))
