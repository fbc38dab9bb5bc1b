"""The second engines (audiocraft, stable-audio-tools): their tests run in their own process (tests/engines/) with
test-only stand-ins on the path; here, what a user without a working install of them sees."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from soundforge import ProviderUnavailableError
from soundforge.client import Client
from soundforge.config import Config

TESTS = Path(__file__).resolve().parents[1]  # tests/


#: Set by .ci/run, which runs tests/engines/ beside this suite with the real torchaudio (scripts/check-installs, in
#: the environment the audiocraft page's recipe makes): the stand-in run would repeat the same tests, on a torch
#: (this suite's) for which no torchaudio exists, so no user has that pair.
REAL_ENGINE_SUITE_BESIDE = "SOUNDFORGE_ENGINE_SUITE_BESIDE"


@pytest.mark.skipif(
    bool(os.environ.get(REAL_ENGINE_SUITE_BESIDE)),
    reason="tests/engines/ run beside this suite with the real torchaudio (scripts/check-installs audiocraft)",
)
def test_engine_suite_in_its_own_process() -> None:
    """tests/engines/ put a torchaudio stand-in on sys.path; a separate process keeps it out of every other test."""
    env = {
        **os.environ,
        "SOUNDFORGE_ENGINE_TESTS": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS / "stand_ins"), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "engines")],
        capture_output=True,
        text=True,
        env=env,
        cwd=TESTS.parent,
        timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 14 and "skipped" not in summary, summary


@pytest.mark.skipif(importlib.util.find_spec("torchaudio") is not None, reason="a real torchaudio is installed")
def test_without_torchaudio_the_engine_says_what_is_missing() -> None:
    client = Client(Config.load(user_file=False, providers={"musicgen": {"engine": "audiocraft"}}))
    rows = {row.name: row for row in client.providers()}
    for name in ("audiogen", "musicgen"):
        assert not rows[name].available and "torchaudio" in rows[name].reason, rows[name]
        assert "docs/providers/audiocraft.md" in (rows[name].fix or "")
    with pytest.raises(ProviderUnavailableError, match="torchaudio"):
        client.generate("x", provider="audiogen:debug", duration=1)
    sat = Client(Config.load(user_file=False, providers={"stable-audio": {"engine": "stable-audio-tools"}}))
    row = next(r for r in sat.providers() if r.name == "stable-audio")
    assert not row.available and "torchaudio" in row.reason and "stable-audio.md" in (row.fix or "")
