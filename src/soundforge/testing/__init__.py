"""Helpers for testing code built on soundforge without weights or network: a backend from a function
(`FunctionBackend`), tiny random models (`soundforge.testing.musicgen`, `.stable_audio`, `.audiocraft`) and the
kill switch that keeps tests off real providers (`BLOCK_REMOTE_ENV`).

Each builder writes a complete, loadable model folder (config, weights, tokenizer) so the real
loading and generation code paths run, in seconds, on a CPU.
"""

from ..backends.cloud import BLOCK_REMOTE_ENV
from .function import FunctionBackend

__all__ = ["BLOCK_REMOTE_ENV", "FunctionBackend"]
