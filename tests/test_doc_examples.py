"""Every Python block in README.md and docs/ is run here (or listed with the reason it cannot run offline), so a
documented example cannot drift from the code unseen. A new block fails this test until it is classified."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

#: (file, block index) -> how it runs: "run", "raises <ErrorName>", or "skip: <why it needs more than this machine>".
PLAN = {
    ("README.md", 0): "run",
    ("README.md", 1): "raises LicensePolicyError",
    ("docs/adapters.md", 0): "skip: needs the ACE-Step weights and a hub adapter (tests/backends/test_adapters.py and "
    "examples/adapters.py run the same on tiny models)",
    ("docs/mcp.md", 0): "skip: needs a running `soundforge mcp --http` and its token (tests/agents/test_mcp.py drives "
    "the same client code against one)",
    (
        "docs/ai-act.md",
        0,
    ): "skip: needs a C2PA signing certificate and key (tests/output/test_c2pa.py signs with a test CA)",
    ("docs/batch.md", 0): "run",
    (
        "docs/batch.md",
        1,
    ): "skip: writes to S3 through a Ray cluster (tests/bulk/test_batch_ray.py runs a local cluster)",
    ("docs/codec.md", 0): "skip: needs the EnCodec weights (tests/test_codec.py uses a tiny random codec)",
    ("docs/getting-started.md", 0): "run",
    ("docs/getting-started.md", 1): "run",
    ("docs/getting-started.md", 2): "run",
    ("docs/providers/audiocraft.md", 0): "skip: needs the AudioGen and MusicGen weights",
    (
        "docs/providers/musicgen.md",
        0,
    ): "skip: needs the MusicGen weights (tests/backends/test_musicgen.py: tiny models)",
    (
        "docs/providers/ace-step.md",
        0,
    ): "skip: needs the ACE-Step 1.5 weights (tests/backends/test_ace_step.py: tiny models)",
    (
        "docs/providers/ace-step.md",
        1,
    ): "skip: needs the ACE-Step 1.5 weights and card (tests/backends/test_ace_step.py)",
    (
        "docs/providers/minimax-music-3.md",
        0,
    ): "skip: needs the MiniMax Music 3 weights, 24 GB (tests/backends/test_minimax_music_3.py: tiny pipelines)",
    ("docs/songs.md", 0): "run",
    ("docs/observe.md", 0): "run",
    ("docs/quality.md", 0): "run",
    ("docs/loops.md", 0): "run",
    ("docs/loops.md", 1): "run",
    ("docs/serve.md", 0): "skip: needs a running `soundforge serve` and its token (tests/serve/test_elevenlabs_api.py "
    "drives the same SDK calls against one)",
    ("docs/separation.md", 0): "skip: needs the Demucs weights (tests/backends/test_demucs.py: a tiny HTDemucs bag)",
    ("docs/watermark.md", 0): "skip: needs AudioSeal's weights (tests/run/test_watermark.py: random checkpoints)",
    ("docs/streaming.md", 0): "run",
    ("docs/prices.md", 0): "skip: calls Stability's paid API (tests/ops/test_cost.py runs it against the fake)",
    ("docs/providers/stable-audio-3.md", 0): "skip: needs converted Stable Audio 3 weights (test_stable_audio_3.py)",
    ("docs/providers/stable-audio-3.md", 1): "run",
    (
        "docs/providers/stable-audio.md",
        0,
    ): "skip: needs the Stable Audio Open weights (tests/backends/test_stable_audio.py)",
}
#: Files a document's examples expect in the working folder.
SETUP = {"docs/batch.md": {"cues.jsonl": '{"name": "menu", "prompt": "calm menu music", "duration": 2, "seed": 1}\n'}}


def _blocks() -> dict[tuple[str, int], str]:
    found = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        name = str(path.relative_to(ROOT))
        for index, match in enumerate(BLOCK.finditer(path.read_text("utf-8"))):
            found[(name, index)] = match.group(1)
    return found


def test_every_python_block_is_classified() -> None:
    assert set(_blocks()) == set(PLAN), "classify new or removed doc blocks in PLAN"


@pytest.mark.parametrize("document", sorted({name for name, _ in PLAN}))
def test_the_documented_examples_run(document: str, tmp_path) -> None:
    blocks = {index: code for (name, index), code in _blocks().items() if name == document}
    runnable = [(i, code) for i, code in sorted(blocks.items()) if not PLAN[(document, i)].startswith("skip")]
    if not runnable:
        pytest.skip("; ".join(PLAN[(document, i)] for i in blocks))
    for file, text in SETUP.get(document, {}).items():
        (tmp_path / file).write_text(text)
    # The blocks of one document run in order in one interpreter: later ones use names the earlier ones made.
    script = []
    for index, code in runnable:
        plan = PLAN[(document, index)]
        if plan.startswith("raises "):
            error = plan.removeprefix("raises ")
            script.append(
                "import soundforge as _sf\ntry:\n"
                + "".join(f"    {line}\n" for line in code.splitlines())
                + f"except _sf.{error}:\n    print('raised {error}')\nelse:\n    raise SystemExit('no {error}')\n"
            )
        else:
            script.append(code)
    out = subprocess.run(
        [sys.executable, "-c", "\n".join(script)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
