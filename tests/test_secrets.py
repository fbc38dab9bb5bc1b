"""A key that a provider echoes back never reaches an error, a record, a journal, stderr or an HTTP body."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from soundforge import AuthenticationError, InvalidRequestError, SoundforgeError
from soundforge.bulk import JOURNAL, batch
from soundforge.client import Client
from soundforge.config import Config
from soundforge.secrets import REDACTED, Secret, redact

KEY = "sk-echoed-0123456789abcdef"


class EchoingUpstream:
    """A hostile or careless provider: 401 quoting the Authorization header, or 400 listing every request header."""

    def __init__(self, status: int) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if upstream.status == 401:
                    body = {"message": f"invalid api key: {self.headers.get('Authorization')}"}
                else:
                    body = {"message": "bad request", "headers": dict(self.headers.items())}
                data = json.dumps(body).encode()
                self.send_response(upstream.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.status = status
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(params=[401, 400])
def upstream(request):
    server = EchoingUpstream(request.param)
    yield server
    server.close()


def echoing_client(upstream: EchoingUpstream) -> Client:
    return Client(
        Config.load(
            user_file=False, providers={"stability": {"base_url": upstream.url, "api_key": KEY, "max_retries": 0}}
        )
    )


def test_an_echoed_key_is_redacted_from_the_error_and_its_dict(upstream) -> None:
    with pytest.raises(SoundforgeError) as info:
        echoing_client(upstream).generate("techno", provider="stability", duration=2)
    error = info.value
    assert isinstance(error, AuthenticationError if upstream.status == 401 else InvalidRequestError)
    shown = [str(error), repr(error), error.message, json.dumps(error.to_dict()), *map(str, error.args)]
    assert all(KEY not in text for text in shown), shown
    assert REDACTED in str(error)


def test_an_echoed_key_stays_out_of_the_batch_journal(upstream, tmp_path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"name": "a", "prompt": "techno", "duration": 2}) + "\n")
    report = batch(manifest, tmp_path / "out", client=echoing_client(upstream), provider="stability")
    assert KEY not in report.failed["a"] and REDACTED in report.failed["a"]
    db = sqlite3.connect(tmp_path / "out" / JOURNAL)
    assert KEY not in json.dumps(db.execute("SELECT * FROM rows").fetchall())
    db.close()


def test_an_echoed_key_stays_out_of_cli_stderr(upstream, tmp_path) -> None:
    (tmp_path / "soundforge.toml").write_text(f'[providers.stability]\nbase_url = "{upstream.url}"\nmax_retries = 0\n')
    exe = str(Path(sys.executable).with_name("soundforge"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STABILITY_API_KEY": KEY}
    out = subprocess.run(
        [exe, "generate", "techno", "-p", "stability", "-d", "2", "-o", "x.wav"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert KEY not in out.stderr + out.stdout and REDACTED in out.stderr


def test_an_echoed_key_stays_out_of_serve_records_and_bodies(upstream, tmp_path) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from .serve.test_app import serving, wait

    store = tmp_path / "jobs"
    with (
        serving(store, engine="inline", client=echoing_client(upstream)) as (url, _),
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        job = http.post(
            "/v1/generations", json={"request": {"prompt": "techno", "duration": 2}, "provider": "stability"}
        ).json()
        record = wait(http, job["id"])
        assert record["status"] == "failed" and REDACTED in json.dumps(record)
        assert KEY not in http.get(f"/v1/generations/{job['id']}").text
    assert all(KEY not in path.read_text(errors="replace") for path in store.rglob("*") if path.is_file())


def test_redaction_rules() -> None:
    Secret("configured-secret-value")
    assert redact("the key configured-secret-value was refused") == "the key *** was refused"
    for text, hidden in [
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ('{"xi-api-key": "k-12345678"}', "k-12345678"),
        ("x-goog-api-key=AIzaSyXXXX", "AIzaSyXXXX"),
        ("Authorization: Key fal-123:456", "fal-123:456"),
        ("GET /v1/x?key=AIza123456&alt=json", "AIza123456"),
        ("token: r8_abcdefghijk", "r8_abcdefghijk"),
    ]:
        assert hidden not in redact(text), text
    # Ordinary words are left alone.
    for text in ("max_new_tokens=512 tokens", "provider 'x' needs api_key_env", "short key abc"):
        assert redact(text) == text
    assert repr(Secret("another-secret-1")) == "Secret('***')"
