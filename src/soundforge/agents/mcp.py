"""`soundforge mcp`: the agent tools (`agents.tools`) as a Model Context Protocol server, on the official `mcp` SDK
(extra `soundforge[mcp]`, imported here at once: the tools' signatures are their schemas, read at run time): stdio by
default, streamable HTTP on request, behind serve's bearer token.

Tools: `generate`, `separate`, `verify`, `providers`, `estimate_cost`. Each answers structured content (and the same
as JSON text, for clients that read only text). A refusal or failure is a tool error (`is_error`), its text the typed
error's message and hint, its structured content the error's `to_dict()` (code, field, hint, what passes the
policy…): what an agent needs to fix its call, never a traceback. A long generation reports MCP progress per step,
and a client's cancellation cancels it.
"""

import asyncio
import hmac
import json
import logging
from pathlib import Path
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, TextContent, ToolAnnotations

from ..backends.base import ProgressEvent
from ..client import Client
from ..errors import SoundforgeError
from .tools import RESOURCE_PREFIX, ToolBox

log = logging.getLogger("soundforge.mcp")

INSTRUCTIONS = (
    "soundforge makes music and sound effects with local models and cloud APIs, and answers every file with its "
    "licence (may it be used commercially? must it be credited?) and its provenance. Call `providers` to see what "
    "runs here and what the licence policy allows, `estimate_cost` before a paid call, `generate` to make and save "
    "audio, `separate` for stems and `verify` to check a file. A refused call says why and what to change."
)
OutputFormat = Literal["wav", "flac", "ogg", "mp3"]


def build_server(client: Client, output_dir: str | Path) -> Any:
    """The MCP server (an `mcp.server.MCPServer`) with soundforge's tools bound to `client` and `output_dir`."""
    tools = ToolBox(client, Path(output_dir))
    server: Any = MCPServer(name="soundforge", instructions=INSTRUCTIONS)

    def answer(data: Any) -> CallToolResult:
        structured = data if isinstance(data, dict) else {"result": data}
        text = json.dumps(structured, ensure_ascii=False, indent=1)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)

    def refusal(error: SoundforgeError) -> CallToolResult:
        return CallToolResult(
            content=[TextContent(type="text", text=f"{error.code}: {error}")],
            structured_content={"error": error.to_dict()},
            is_error=True,
        )

    @server.tool(  # type: ignore[untyped-decorator]
        annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True)
    )
    async def generate(
        prompt: str,
        ctx: Context,
        provider: str | None = None,
        duration: float | None = None,
        seed: int | None = None,
        lyrics: str | None = None,
        instrumental: bool | None = None,
        bpm: float | None = None,
        key: str | None = None,
        negative_prompt: str | None = None,
        fields: dict[str, Any] | None = None,
        output_format: OutputFormat = "wav",
    ) -> CallToolResult:
        """Generate audio from a text prompt and save it with its licence and provenance embedded. `provider` picks
        the model ("synth", "musicgen", "ace-step", "stability", …; default: the configured one, or the first that
        fits the request and the licence policy). `fields` takes any other request field by name (num_outputs,
        steps, guidance, loop, stems, adapters, time_signature, vocal_language, …). Answers the saved files, the
        licence (commercial use, attribution), the provider and model that made it, the seed and the cost."""
        given = {
            "duration": duration,
            "seed": seed,
            "lyrics": lyrics,
            "instrumental": instrumental,
            "bpm": bpm,
            "key": key,
            "negative_prompt": negative_prompt,
        }
        request_fields = {**(fields or {}), **{k: v for k, v in given.items() if v is not None}}
        try:
            return answer(
                await tools.agenerate(
                    prompt,
                    provider=provider,
                    fields=request_fields,
                    output_format=output_format,
                    on_progress=_progress_reporter(ctx),
                )
            )
        except SoundforgeError as error:
            return refusal(error)

    @server.tool(  # type: ignore[untyped-decorator]
        annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True)
    )
    async def separate(
        path: str, stems: list[str], provider: str | None = None, output_format: OutputFormat = "wav"
    ) -> CallToolResult:
        """Split an audio file in the output folder into stems ("vocals", "drums", "bass", …), each saved beside it
        with the source's licence and the separator's."""
        try:
            return answer(
                await asyncio.to_thread(tools.separate, path, stems, provider=provider, output_format=output_format)
            )
        except SoundforgeError as error:
            return refusal(error)

    @server.tool(  # type: ignore[untyped-decorator]
        annotations=ToolAnnotations(read_only_hint=True)
    )
    async def verify(path: str) -> CallToolResult:
        """Check that a file in the output folder still holds the audio soundforge wrote, and read its record: who
        made it, under what licence."""
        try:
            return answer(await asyncio.to_thread(tools.verify, path))
        except SoundforgeError as error:
            return refusal(error)
        except (OSError, ValueError) as error:
            return refusal(SoundforgeError(f"cannot read {path!r}: {error}"))

    @server.tool(  # type: ignore[untyped-decorator]
        annotations=ToolAnnotations(read_only_hint=True)
    )
    async def providers() -> CallToolResult:
        """Every provider: whether it runs here (and what it needs if not), its models, its default model's licence
        and whether the configured licence policy allows it, with the clause that decided."""
        return answer({"providers": await asyncio.to_thread(tools.providers)})

    @server.tool(  # type: ignore[untyped-decorator]
        annotations=ToolAnnotations(read_only_hint=True)
    )
    async def estimate_cost(
        prompt: str, provider: str | None = None, duration: float | None = None, fields: dict[str, Any] | None = None
    ) -> CallToolResult:
        """Where a request would go, under which licence, and what it may cost, decided as `generate` would decide
        it (policy, capabilities, budget), with nothing run and nothing sent."""
        request_fields = {**(fields or {}), **({"duration": duration} if duration is not None else {})}
        try:
            return answer(
                await asyncio.to_thread(tools.estimate_cost, prompt, provider=provider, fields=request_fields)
            )
        except SoundforgeError as error:
            return refusal(error)

    for suffix, mime in MIME_TYPES.items():
        register_files(server, tools, suffix, mime)
    return server


