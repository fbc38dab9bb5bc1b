"""SDK / direct timing that can resolve 2 %: both calls alternated in one process, the order swapped every round.

A ratio of two medians taken at different times moves with the machine (a warm cache, another process, the CPU's
clock); a ratio taken within each round, with the two calls back to back and each going first every other round,
cancels most of that. `alternate` runs the rounds; `sdk_direct_row` reports the median of the per-round ratios
with their spread (min-max and the interquartile range), so a claim of <= 1.02 says whether the measurement can
tell 1.02 from 1.00.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

#: Rounds below this cannot put a median and an interquartile range on the ratio.
MIN_ROUNDS = 5


def alternate(
    direct: Callable[[], Any], sdk: Callable[[], Any], rounds: int = MIN_ROUNDS
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time each side once per round, direct first in even rounds and SDK first in odd ones.

    Returns the seconds of each side per round and each side's last result (to check the audio is identical).
    """
    times: dict[str, list[float]] = {"direct": [], "sdk": []}
    results: dict[str, Any] = {}
    calls = {"direct": direct, "sdk": sdk}
    for round_ in range(max(rounds, MIN_ROUNDS)):
        for side in ("direct", "sdk") if round_ % 2 == 0 else ("sdk", "direct"):
            start = time.perf_counter()
            results[side] = calls[side]()
            times[side].append(time.perf_counter() - start)
    return times, results


def ratios(times: dict[str, list[float]]) -> list[float]:
    """SDK / direct of each round."""
    return [s / d for s, d in zip(times["sdk"], times["direct"], strict=True)]


def sdk_direct_row(label: str, times: dict[str, list[float]], detail: str = "") -> tuple[str, str, str]:
    """The row: the median per-round ratio, with its spread and the two sides' median seconds."""
    per_round = sorted(ratios(times))
    q1, _, q3 = statistics.quantiles(per_round, n=4)
    text = (
        f"median of {len(per_round)} alternated rounds (order swapped each round); per-round ratios "
        f"{per_round[0]:.3f}-{per_round[-1]:.3f}, IQR {q1:.3f}-{q3:.3f}; medians "
        f"{statistics.median(times['direct']):.2f} s direct, {statistics.median(times['sdk']):.2f} s SDK"
    )
    return label, f"{statistics.median(per_round):.3f}", f"{text}; {detail}" if detail else text
