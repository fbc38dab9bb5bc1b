"""Which modules are installed, asked without importing them: what an engine's `availability` names as missing."""

from __future__ import annotations

import importlib.util


def missing_modules(*modules: str) -> list[str]:
    """The modules of `modules` that cannot be imported here, without importing them: what an engine's
    `availability` names. A dotted name whose parent package is absent ("google.genai" with no `google`) is missing,
    not an error (`importlib.util.find_spec` raises ModuleNotFoundError for it)."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing
