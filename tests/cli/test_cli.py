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
    data[idx : idx + 4] = b"\x10\x20\x30\x40"
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
    ok = run(
        "generate",
        "x",
        "-d",
        "1",
        "--param",
        "channels=1",
        "--param",
        "sample_rate=22050",
        "-n",
        "2",
        "-o",
        "v.flac",
        cwd=tmp_path,
    )
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


def test_every_output_problem_is_found_before_generating(tmp_path: Path) -> None:
    import time

    # A 600 s render takes seconds; each of these must fail at once, before any of it.
    for args, expected in [
        (("-o", "long.xyz"), "format"),
        (("--format", "flac", "-o", "x.wav"), "ends in .wav"),
        (("-o", "not-a-folder/x.wav"), "is a file"),
        (("--loudness", "5"), "loudness"),
        (("--loudness", "-80"), "loudness"),
    ]:
        (tmp_path / "not-a-folder").write_text("")
        started = time.monotonic()
        out = run("generate", "calm piano", "-d", "600", *args, cwd=tmp_path)
        assert out.returncode == 2 and expected in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert time.monotonic() - started < 60, args
    (tmp_path / "taken.wav").write_bytes(b"mine")
    taken = run("generate", "calm piano", "-d", "600", "-o", "taken.wav", cwd=tmp_path)
    assert taken.returncode == 2 and "already exists" in taken.stderr
    assert (tmp_path / "taken.wav").read_bytes() == b"mine"
    (tmp_path / "v-2.flac").write_bytes(b"mine")
    several = run("generate", "calm", "-d", "1", "-n", "2", "-o", "v.flac", cwd=tmp_path)
    assert several.returncode == 2 and "v-2.flac already exists" in several.stderr
    assert not (tmp_path / "v-1.flac").exists()
    assert not list(tmp_path.glob("*.wav.json"))


def test_a_prompt_that_is_not_text_exits_2_without_a_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [EXE.encode(), b"generate", b"calm \xff piano", b"-d", b"1"], capture_output=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 2 and b"not valid Unicode" in out.stderr and b"Traceback" not in out.stderr


def test_a_substitution_is_reported_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "soundforge.toml").write_text(
        'fallbacks = ["synth"]\n[aliases]\nhq = "musicgen:facebook/musicgen-large"\n'
    )
    out = run("generate", "calm", "-p", "hq", "-d", "1", "-o", "s.wav", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "note: musicgen:facebook/musicgen-large was asked for; the fallback synth" in out.stderr


def test_auto_explains_a_bad_request_in_one_short_line(tmp_path: Path) -> None:
    out = run("generate", "x", "-d", "601", cwd=tmp_path)
    assert out.returncode == 2 and "601 s is over" in out.stderr.splitlines()[0]
    assert len(out.stderr) < 600, out.stderr


def test_an_option_and_a_param_for_the_same_field_must_agree(tmp_path) -> None:
    """`-d 1 --param duration=5` kept 1 s silently: two values for one field are a usage error."""
    from click.testing import CliRunner

    from soundforge.cli import cli

    out = tmp_path / "a.wav"
    result = CliRunner().invoke(
        cli, ["generate", "x", "-p", "synth", "-d", "1", "--param", "duration=5", "-o", str(out)]
    )
    assert result.exit_code == 2 and "disagree" in result.output and not out.exists()
    same = CliRunner().invoke(
        cli, ["generate", "x", "-p", "synth", "-d", "1", "--param", "duration=1", "-o", str(out), "-q"]
    )
    assert same.exit_code == 0, same.output


def test_a_missing_output_folder_is_made_and_said(tmp_path: Path) -> None:
    """The folder is created for the output, with a note on stderr (a mistyped path used to pass unseen)."""
    out = run("generate", "x", "-d", "1", "-o", "new/sub/t.wav", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "new/sub does not exist; it is created for the output" in out.stderr
    assert (tmp_path / "new" / "sub" / "t.wav").is_file()
    again = run("generate", "x", "-d", "1", "-o", "new/sub/u.wav", cwd=tmp_path)
    assert again.returncode == 0 and "does not exist" not in again.stderr
