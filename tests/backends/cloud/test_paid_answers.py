"""Paid answers of one-response APIs (Stability, ElevenLabs, Gemini, MiniMax) are kept until delivered.

Over real HTTP to the fakes on 127.0.0.1: an answer that arrived (and was billed) and then failed on soundforge's
side — an error after it was received, a crash of the process, an undecodable body — is never paid for again.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from soundforge import ProviderError
from soundforge.backends.cloud import CloudJobJournal
from soundforge.backends.cloud import default_journal_path as default_path
from soundforge.cli import cli

from ...fakes import KEY
from ...helpers import cloud

# provider, fixture name, request parameters (one POST each, the audio inside the answer)
CASES = {
    "stability": ("stability", {"duration": 2, "seed": 3}),
    "elevenlabs": ("eleven", {"duration": 3}),
    "gemini": ("gemini", {"duration": 12}),
    "minimax": ("minimax", {"duration": 2, "instrumental": True}),
}


def _fails_once_after_the_answer(client, provider: str) -> None:
    """The next call's answer arrives and is decoded; then the call fails as a full disk would."""
    backend = client.backend(provider)
    real = backend.agenerate_raw

    async def then_disk_full(*args, **kwargs):
        backend.agenerate_raw = real
        await real(*args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    backend.agenerate_raw = then_disk_full


@pytest.mark.parametrize("provider", list(CASES))
def test_an_answer_that_failed_after_it_was_paid_is_delivered_by_the_next_call(
    provider: str, request: pytest.FixtureRequest, downloads
) -> None:
    fixture, params = CASES[provider]
    server = request.getfixturevalue(fixture)
    client = cloud(provider, server, downloads)
    _fails_once_after_the_answer(client, provider)
    with pytest.raises(OSError, match="No space left"):
        client.generate("kept after a fault", provider=provider, **params)
    paid = server.requests
    [kept] = CloudJobJournal(default_path()).all()
    assert kept.kind == "answer" and kept.provider == provider and not kept.waited_for and kept.failed is None
    again = client.generate("kept after a fault", provider=provider, **params)
    assert server.requests == paid  # delivered from disk: not sent, not paid again
    assert again.audio.shape[1] == round(params["duration"] * again.sample_rate)
    assert CloudJobJournal(default_path()).all() == []  # delivered: forgotten, files and all
    assert not list(CloudJobJournal(default_path()).answers_folder().iterdir())
    client.generate("kept after a fault", provider=provider, **params)
    assert server.requests > paid  # a new call after delivery is a new generation
    assert not list(downloads.iterdir())


def test_a_killed_process_never_pays_twice_for_a_one_response_answer(stability, downloads, tmp_path) -> None:
    """kill -9 right after Stability's answer arrived: the next process delivers the same audio without a request."""
    journal = tmp_path / "jobs.sqlite"
    settings = {
        "base_url": stability.url,
        "api_key": KEY,
        "allow_loopback_urls": True,
        "job_journal": str(journal),
        "download_dir": str(downloads),
    }
    child = textwrap.dedent(
        f"""
        import os, signal
        import soundforge.backends.stability as stability
        from soundforge.client import Client
        from soundforge.config import Config

        def crash(*args, **kwargs):  # the answer is in; the process dies before it is decoded
            os.kill(os.getpid(), signal.SIGKILL)

        stability.decode_reply = crash
        client = Client(Config.load(user_file=False, providers={{"stability": {settings!r}}}))
        client.generate("killed after paying", provider="stability", duration=2, seed=11)
        """
    )
    process = subprocess.run([sys.executable, "-c", child], env=os.environ.copy(), timeout=120)
    assert process.returncode == -signal.SIGKILL and stability.requests == 1
    [orphan] = CloudJobJournal(journal).all()
    assert orphan.kind == "answer" and not orphan.waited_for
    again = cloud("stability", stability, downloads, job_journal=str(journal))
    g = again.generate("killed after paying", provider="stability", duration=2, seed=11)
    fresh = cloud("stability", stability, downloads, job_journal="off")
    direct = fresh.generate("killed after paying", provider="stability", duration=2, seed=11)
    assert stability.requests == 2  # one paid by the killed process, one by the comparison call: none by `again`
    np.testing.assert_array_equal(g.audio, direct.audio)
    assert CloudJobJournal(journal).all() == []


def test_an_undecodable_paid_answer_is_kept_for_the_user_not_reused(stability, downloads, tmp_path) -> None:
    """A body that cannot be decoded is kept (listed by `soundforge jobs`, its bytes as they came), never replayed
    by a call on its own (it would fail the same way); `--resume` tries it again, `--forget` drops it."""
    journal = tmp_path / "jobs.sqlite"
    client = cloud("stability", stability, downloads, job_journal=str(journal))
    stability.faults.append("malformed")
    with pytest.raises(ProviderError, match="cannot be decoded") as caught:
        client.generate("garbled", provider="stability", duration=1)
    [kept] = CloudJobJournal(journal).all()
    assert kept.failed and "cannot be decoded" in kept.failed and f"--resume {kept.job_id}" in (caught.value.hint or "")
    [reply] = kept.data["replies"]
    with open(reply["file"], "rb") as body:
        assert body.read() == b"\x00garbage" * 50  # the bytes that were paid for, as they came
    paid = stability.requests
    client.generate("garbled", provider="stability", duration=1)
    assert stability.requests == paid + 1  # a new call sends again rather than replay a body that cannot decode
    runner = CliRunner()
    listed = runner.invoke(cli, ["jobs", "--journal", str(journal)])
    assert listed.exit_code == 0 and kept.job_id in listed.output and "paid answer" in listed.output
    assert "cannot be decoded" in listed.output
    config = tmp_path / "soundforge.toml"
    config.write_text(
        f'[providers.stability]\nbase_url = "{stability.url}"\napi_key = "{KEY}"\nallow_loopback_urls = true\n'
        f'download_dir = "{downloads}"\n'
    )
    again = ["--config", str(config), "jobs", "--journal", str(journal), "--resume", kept.job_id]
    retried = runner.invoke(cli, [*again, "-o", str(tmp_path / "again.wav")])
    assert retried.exit_code != 0 and "cannot be decoded" in retried.output and "Traceback" not in retried.output
    assert stability.requests == paid + 1  # the retry decoded the kept bytes again: nothing was sent
    forgot = runner.invoke(cli, ["jobs", "--journal", str(journal), "--forget", kept.job_id])
    assert forgot.exit_code == 0, forgot.output
    assert CloudJobJournal(journal).all() == [] and not os.path.exists(reply["file"])


def test_a_refusal_is_not_kept(stability, downloads, tmp_path) -> None:
    """A content refusal is the answer: nothing is kept for later."""
    from soundforge import ContentRefusedError

    journal = tmp_path / "jobs.sqlite"
    stability.faults.append("filtered")
    with pytest.raises(ContentRefusedError):
        cloud("stability", stability, downloads, job_journal=str(journal)).generate(
            "x", provider="stability", duration=1
        )
    assert CloudJobJournal(journal).all() == []
