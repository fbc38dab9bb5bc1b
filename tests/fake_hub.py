"""A Hugging Face hub on 127.0.0.1, serving model folders as repositories, for tests that download.

Written from huggingface_hub 2.4.0's client code (the calls `snapshot_download` makes), not from soundforge's:
- `GET /api/models/{repo}/revision/{rev}` (`HfApi.model_info`, hf_api.py: `{endpoint}/api/models/{repo_id}/revision/
  {revision}`): `{"id", "sha", "siblings": [{"rfilename"}]}`;
- `GET /api/models/{repo}/tree/{rev}?recursive=…` (`HfApi.list_repo_tree`): a JSON list of `{"type": "file", "path",
  "size", "oid"}` (the git blob sha1), with `"lfs": {"oid": sha256, "size", "pointerSize"}` for LFS files
  (`RepoFile.__init__` reads exactly these keys); no `Link` header, so one page;
- `HEAD` and `GET /{repo}/resolve/{rev}/{path}` (`get_hf_file_metadata`, file_download.py): `X-Repo-Commit`, `ETag`
  (the blob id; for LFS files `X-Linked-Etag` with the sha256 and `X-Linked-Size`), `Content-Length`, and no
  `X-Xet-Hash`, so the client takes the plain HTTP download path.

Every request is recorded (`requests`), so a test can prove which files were fetched, or that none were.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "feedfacecafebeef0123456789abcdef01234567"
#: Files the hub keeps in LFS (git-lfs pointers in the repository): weights.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


class FakeHub:
    """Repositories by id, each a folder on disk at one commit (`COMMIT`), reachable by any revision name."""

    def __init__(self) -> None:
        self.repos: dict[str, Path] = {}
        self.requests: list[tuple[str, str]] = []
        #: Files whose served bytes are altered after their hashes were listed (a corrupt download).
        self.corrupt: set[str] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._handle(self, body=True)

            def do_HEAD(self) -> None:
                hub._handle(self, body=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, repo_id: str, folder: str | Path) -> None:
        """Serve `folder` as the repository `repo_id`."""
        self.repos[repo_id] = Path(folder)

    def files(self, repo_id: str) -> dict[str, Path]:
        root = self.repos[repo_id]
        return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}

    def _entry(self, name: str, path: Path) -> dict[str, Any]:
        data = path.read_bytes()
        entry: dict[str, Any] = {"type": "file", "path": name, "size": len(data), "oid": _git_blob_sha1(data)}
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    # --- HTTP ---
    def _handle(self, h: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path))
        if path == "/api/agent-harnesses":  # huggingface_hub's agent detection (utils/_detect_agent.py `Registry`)
            return self._send(h, 200, {"standardEnvVars": [], "harnesses": {}}, body=body)
        if path.startswith("/api/models/"):
            return self._api(h, path.removeprefix("/api/models/"))
        if "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            _, _, name = rest.partition("/")
            return self._file(h, repo_id, name, body=body)
        self._send(h, 404, {"error": "Not Found"})

    def _api(self, h: BaseHTTPRequestHandler, rest: str) -> None:
        for marker in ("/revision/", "/tree/"):
            if marker in rest:
                repo_id, _, tail = rest.partition(marker)
                break
        else:
            return self._send(h, 404, {"error": "Not Found"})
        if repo_id not in self.repos:
            return self._send(h, 404, {"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})
        files = self.files(repo_id)
        if marker == "/revision/":
            info = {"id": repo_id, "modelId": repo_id, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
            return self._send(h, 200, info)
        _, _, prefix = tail.partition("/")
        listing = [self._entry(n, p) for n, p in files.items() if n.startswith(prefix)]
        self._send(h, 200, listing)

    def _file(self, h: BaseHTTPRequestHandler, repo_id: str, name: str, *, body: bool) -> None:
        found = self.files(repo_id).get(name) if repo_id in self.repos else None
        if found is None:
            return self._send(
                h, 404, {"error": "Entry not found"}, headers={"X-Error-Code": "EntryNotFound"}, body=body
            )
        data = found.read_bytes()
        entry = self._entry(name, found)
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{entry["oid"]}"'}
        if "lfs" in entry:
            headers |= {"X-Linked-Etag": f'"{entry["lfs"]["oid"]}"', "X-Linked-Size": str(len(data))}
        if name in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        h.send_response(200)
        for key, value in {**headers, "Content-Type": "application/octet-stream"}.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        payload: Any,
        *,
        headers: dict[str, str] | None = None,
        body: bool = True,
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
