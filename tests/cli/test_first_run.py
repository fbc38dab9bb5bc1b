"""What a new user meets first (issue "Real installs"): a configuration typo under `auto`, a policy that refuses
everything, Ctrl+C, a timeout's message, and README's first steps run one after the other."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from soundforge import ConfigurationError, LicensePolicyError
from soundforge.cli import EXIT_INTERRUPTED, EXIT_POLICY, EXIT_PROVIDER, cli
from soundforge.client import Client
from soundforge.config import Config

from ..fakes import KEY
from ..helpers import hears_ctrl_c

EXE = str(Path(sys.executable).with_name("soundforge"))
ROOT = Path(__file__).resolve().parents[2]


def _env(**more: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SOUNDFORGE_")}, **more}


def test_a_setting_typo_is_reported_as_itself_under_auto(monkeypatch, tmp_path) -> None:
    """`[providers.synth] devcie` under the default `auto` said "provider 'auto' is not available … failed: synth"
    (exit 3); only `-p synth` showed the unknown setting."""
    client = Client(Config.load(user_file=False, providers={"synth": {"devcie": "cpu"}}))
    with pytest.raises(ConfigurationError, match=r"unknown setting 'devcie' under \[providers\.synth\]"):
        client.generate("x", duration=1)
    monkeypatch.setenv("SOUNDFORGE_SYNTH_FOO", "1")
    with pytest.raises(ConfigurationError, match="unknown setting 'foo'"):
        Client(Config.load(user_file=False)).generate("x", duration=1)
    monkeypatch.delenv("SOUNDFORGE_SYNTH_FOO")
    (tmp_path / "soundforge.toml").write_text('[providers.synth]\ndevcie = "cpu"\n')
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "soundforge.toml"), "generate", "x", "-d", "1"])
    assert result.exit_code == EXIT_PROVIDER and "unknown setting 'devcie'" in result.output


def test_a_policy_that_refuses_every_set_up_provider_exits_4_and_names_what_would_pass(tmp_path) -> None:
    """It exited 3 (as if nothing were installed) and said no provider passes, though `stability` does once its
    key is set: not set up is not refused."""
    client = Client(Config.load(user_file=False, policy={"deny": ["synth"]}))
    with pytest.raises(LicensePolicyError, match="no provider fits the licence policy") as caught:
        client.generate("x", duration=20)
    assert caught.value.exit_code == EXIT_POLICY and "stability" in (caught.value.hint or "")
    (tmp_path / "soundforge.toml").write_text('[policy]\ndeny = ["synth"]\n')
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "soundforge.toml"), "generate", "x", "-d", "20"])
    assert result.exit_code == EXIT_POLICY and "once set up" in result.output, result.output


def test_a_timeout_is_not_reported_as_a_write_error(stability, downloads, tmp_path) -> None:
    """A GenerationTimeoutError is a TimeoutError, an OSError: the CLI printed "cannot write:" for it."""
    (tmp_path / "soundforge.toml").write_text(
        f'[providers.stability]\nbase_url = "{stability.url}"\napi_key = "{KEY}"\nallow_loopback_urls = true\n'
        f'download_dir = "{downloads}"\nread_timeout = 0.3\njob_journal = "off"\n'
    )
    stability.faults.append("slow")
    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "soundforge.toml"), "generate", "x", "-p", "stability", "-d", "1"]
    )
    assert result.exit_code != 0 and "did not answer within" in result.output
    assert "cannot write" not in result.output


def _interrupt_once(args: list[str], cwd: Path, started: Path) -> subprocess.CompletedProcess[str]:
    """Run the command, send it SIGINT once `started` exists (it is working), and collect how it ended."""
    process = subprocess.Popen(
        [EXE, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=hears_ctrl_c,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the command ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_ctrl_c_exits_130_with_one_line(tmp_path) -> None:
    """Click said "Aborted!" and exited 1."""
    ended = _interrupt_once(
        ["generate", "a long drone", "-d", "600", "--stream-to", "drone.wav"], tmp_path, tmp_path / "drone.partial.wav"
    )
    assert ended.returncode == EXIT_INTERRUPTED and "interrupted" in ended.stderr
    assert "Aborted" not in ended.stderr and "Traceback" not in ended.stderr
    assert not list(tmp_path.glob("*.wav"))  # nothing half-written is left


def test_ctrl_c_in_a_batch_says_how_to_resume(tmp_path) -> None:
    rows = "\n".join(f'{{"name": "row{i}", "prompt": "a long drone", "duration": 120, "seed": {i}}}' for i in range(3))
    (tmp_path / "m.jsonl").write_text(rows + "\n")
    ended = _interrupt_once(
        ["batch", "m.jsonl", "-o", "out", "--concurrency", "1"], tmp_path, tmp_path / "out" / "row0.wav"
    )
    assert ended.returncode == EXIT_INTERRUPTED and "--resume" in ended.stderr and "Traceback" not in ended.stderr
    resumed = subprocess.run(
        [EXE, "batch", "m.jsonl", "-o", "out", "--resume"], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "1 already done" in resumed.stdout and "2 generated" in resumed.stdout


def test_readmes_first_steps_run_one_after_the_other(tmp_path) -> None:
    """README's snippet saved the same `track.wav` as its first command: pasted in order, it raised
    FileExistsError."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"bash scripts/soundforge generate (.+)", readme)
    snippet = re.search(r"```python\n(.+?)```", readme, re.S)
    assert command and snippet
    args = re.findall(r'"[^"]*"|\S+', command.group(1))
    first = subprocess.run(
        [EXE, "generate", *(a.strip('"') for a in args)], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    second = subprocess.run(
        [sys.executable, "-c", snippet.group(1)], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr


def test_every_local_engine_installs_by_its_provider_name() -> None:
    """`pip install "soundforge[magnet]"` (or `[audiogen]`) only warned that no such extra exists."""
    import importlib
    import tomllib

    from soundforge.backends import BUILTIN

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, target in BUILTIN.items():
        module, _, attribute = target.partition(":")
        if name != "synth" and getattr(importlib.import_module(module), attribute).local:
            assert name in extras, f"no extra named {name!r}"


def test_the_prompt_may_be_a_keyword_and_a_misspelt_provider_gets_a_suggestion() -> None:
    """`generate(prompt=...)` raised TypeError; `-p musicgne` listed every provider but did not say "musicgen"."""
    import soundforge
    from soundforge import InvalidRequestError, ProviderNotFoundError

    g = soundforge.generate(prompt="rain on a tin roof", provider="synth", duration=1, seed=1)
    assert g.provenance.request["prompt"] == "rain on a tin roof"
    with pytest.raises(InvalidRequestError, match="give a prompt"):
        soundforge.generate(provider="synth", duration=1)
    with pytest.raises(ProviderNotFoundError, match="did you mean 'musicgen'"):
        soundforge.generate("x", provider="musicgne", duration=1)


def test_the_output_folder_is_checked_by_writing_and_the_summary_gives_the_saved_length(tmp_path) -> None:
    """`-o /proc/x.wav` failed after generating, naming a temporary file (permission bits said yes to root); the
    summary printed the length generated (3.0 s) for a file trimmed to 2 s."""
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    unwritable = subprocess.run(
        [EXE, "generate", "x", "-d", "1", "-o", "/proc/x.wav"], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert unwritable.returncode == 2 and "cannot save into /proc" in unwritable.stderr
    assert ".tmp" not in unwritable.stderr
    trimmed = subprocess.run(
        [EXE, "generate", "x", "-d", "3", "--trim", "2", "-o", "t.wav"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert trimmed.returncode == 0, trimmed.stderr
    assert "t.wav  2.0 s" in trimmed.stdout, trimmed.stdout


def test_batch_names_its_licence_files_once_and_the_page_asks_for_no_favicon(tmp_path) -> None:
    """`batch -o out/` printed `out//licenses.json`; the web page made every browser ask for /favicon.ico (404)."""
    (tmp_path / "m.jsonl").write_text('{"name": "a", "prompt": "lofi", "duration": 1, "seed": 1}\n')
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "m.jsonl"), "-o", f"{tmp_path / 'out'}/"])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'out'}/licenses.json" in result.output and "//licenses.json" not in result.output
    page = (ROOT / "src" / "soundforge" / "serve" / "static" / "index.html").read_text()
    assert re.search(r'<link rel="icon" href="data:,">', page)
