"""`soundforge batch --ray`: the same manifest on a local Ray cluster started by the test, surviving a killed worker."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soundforge.audio import decoded_sha256
from soundforge.bulk import JOURNAL, batch
from soundforge.client import Client
from soundforge.config import Config
from soundforge.output.tags import read_tags
from soundforge.testing.musicgen import build_musicgen

from ..helpers import cloud


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def row_workers() -> list[int]:
    """Process ids of the batch's Ray actors, found by the process title Ray gives them."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::RowWorker"):
                pids.append(int(entry))
    return pids


@pytest.fixture
def cluster(ray_cluster):
    """The session's local Ray cluster (conftest.py), started inside the test run."""
    yield


@pytest.fixture(scope="module")
def tiny_musicgen(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("musicgen") / "tiny"
    build_musicgen(folder)
    return str(folder)


def test_ray_run_survives_a_killed_worker_with_every_row_once(tmp_path, cluster, tiny_musicgen) -> None:
    rows = [
        {"name": f"cue{i:02d}", "prompt": f"synthwave {90 + i} BPM", "duration": 1, "seed": i, "provider": "synth"}
        for i in range(12)
    ]
    rows += [
        {"name": f"mg{i}", "prompt": "calm piano", "duration": 0.06, "seed": i, "provider": f"musicgen:{tiny_musicgen}"}
        for i in range(4)
    ]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    # Batched MusicGen rows depend on what shares their batch (docs/providers/musicgen.md); unbatched, a seed
    # means the same audio on any worker, which the comparison with a local run below relies on.
    client = Client(Config.load(user_file=False, providers={"musicgen": {"batching": False}}))
    killed: list[int] = []

    def kill_workers_once(name: str, state: str) -> None:
        # At the first finished row the other actor may still be starting (a loaded machine): wait until both run
        # (each then holds rows), then kill all of them (SIGKILL, no clean-up).
        if not killed:
            deadline = time.monotonic() + 120
            while len(pids := row_workers()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # a process table: nothing here can be waited on
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    out = tmp_path / "ray-out"
    report = batch(manifest, out, client=client, concurrency=6, ray="auto", ray_workers=2, on_row=kill_workers_once)
    assert len(killed) >= 2, "the test must really kill workers mid-run"
    assert report.failed == {} and sorted(report.done + report.skipped) == sorted(r["name"] for r in rows)
    db = sqlite3.connect(out / JOURNAL)
    states = db.execute("SELECT name, state, attempts FROM rows").fetchall()
    db.close()
    assert len(states) == len(rows) and {s for _, s, _ in states} == {"done"}
    assert {a for _, _, a in states} == {1}, "the driver sent every row once; Ray retried only inside the cluster"
    for row in rows:
        path = out / f"{row['name']}.wav"
        tags = read_tags(path)
        assert tags["AUDIO_SHA256"] == decoded_sha256(path.read_bytes()) and (out / f"{row['name']}.wav.json").exists()
    assert not list(out.glob(".*.tmp")), "no temp file is left behind"
    licenses = json.loads((out / "licenses.json").read_text())
    assert sorted(licenses["CC0-1.0"]["rows"]) == [f"cue{i:02d}" for i in range(12)]
    # A local folder is no published model: its licence is unknown, never borrowed from MusicGen's.
    assert sorted(licenses["LicenseRef-Unknown"]["rows"]) == [f"mg{i}" for i in range(4)]

    # The same manifest on this machine gives the same audio: seeds mean the same thing on a cluster.
    local = tmp_path / "local-out"
    batch(manifest, local, client=client, concurrency=4)
    for row in rows:
        assert (
            read_tags(local / f"{row['name']}.wav")["AUDIO_SHA256"]
            == read_tags(out / f"{row['name']}.wav")["AUDIO_SHA256"]
        ), row["name"]

    # Resume is the driver's business alone: nothing left to do, nothing sent to the cluster.
    again = batch(manifest, out, client=client, resume=True, ray="auto")
    assert sorted(again.skipped) == sorted(r["name"] for r in rows) and not again.done


def test_cloud_rows_run_as_ray_tasks(tmp_path, cluster, stability, downloads) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"name": f"sfx{i}", "prompt": "rain on a tin roof", "duration": 2, "seed": i} for i in range(3)],
    )
    client = cloud("stability", stability, downloads)
    report = batch(
        manifest, f"file://{tmp_path / 'out'}", client=client, provider="stability", ray="auto", concurrency=3
    )
    assert sorted(report.done) == ["sfx0", "sfx1", "sfx2"] and stability.requests == 3
    assert [b["seed"] for b in sorted(stability.bodies, key=lambda b: b["seed"])] == ["0", "1", "2"]
    assert read_tags(tmp_path / "out" / "sfx1.wav")["PROVIDER"] == "stability"


@pytest.mark.own_ray_cluster
def test_cli_ray_flag_starts_and_stops_its_own_cluster(tmp_path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"name": "a", "prompt": "lofi", "duration": 1, "seed": 1},
            {"name": "b", "prompt": "rock", "duration": 1, "seed": 2},
        ],
    )
    exe = str(Path(sys.executable).with_name("soundforge"))
    result = subprocess.run(
        [exe, "batch", str(manifest), "-o", str(tmp_path / "o"), "-p", "synth", "--ray"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "2 generated" in result.stdout and (tmp_path / "o" / "b.wav").exists()
