"""What an agent can ask soundforge, as plain functions over a `Client` (the MCP server is one way to reach them).

Each tool validates its input as the library does (a typed error that says what to fix, before any work), calls the
library, and answers JSON-ready data: the saved file, its licence in words an agent can act on, the provenance that
matters to a caller and the cost. Files are written under one output folder, never elsewhere, and never overwritten.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.base import ProgressCallback
from ..client import Client
from ..errors import InvalidRequestError
from ..licences.licensing import License
from ..ops.pricing import Cost
from ..request import build_request
from ..result import Generation, Track

#: Saved files as MCP resources (`soundforge://output/NAME`): read over the protocol itself, for a host that talks to
#: the server over HTTP and cannot open its paths.
RESOURCE_PREFIX = "soundforge://output/"


@dataclass(frozen=True)
class ToolBox:
    """The tools, bound to a client and to the folder they write in."""

    client: Client
    output_dir: Path

    async def agenerate(
        self,
        prompt: str,
        *,
        provider: str | None = None,
        fields: dict[str, Any] | None = None,
        output_format: str = "wav",
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Generate and save one track (or a set of variations, or a mix and its stems) under the output folder,
        without blocking the event loop; cancelling the task cancels the generation."""
        import asyncio

        request = build_request(prompt, dict(fields or {}))
        generation = await self.client.agenerate(request, provider=provider, on_progress=on_progress)
        return await asyncio.to_thread(self._saved, generation, request.prompt, output_format)

    def separate(
        self, path: str, stems: Sequence[str], *, provider: str | None = None, output_format: str = "wav"
    ) -> dict[str, Any]:
        """Split a file under the output folder into stems, saved beside it."""
        source = self._inside(path)
        if provider:
            generation = self.client.separate(str(source), stems, provider=provider)
        else:
            generation = self.client.separate(str(source), stems)
        return self._saved(generation, source.stem, output_format)

    def verify(self, path: str) -> dict[str, Any]:
        """Whether a file under the output folder still holds the audio soundforge wrote, and what its record says."""
        from ..output.inspect import verify

        result = verify(self._inside(path))
        fields = result.record.fields
        return {
            "status": result.status,
            "provider": fields.get("PROVIDER"),
            "model": fields.get("MODEL"),
            "license": fields.get("LICENSE"),
            "commercial_use": fields.get("COMMERCIAL_USE"),
            "adapters": fields.get("ADAPTERS"),
            "c2pa": result.c2pa,
            "signed": bool(result.c2pa),
        }

    def providers(self) -> list[dict[str, Any]]:
        """Every provider: whether it runs here, its default model's licence and the licence policy's verdict."""
        return [status.to_dict() for status in self.client.providers()]

    def estimate_cost(
        self, prompt: str, *, provider: str | None = None, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Where the request would go and what it may cost (every take counted), decided as the call would be:
        nothing runs, nothing is sent."""
        plan = self.client.plan(build_request(prompt, dict(fields or {})), provider=provider)
        chosen = plan.chosen
        return {
            "provider": chosen.backend.name,
            "model": chosen.model,
            "cost": cost_dict(plan.estimate),
            "license": license_dict(plan.license or chosen.license),
            "skipped": [{"provider": a.provider, "reason": a.error} for a in plan.skipped],
        }

    def file_bytes(self, name: str) -> bytes:
        """A saved file's bytes by its name in the output folder (what the MCP resource `soundforge://output/NAME`
        reads, for hosts that cannot open the server's paths)."""
        return self._inside(name).read_bytes()

    def _inside(self, path: str) -> Path:
        """A path the caller names, refused unless it lies in the output folder (an agent must not make the server
        read a file of its choosing)."""
        root = self.output_dir.resolve()
        target = (root / path).resolve()  # an absolute path replaces root, and is checked the same way
        if not target.is_relative_to(root):
            raise InvalidRequestError(
                f"{path!r} is outside the output folder", field="path", hint=f"name a file in {root}"
            )
        if not target.is_file():
            raise InvalidRequestError(f"{path!r} is not a file in the output folder", field="path")
        return target

    def _saved(self, generation: Generation, title: str, output_format: str) -> dict[str, Any]:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        target = self.output_dir / f"{slug(title)}-{uuid.uuid4().hex[:8]}.{output_format}"
        paths = generation.save(target)
        return {
            "files": [track_dict(track, path) for track, path in zip(generation.tracks, paths, strict=True)],
            "license": license_dict(generation.license),
            "cost": cost_dict(generation.provenance.cost),
        }


def slug(text: str, length: int = 40) -> str:
    """A file-name-safe start of `text` ("Calm piano, 70 BPM!" -> "calm-piano-70-bpm")."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:length].rstrip("-") or "track"


def track_dict(track: Track, path: Path) -> dict[str, Any]:
    """One saved track as a tool answers it."""
    provenance = track.provenance
    return {
        "path": str(path),
        "uri": path.resolve().as_uri(),
        "resource": f"{RESOURCE_PREFIX}{path.name}",
        "role": track.role,
        "duration": round(track.duration, 3),
        "sample_rate": track.sample_rate,
        "provider": provenance.provider,
        "model": provenance.model,
        "seed": provenance.seed,
        "adapters": provenance.adapters,
        "substitution": provenance.substitution,
    }


def license_dict(license: License) -> dict[str, Any]:
    """A licence in the words an agent acts on: may it be used commercially, must it be credited, under what."""
    return {
        "id": license.id,
        "summary": license.summary(),
        "commercial_use": license.commercial_use.value,
        "condition": license.condition,
        "attribution": license.attribution if license.attribution_required else None,
        "url": license.url,
    }


def cost_dict(cost: Cost | None) -> dict[str, Any] | None:
    """A cost as JSON (None: not known)."""
    return None if cost is None else cost.model_dump(mode="json")


__all__ = ["ToolBox", "cost_dict", "license_dict", "slug", "track_dict"]