#: The audio formats a saved file may have, with the MIME type its resource reads as.
MIME_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"}


def register_files(server: Any, tools: ToolBox, suffix: str, mime: str) -> None:
    """The output folder's `.suffix` files as resources (`soundforge://output/NAME.suffix`, read as `mime`); the SDK
    rejects `..`, absolute paths and NUL in NAME, and the tools refuse anything outside the folder."""

    @server.resource(f"{RESOURCE_PREFIX}{{name}}.{suffix}", mime_type=mime)  # type: ignore[untyped-decorator]
    async def saved_file(name: str) -> bytes:
        """A file `generate` or `separate` saved, by the name its answer gave."""
        try:
            return await asyncio.to_thread(tools.file_bytes, f"{name}.{suffix}")
        except SoundforgeError as error:
            from mcp.server.mcpserver.exceptions import ResourceNotFoundError

            raise ResourceNotFoundError(str(error)) from None


def _progress_reporter(ctx: Any) -> Any:
    """A progress callback for the engine's thread that reports MCP progress on the server's event loop (the
    client sees it when its call carried a progress token; it is dropped otherwise)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def report(event: ProgressEvent) -> None:
        def send() -> None:
            task = loop.create_task(ctx.report_progress(event.done, event.total, event.phase))
            pending.add(task)
            task.add_done_callback(pending.discard)

        loop.call_soon_threadsafe(send)

    return report


def bearer_guard(app: Any, token: str) -> Any:
    """The streamable HTTP app behind serve's bearer token (`Authorization: Bearer <token>`, compared in constant
    time): 401 without it, before the MCP layer sees the request."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                body = json.dumps({"error": {"code": "unauthorized", "message": "a bearer token is required"}})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await app(scope, receive, send)

    return guarded


def serve_http(server: Any, host: str, port: int, token: str | None) -> None:
    """Run the server over streamable HTTP at http://HOST:PORT/mcp (behind the bearer token when one is set)."""
    import uvicorn

    app = server.streamable_http_app()
    if token:
        app = bearer_guard(app, token)
    elif host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("soundforge mcp answers on %s without a token: anyone who reaches it can generate", host)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
