"""Doors for agents: `soundforge mcp`, a Model Context Protocol server (`agents.mcp`) over the tools in
`agents.tools`, which hold no rule of their own: each is a call of the library (`Client`), so the configured
licence policy, budget and output folder apply as they do everywhere else."""
