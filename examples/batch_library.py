"""Generate a small game-music library from a manifest, resumably, with a licence report.

    python examples/batch_library.py            # on this machine
    python examples/batch_library.py --ray      # the same manifest on a local Ray cluster (soundforge[ray])

Runs offline with the built-in synthesizer; point rows at `musicgen`, `stable-audio` or a cloud provider to use
those instead (the licence policy below then decides which may run).
"""

import json
import sys
import tempfile
from pathlib import Path

import soundforge
from soundforge import Client, LicensePolicy

rows = [
    {"name": "menu-theme", "prompt": "calm piano, 70 BPM, in D major", "duration": 8, "seed": 1},
    {"name": "battle", "prompt": "driving synthwave, 140 BPM, in E minor", "duration": 8, "seed": 2},
    {
        "name": "victory",
        "prompt": "bright house, 124 BPM, in C major",
        "duration": 4,
        "seed": 3,
        "output_format": "flac",
    },
]
work = Path(tempfile.mkdtemp(prefix="soundforge-library-"))
manifest = work / "cues.jsonl"
manifest.write_text("\n".join(json.dumps(row) for row in rows) + "\n")

# A commercial product: refuse any model whose outputs may not be sold, before anything is generated.
client = Client(policy=LicensePolicy.commercial())
report = soundforge.batch(
    manifest, work / "out", client=client, provider="synth", concurrency=3, ray="local" if "--ray" in sys.argv else None
)
print(f"generated {sorted(report.done)} in {report.seconds:.1f} s into {work / 'out'}")
for licence, entry in report.licenses.items():
    print(f"{licence}: {len(entry['rows'])} file(s), commercial use {entry['commercial_use']}")
# Running it again with resume=True skips every finished row: nothing is generated (or paid for) twice.
again = soundforge.batch(manifest, work / "out", client=client, provider="synth", resume=True)
print(f"resumed: {len(again.skipped)} already done, {len(again.done)} generated")
client.close()
