"""Where files land: a local folder or any fsspec URL (s3, gs, az, `memory://`), written whole (a temp name, then a
rename) or not at all. Batch runs and serve's job store both write through it."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..audio import write_atomic
from ..errors import ConfigurationError


class OutputLocation:
    """A run's output folder: a local path (or `file://` URL) or an fsspec URL such as `s3://bucket/cues`.

    Only the location string travels to workers; each process opens its own file system from it.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        text = os.fspath(target)
        self.url = text
        self.is_local = "://" not in text or text.startswith("file://")
        self._fs: Any = None
        self._root = text.removeprefix("file://") if self.is_local else ""
        if not self.is_local:
            try:
                import fsspec
            except ImportError:
                raise ConfigurationError(
                    f"writing to {text.split('://')[0]}:// URLs needs fsspec; "
                    "install soundforge[ray] or `pip install fsspec` and the file system's "
                    "package (s3fs, gcsfs, adlfs, …)"
                ) from None
            try:
                self._fs, self._root = fsspec.core.url_to_fs(text)
            except (ImportError, ValueError) as exc:
                raise ConfigurationError(f"cannot open output location {text!r}: {exc}") from None

    @property
    def folder(self) -> Path | None:
        """The local folder, or None for a remote location."""
        return Path(self._root) if self.is_local else None

    def __repr__(self) -> str:
        return f"OutputLocation({self.url!r})"

    def path(self, name: str) -> str:
        """The full path of a file in the location."""
        return os.path.join(self._root, name) if self.is_local else f"{self._root.rstrip('/')}/{name}"

    def makedirs(self) -> None:
        """Create the location if it does not exist."""
        if self.is_local:
            Path(self._root).mkdir(parents=True, exist_ok=True)
        else:
            self._fs.makedirs(self._root, exist_ok=True)

    def exists(self, name: str) -> bool:
        """Whether a file of that name is there."""
        return os.path.exists(self.path(name)) if self.is_local else bool(self._fs.exists(self.path(name)))

    def read_bytes(self, name: str) -> bytes:
        """A file's bytes."""
        if self.is_local:
            return Path(self.path(name)).read_bytes()
        return bytes(self._fs.cat_file(self.path(name)))

    def write(self, name: str, data: bytes) -> None:
        """Write a whole file, replacing any old one: under a temp name first, then renamed into place."""
        if self.is_local:
            write_atomic(self.path(name), data, overwrite=True)
            return
        folder, _, base = name.rpartition("/")
        if folder:
            self._fs.makedirs(self.path(folder), exist_ok=True)  # a no-op on object stores, needed on disks
        temp = self.path(
            f"{folder}/.{base}.{uuid.uuid4().hex[:8]}.tmp" if folder else f".{base}.{uuid.uuid4().hex[:8]}.tmp"
        )
        self._fs.pipe_file(temp, data)
        try:
            self._fs.mv(temp, self.path(name))
        except BaseException:
            self._fs.rm_file(temp)
            raise

    def sweep_temps(self) -> list[str]:
        """Delete temp files left by writers that were killed mid-write (call when no writer runs); returns them."""
        if self.is_local:
            found = [p for p in Path(self._root).glob(".*.tmp") if p.is_file()]
            for p in found:
                p.unlink(missing_ok=True)
            return [p.name for p in found]
        found = list(self._fs.glob(self.path(".*.tmp")))
        for path in found:
            self._fs.rm_file(path)
        return [str(path).rsplit("/", 1)[-1] for path in found]

    def open(self, name: str) -> Any:
        """A file opened for reading bytes (a context manager), for reading it in pieces."""
        return open(self.path(name), "rb") if self.is_local else self._fs.open(self.path(name), "rb")

    def size(self, name: str) -> int:
        """A file's size in bytes."""
        return os.path.getsize(self.path(name)) if self.is_local else int(self._fs.size(self.path(name)))

    def glob(self, pattern: str) -> list[str]:
        """Names (relative to the location) of the files matching a glob pattern such as `*/job.json`."""
        if self.is_local:
            return [str(p.relative_to(self._root)) for p in Path(self._root).glob(pattern)]
        prefix = self._root.rstrip("/") + "/"
        return [str(p).removeprefix(prefix) for p in self._fs.glob(self.path(pattern))]

    def remove_folder(self, name: str) -> None:
        """Delete a folder and everything in it, if it exists."""
        if self.is_local:
            shutil.rmtree(self.path(name), ignore_errors=True)
        elif self._fs.exists(self.path(name)):
            self._fs.rm(self.path(name), recursive=True)

    def remove(self, name: str) -> None:
        """Delete a file if it exists."""
        if self.exists(name):
            if self.is_local:
                os.unlink(self.path(name))
            else:
                self._fs.rm_file(self.path(name))
