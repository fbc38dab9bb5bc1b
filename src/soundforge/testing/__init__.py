"""Helpers for testing code built on soundforge without weights or network: tiny random models.

Each builder writes a complete, loadable model folder (config, weights, tokenizer) so the real
loading and generation code paths run, in seconds, on a CPU.
"""

from ..backends.cloud import BLOCK_REMOTE_ENV

__all__ = ["BLOCK_REMOTE_ENV"]
