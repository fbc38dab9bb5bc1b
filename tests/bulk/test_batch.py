"""`soundforge batch`: manifests validated up front, a journal that makes runs resumable, licence reports."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from soundforge import InvalidRequestError, LicensePolicy, LicensePolicyError
from soundforge.bulk import JOURNAL, batch, load_manifest
from soundforge.bulk.output import OutputLocation, delivered
from soundforge.client import Client
from soundforge.config import Config

from ..helpers import NonCommercialBackend


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_and_csv_manifests(tmp_path) -> None:
    jsonl = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"name": "a", "prompt": "lofi", "duration": 1, "seed": 1},
            {"name": "b", "prompt": "rock", "duration": 1.5, "output_format": "flac"},
        ],
    )
    rows = load_manifest(jsonl)
    assert [r.name for r in rows] == ["a", "b"] and rows[1].request.output_format == "flac"
    (tmp_path / "m.csv").write_text('name,prompt,duration,seed,extra\nc,"jazz, slow",2,5,\nd,house,1,,"{""k"": 1}"\n')
    rows = load_manifest(tmp_path / "m.csv")
    assert rows[0].request.prompt == "jazz, slow" and rows[0].request.seed == 5 and rows[1].request.extra == {"k": 1}


def test_every_problem_is_reported_with_its_row(tmp_path) -> None:
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"name": "ok", "prompt": "x"},
            {"name": "../evil", "prompt": "x"},
            {"name": "two", "prompt": "x", "duration": -2},
            {"name": "ok", "prompt": "y"},
            {"name": "m", "prompt": "x", "bogus": 1},
            {"name": "n", "prompt": "x", "num_outputs": 3},
            {"name": "s", "prompt": "x", "stems": ["drums", "drums"]},
        ],
    )
    (tmp_path / "bad.jsonl").write_text(bad.read_text() + "{not json\n")
    with pytest.raises(InvalidRequestError) as info:
        load_manifest(bad)
    text = str(info.value)
    for expected in (
        "row 2, field 'name'",
        "row 3, field 'duration'",
        "row 4, field 'name': 'ok' is already used",
        "row 5, field 'bogus'",
        "row 6, field 'num_outputs'",
        "row 7, field 'stems': stems names each stem once",
        "row 8: not valid JSON",
    ):
        assert expected in text, expected


def test_run_resume_and_licence_report(tmp_path, test_backends) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"name": f"cue{i}", "prompt": "synthwave 110 BPM", "duration": 1, "seed": i} for i in range(4)]
        + [
            {"name": "broken", "prompt": "x", "duration": 1, "provider": "flaky"},
            {"name": "sfx", "prompt": "door", "duration": 1, "provider": "nc"},
        ],
    )
    out = tmp_path / "out"
    client = Client(Config.load(user_file=False))
    report = batch(manifest, out, client=client, provider="synth", concurrency=3)
    assert sorted(report.done) == ["cue0", "cue1", "cue2", "cue3", "sfx"] and list(report.failed) == ["broken"]
    assert (out / "cue2.wav").exists() and (out / "cue2.wav.json").exists()
    licenses = json.loads((out / "licenses.json").read_text())
    assert sorted(licenses["CC0-1.0"]["rows"]) == ["cue0", "cue1", "cue2", "cue3"] and "MIT" not in licenses
    assert licenses["CC-BY-NC-4.0"]["rows"] == ["sfx"]
    assert "CC-BY-NC-4.0" in (out / "ATTRIBUTIONS.md").read_text()
    # A second start without resume is refused; resume skips finished rows and keeps failed ones failed.
    with pytest.raises(InvalidRequestError, match="resume"):
        batch(manifest, out, client=client, provider="synth")
    calls = NonCommercialBackend.calls
    again = batch(manifest, out, client=client, provider="synth", resume=True)
    assert sorted(again.skipped) == ["cue0", "cue1", "cue2", "cue3", "sfx"] and NonCommercialBackend.calls == calls
    assert list(again.failed) == ["broken"]
    # A crash after the file was written but before the journal said so: the file verifies, no new generation.
    db = sqlite3.connect(out / JOURNAL)
    db.execute("UPDATE rows SET state = 'running' WHERE name = 'sfx'")
    db.commit()
    db.close()
    third = batch(manifest, out, client=client, provider="synth", resume=True)
    assert "sfx" in third.skipped and NonCommercialBackend.calls == calls
    # A truncated file of a row this run made (a crash mid-write, or damage later): detected and generated again.
    (out / "cue0.wav").write_bytes((out / "cue0.wav").read_bytes()[:1000])
    fourth = batch(manifest, out, client=client, provider="synth", resume=True)
    assert fourth.done == ["cue0"] and "cue0" not in fourth.skipped
    assert delivered(load_manifest(manifest)[0], OutputLocation(out))
    # A file nobody in this run wrote is reported and kept, never overwritten.
    foreign = write_jsonl(tmp_path / "f.jsonl", [{"name": "mine", "prompt": "x", "duration": 1}])
    (out / "mine.wav").write_bytes(b"RIFF my own file")
    fifth = batch(foreign, out, client=client, provider="synth", resume=True)
    assert "belongs to no row of this run" in fifth.failed["mine"]
    assert (out / "mine.wav").read_bytes() == b"RIFF my own file"
    # A valid file of someone else's (it verifies on its own): said to belong to no row, not to be damaged.
    client.generate("town", provider="synth", duration=1).save(out / "town.wav")
    town = write_jsonl(tmp_path / "t.jsonl", [{"name": "town", "prompt": "x", "duration": 1}])
    sixth = batch(town, out, client=client, provider="synth", resume=True)
    assert "belongs to no row of this run" in sixth.failed["town"] and "does not verify" not in sixth.failed["town"]


def test_resume_regenerates_a_row_that_changed(tmp_path) -> None:
    out = tmp_path / "out"
    client = Client(Config.load(user_file=False))
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"name": "a", "prompt": "calm piano", "duration": 2, "seed": 1}])
    assert batch(manifest, out, client=client, provider="synth").done == ["a"]
    first = (out / "a.wav").read_bytes()
    for change in ({"prompt": "fast techno"}, {"duration": 1.5}, {"seed": 2}):
        row = {"name": "a", "prompt": "calm piano", "duration": 2, "seed": 1, **change}
        write_jsonl(manifest, [row])
        again = batch(manifest, out, client=client, provider="synth", resume=True)
        assert again.done == ["a"] and not again.skipped, change
        now = (out / "a.wav").read_bytes()
        assert now != first, change
        sidecar = json.loads((out / "a.wav.json").read_text())
        assert sidecar["provenance"]["request"]["seed"] == row["seed"]
        assert sidecar["batch"]["fingerprint"] == load_manifest(manifest)[0].fingerprint
        first = now
        # The row as it is now is finished: a further resume generates nothing.
        assert batch(manifest, out, client=client, provider="synth", resume=True).skipped == ["a"]


def test_policy_is_checked_for_every_row_before_any_generation(tmp_path, test_backends) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"name": "a", "prompt": "x", "duration": 1}, {"name": "b", "prompt": "x", "duration": 1, "provider": "nc"}],
    )
    client = Client(Config.load(user_file=False), policy=LicensePolicy.commercial())
    with pytest.raises(LicensePolicyError, match="row 2"):
        batch(manifest, tmp_path / "out", client=client, provider="synth")
    assert NonCommercialBackend.calls == 0 and not (tmp_path / "out").exists()
    dry = batch(manifest, tmp_path / "dry", client=Client(Config.load(user_file=False)), provider="synth", dry_run=True)
    assert set(dry.licenses) == {"CC0-1.0", "CC-BY-NC-4.0"} and not (tmp_path / "dry").exists()


def test_cli_batch(tmp_path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"name": "x1", "prompt": "lofi", "duration": 1, "seed": 1},
            {"name": "x2", "prompt": "rock", "duration": 1, "seed": 2},
        ],
    )
    exe = str(Path(sys.executable).with_name("soundforge"))
    out = subprocess.run(
        [exe, "batch", str(manifest), "-o", str(tmp_path / "o"), "-p", "synth"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "2 generated" in out.stdout and "CC0-1.0" in out.stdout
    dry = subprocess.run(
        [exe, "batch", str(manifest), "-o", str(tmp_path / "d"), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert dry.returncode == 0 and "dry run" in dry.stdout


def test_output_to_an_fsspec_url_with_a_local_journal(tmp_path) -> None:
    import fsspec

    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"name": "x1", "prompt": "lofi", "duration": 1, "seed": 1},
            {"name": "x2", "prompt": "rock", "duration": 1, "seed": 2, "output_format": "flac"},
        ],
    )
    client = Client(Config.load(user_file=False))
    with pytest.raises(InvalidRequestError, match="journal"):
        batch(manifest, "memory://library/cues", client=client, provider="synth")
    journal = tmp_path / "run.sqlite"
    report = batch(manifest, "memory://library/cues", client=client, provider="synth", journal=journal)
    assert sorted(report.done) == ["x1", "x2"]
    fs = fsspec.filesystem("memory")
    data = fs.cat_file("/library/cues/x2.flac")
    from soundforge.audio import decoded_sha256
    from soundforge.output.tags import read_tags_bytes

    assert read_tags_bytes(data)["AUDIO_SHA256"] == decoded_sha256(data)
    assert json.loads(fs.cat_file("/library/cues/licenses.json"))["CC0-1.0"]["rows"] == ["x1", "x2"]
    assert not [p for p in fs.ls("/library/cues", detail=False) if p.endswith(".tmp")]
    # The journal forgot a row (a crash before its commit): the remote file verifies, so nothing runs again.
    db = sqlite3.connect(journal)
    db.execute("DELETE FROM rows WHERE name = 'x1'")
    db.commit()
    db.close()
    again = batch(manifest, "memory://library/cues", client=client, provider="synth", journal=journal, resume=True)
    assert sorted(again.skipped) == ["x1", "x2"] and not again.done
    fs.rm("/library", recursive=True)


def test_batch_example_runs(tmp_path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "batch_library.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "generated ['battle', 'menu-theme', 'victory']" in out.stdout and "CC0-1.0: 3 file(s)" in out.stdout
    assert "resumed: 3 already done, 0 generated" in out.stdout


def test_manifest_edge_cases_are_read_as_written(tmp_path) -> None:
    # A UTF-8 BOM (Excel's export), a name that looks like a number, an extra cell, a line separator in a prompt.
    (tmp_path / "m.csv").write_bytes('\ufeffname,prompt,duration\n1e3,"calm, slow",2\n'.encode())
    rows = load_manifest(tmp_path / "m.csv")
    assert rows[0].name == "1e3" and rows[0].file_name == "1e3.wav" and rows[0].request.prompt == "calm, slow"
    (tmp_path / "extra.csv").write_text("name,prompt\na,calm,unexpected\n")
    with pytest.raises(InvalidRequestError, match="more than the header"):
        load_manifest(tmp_path / "extra.csv")
    # Rows are numbered by the line they start on, as an editor shows them: a quoted prompt spans lines 2-4 and a
    # blank line follows, so the faulty row is on line 6 (it said "row 3", counting records).
    (tmp_path / "lines.csv").write_text('name,prompt,duration\na,"verse\nbridge\nchorus",2\n\nb,calm,many\n')
    with pytest.raises(InvalidRequestError, match=r"row 6\b"):
        load_manifest(tmp_path / "lines.csv")
    (tmp_path / "sep.jsonl").write_text(
        json.dumps({"name": "a", "prompt": "verse\u2028chorus"}, ensure_ascii=False) + "\n"
    )
    assert load_manifest(tmp_path / "sep.jsonl")[0].request.prompt == "verse\u2028chorus"
    write_jsonl(tmp_path / "nl.jsonl", [{"name": "a\n", "prompt": "x"}])
    with pytest.raises(InvalidRequestError, match="not a safe file name"):
        load_manifest(tmp_path / "nl.jsonl")


def test_an_unwritable_output_fails_its_row_and_the_run_goes_on(tmp_path, monkeypatch) -> None:
    from soundforge.bulk import output

    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"name": "a", "prompt": "x", "duration": 1, "seed": 1},
            {"name": "b", "prompt": "y", "duration": 1, "seed": 2},
        ],
    )
    real = output.OutputLocation.write

    def full_disk(self, name, data):
        if name.startswith("a."):
            raise OSError(28, "No space left on device")
        return real(self, name, data)

    monkeypatch.setattr(output.OutputLocation, "write", full_disk)
    report = batch(manifest, tmp_path / "out", client=Client(Config.load(user_file=False)), provider="synth")
    assert report.done == ["b"] and "No space left on device" in report.failed["a"]


def test_cli_dry_run_prints_the_plan(tmp_path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"name": "x1", "prompt": "lofi", "duration": 1}])
    exe = str(Path(sys.executable).with_name("soundforge"))
    dry = subprocess.run(
        [exe, "batch", str(manifest), "-o", str(tmp_path / "d"), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert dry.returncode == 0 and "x1  synth:default" in dry.stdout


def test_rows_that_would_write_the_same_file_are_refused_before_any_row_runs(tmp_path) -> None:
    """A row with stems writes NAME.wav and NAME.STEM.wav: a row named NAME.STEM (or any name equal but for case)
    would overwrite it, and every --resume would overwrite the other. Both are named, nothing runs."""
    manifest = write_jsonl(
        tmp_path / "rows.jsonl",
        [
            {"name": "song", "prompt": "x", "duration": 1, "stems": ["drums"]},
            {"name": "song.drums", "prompt": "y", "duration": 1},
            {"name": "Intro", "prompt": "z", "duration": 1},
            {"name": "intro", "prompt": "w", "duration": 1},
        ],
    )
    with pytest.raises(InvalidRequestError) as refused:
        batch(manifest, tmp_path / "out", client=Client(Config.load(user_file=False)), provider="synth")
    message = str(refused.value)
    assert "row 2 ('song.drums') would write song.drums.wav, which row 1 ('song')" in message
    assert "row 4 ('intro') would write intro.wav, which row 3 ('Intro')" in message
    assert not (tmp_path / "out").exists()


def test_a_serve_job_s_files_cannot_collide() -> None:
    """serve stores a job's files in a folder of its own: the mix, each stem, each encoding and the record never
    share a name, whatever stems and formats are asked for."""
    from soundforge.audio import FORMATS
    from soundforge.music import STEMS
    from soundforge.output.files import role_path

    pytest.importorskip("fastapi")
    from soundforge.serve.jobs import AUDIO_FILE
    from soundforge.serve.store import RECORD_FILE

    names = [RECORD_FILE]
    for fmt in FORMATS:
        mix = f"audio.{fmt}" if fmt != "wav" else AUDIO_FILE
        names += [mix, *(role_path(mix, stem).name for stem in STEMS)]
    assert len({n.casefold() for n in names}) == len(names)


def test_a_row_s_unexpected_error_fails_that_row_and_the_run_goes_on(tmp_path, monkeypatch) -> None:
    """A plain Python error met by one row (a bug) fails that row, with its reason, never the whole run (and so
    never every --resume after it)."""
    from soundforge.backends.synth import SynthBackend

    real = SynthBackend.generate

    def buggy(self, request, model, context):
        if request.prompt == "boom":
            raise ZeroDivisionError("division by zero")
        return real(self, request, model, context)

    monkeypatch.setattr(SynthBackend, "generate", buggy)
    manifest = write_jsonl(
        tmp_path / "rows.jsonl",
        [{"name": "ok", "prompt": "x", "duration": 1}, {"name": "bad", "prompt": "boom", "duration": 1}],
    )
    report = batch(manifest, tmp_path / "out", client=Client(Config.load(user_file=False)), provider="synth")
    assert report.done == ["ok"] and "ZeroDivisionError" in report.failed["bad"]
    assert (tmp_path / "out" / "ok.wav").exists() and not (tmp_path / "out" / "bad.wav").exists()


def test_hostile_manifests_are_refused_with_their_reason(tmp_path) -> None:
    """A JSONL row 100 000 levels deep (a RecursionError) and a CSV cell over the csv module's 128 KiB field limit
    (a csv.Error) crashed the loader: each is an InvalidRequestError naming the problem."""
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"name": "a", "prompt": "x", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(InvalidRequestError, match="row 1: nested too deep"):
        load_manifest(deep)
    wide = tmp_path / "wide.csv"
    wide.write_text('name,prompt\na,"' + "x" * 200_000 + '"\n')
    with pytest.raises(InvalidRequestError, match="cannot be read as CSV"):
        load_manifest(wide)
    ok = tmp_path / "ok.csv"
    ok.write_text("name,prompt,duration\na,calm,2\n")
    assert [r.name for r in load_manifest(ok)] == ["a"]


def test_a_manifest_problem_across_fields_names_its_field(tmp_path) -> None:
    """A fade that does not fit (a check across fields) was reported under field '-': it names fade_in."""
    manifest = write_jsonl(tmp_path / "rows.jsonl", [{"name": "a", "prompt": "x", "duration": 2, "fade_in": 2}])
    with pytest.raises(InvalidRequestError, match="row 1, field 'fade_in': fades of 2 s do not fit") as refused:
        load_manifest(manifest)
    assert "'-'" not in str(refused.value)
