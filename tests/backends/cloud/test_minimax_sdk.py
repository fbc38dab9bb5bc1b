"""MiniMax's own SDK (mmx-cli 1.0.19 on npm, `dist/sdk.mjs`, the code behind MiniMax's `mmx` CLI) against the fake
MiniMax on 127.0.0.1, and its request validator (`MusicSDK.validateParams`) run on the bodies soundforge sent.

So the fake is held to the vendor's client, not only to soundforge's adapter: what the SDK sends the fake accepts,
and what soundforge sends the SDK would have sent. `scripts/test` fetches the package with npm; without node or the
package these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.request import Request, urlopen

import numpy as np
import pytest

from ...fakes import KEY
from ...helpers import cloud

SDK = Path(sys.prefix) / "share" / "mmx-cli-1.0.19" / "package" / "dist" / "sdk.mjs"
LYRICS = "[Verse]\nstreetlights hum along\n[Chorus]\nwe run till dawn"

#: Runs one call of the SDK: `generate` against the fake, or `validate` (the SDK's own check of a request body).
DRIVER = """
import { MiniMaxSDK } from %s;
const [action, baseUrl, apiKey, request] = process.argv.slice(2);
const sdk = new MiniMaxSDK({ apiKey, baseUrl });
try {
  if (action === "validate") {
    console.log(JSON.stringify({ ok: true, body: sdk.music.validateParams(JSON.parse(request)) }));
  } else {
    const answer = await sdk.music.generate(JSON.parse(request));
    console.log(JSON.stringify({ ok: true, status: answer.data.status, audio: answer.data.audio.length }));
  }
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: String((error && error.message) || error) }));
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    if shutil.which("node") is None or not SDK.is_file():
        pytest.skip(f"needs node and MiniMax's SDK at {SDK} (scripts/test fetches it: npm pack mmx-cli@1.0.19)")
    script = tmp_path_factory.mktemp("mmx") / "drive.mjs"
    script.write_text(DRIVER % json.dumps(SDK.as_uri()), "utf-8")
    return script


def sdk(driver: Path, action: str, base_url: str, request: dict) -> dict:
    done = subprocess.run(
        ["node", str(driver), action, base_url, KEY, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reference_base64(seconds: float) -> str:
    import base64
    import io

    import soundfile as sf

    t = np.arange(round(seconds * 16000)) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), 16000, format="FLAC")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_the_sdk_makes_songs_and_covers_on_the_fake(driver, minimax) -> None:
    song = sdk(driver, "generate", minimax.url, {"model": "music-3.0", "prompt": "city pop", "lyrics": LYRICS})
    assert song == {"ok": True, "status": 2, "audio": song["audio"]} and song["audio"] > 1000
    assert minimax.bodies[-1]["audio_setting"] == {"format": "mp3", "sample_rate": 44100, "bitrate": 256000}
    cover = {"model": "music-cover", "prompt": "indie folk, warm male vocal", "audio_base64": _reference_base64(7)}
    assert sdk(driver, "generate", minimax.url, cover)["ok"]
    # What the SDK refuses before sending, the fake refuses too (2013): the two agree on a cover's rules.
    short_prompt = {**cover, "prompt": "folk"}
    refused = sdk(driver, "validate", minimax.url, short_prompt)
    assert not refused["ok"] and "10 and 300" in refused["error"]
    posted = Request(
        f"{minimax.url}/v1/music_generation",
        data=json.dumps(short_prompt).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urlopen(posted, timeout=30) as reply:  # the fake on 127.0.0.1
        answer = json.loads(reply.read())
    assert answer["base_resp"]["status_code"] == 2013 and "10 and 300" in answer["base_resp"]["status_msg"]


def test_what_soundforge_sends_passes_the_sdks_own_validation(driver, minimax, downloads, tmp_path) -> None:
    import soundfile as sf

    client = cloud("minimax", minimax, downloads)
    reference = tmp_path / "reference.wav"
    sf.write(reference, 0.2 * np.sin(np.arange(8 * 22050) * 0.05), 22050)
    client.generate("city pop, female vocals", provider="minimax:music-3.0", duration=5, lyrics=LYRICS)
    client.generate("ambient piano", provider="minimax:music-2.6", duration=5, instrumental=True)
    client.generate("x", provider="minimax", duration=5, extra={"lyrics_optimizer": True, "output_format": "url"})
    client.generate("indie folk, acoustic guitar", provider="minimax:music-cover", duration=5, audio_prompt=reference)
    client.generate(
        "jazz, piano, slow and smoky",
        provider="minimax:music-cover",
        duration=5,
        audio_prompt=reference,
        lyrics=LYRICS,
        seed=7,
    )
    sent = [body for body in minimax.bodies if "prompt" in body]  # the preprocessing body is the CLI's own
    assert len(sent) == 5
    for body in sent:
        checked = sdk(driver, "validate", minimax.url, body)
        assert checked["ok"], (body.get("model"), checked)
