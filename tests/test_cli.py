import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

EXE = str(Path(sys.executable).with_name("soundforge"))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDFORGE_")}
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_generate_info_verify(tmp_path: Path) -> None:
    out = run("generate", "lofi hip hop 85 BPM in A minor", "-d", "3", "--seed", "2", "-o", "t.wav", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "CC0-1.0" in out.stdout and (tmp_path / "t.wav").exists() and (tmp_path / "t.wav.json").exists()
    info = run("info", "t.wav", "--json", cwd=tmp_path)
    assert json.loads(info.stdout)["tags"]["LICENSE"] == "CC0-1.0"
    assert run("verify", "t.wav", cwd=tmp_path).returncode == 0
    # Change the audio but keep the tags: verify must notice.
    data = bytearray((tmp_path / "t.wav").read_bytes())
    idx = data.index(b"data") + 8 + 20000
    data[idx:idx + 4] = b"\x10\x20\x30\x40"
    (tmp_path / "t.wav").write_bytes(bytes(data))
    changed = run("verify", "t.wav", cwd=tmp_path)
    assert changed.returncode == 5 and "MODIFIED" in changed.stderr


def test_exit_codes_and_messages(tmp_path: Path) -> None:
    bad = run("generate", "x", "-d", "-1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    missing = run("generate", "x", "-p", "udio", cwd=tmp_path)
    assert missing.returncode == 3 and "no official public API" in missing.stderr
    (tmp_path / "soundforge.toml").write_text('[policy]\ndeny = ["synth"]\n')
    refused = run("generate", "x", "-p", "synth", cwd=tmp_path)
    assert refused.returncode == 4 and "deny" in refused.stderr
    assert not list(tmp_path.glob("*.wav"))


def test_no_overwrite_and_params(tmp_path: Path) -> None:
    assert run("generate", "x", "-d", "1", "-q", cwd=tmp_path).returncode == 0
    again = run("generate", "x", "-d", "1", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    ok = run("generate", "x", "-d", "1", "--param", "channels=1", "--param", "sample_rate=22050",
             "-n", "2", "-o", "v.flac", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    data, rate = sf.read(tmp_path / "v-2.flac", always_2d=True)
    assert rate == 22050 and data.shape[1] == 1 and np.max(np.abs(data)) > 0.1


def test_providers_and_version(tmp_path: Path) -> None:
    table = run("providers", "--json", cwd=tmp_path)
    rows = {r["name"]: r for r in json.loads(table.stdout)}
    assert rows["synth"]["available"] and not rows["musicgen"]["available"]
    commercial = json.loads(run("providers", "--commercial", "--json", cwd=tmp_path).stdout)
    verdicts = {r["name"]: r["policy_allows"] for r in commercial}
    assert verdicts["synth"] and not verdicts["musicgen"] and not verdicts["stable-audio"]
    assert run("--version", cwd=tmp_path).stdout.strip().endswith("0.1.0")
    assert "generate" in run("--help", cwd=tmp_path).stdout
