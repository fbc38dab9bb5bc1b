"""Loudness: measure (ITU-R BS.1770-4 through pyloudnorm), estimate the true peak, and reach a LUFS target.

A loud target (-14 LUFS for streaming, -9 for a game's action cue) pushes the peaks of most music past a -1 dBTP
ceiling. Scaling down to honour the ceiling would miss the target (and leave the file quieter than before), so
the peaks are held under the ceiling by a look-ahead limiter instead, and the gain is raised until the
integrated loudness arrives. Everything is done in blocks, so a 10-minute track needs tens of megabytes, not GB.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidRequestError
from . import AudioArray

#: The loudness targets soundforge accepts (also the request's `loudness` range).
MIN_LUFS, MAX_LUFS = -70.0, 0.0
#: The true-peak ceiling every normalised file stays under.
DEFAULT_CEILING_DBTP = -1.0
#: Oversampling for the true-peak estimate (BS.1770-4 asks for at least 4x at 48 kHz).
OVERSAMPLE = 4
#: Samples per block for the true-peak estimate; each block carries a margin so the filter sees its neighbours.
_BLOCK = 1 << 16
_MARGIN = 64
#: Look-ahead and smoothing of the limiter, in seconds: short enough to leave transients their shape.
_LOOKAHEAD_S = 0.005
#: How close to the target counts as reached (LU), and how many gain corrections are tried.
_TOLERANCE_LU = 0.1
_MAX_PASSES = 8


def check_target(target_lufs: float) -> float:
    """Refuse a loudness target outside [-70, 0] LUFS (a positive target is no loudness at all)."""
    if not np.isfinite(target_lufs) or not MIN_LUFS <= target_lufs <= MAX_LUFS:
        raise InvalidRequestError(
            f"loudness target {target_lufs:g} LUFS is outside {MIN_LUFS:g} .. {MAX_LUFS:g}",
            field="loudness",
            hint="streaming services use about -14, broadcast -23",
        )
    return float(target_lufs)


def integrated_loudness(audio: AudioArray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, measured with pyloudnorm); -inf for silence."""
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate)
    block = meter.block_size
    if audio.shape[1] < int(block * sample_rate):
        raise InvalidRequestError(
            f"audio shorter than {block:g} s cannot be loudness-measured",
            field="loudness",
            hint="drop the loudness target for very short clips",
        )
    return float(meter.integrated_loudness(audio.T.astype(np.float64)))


def peak_envelope(audio: AudioArray, oversample: int = OVERSAMPLE) -> np.ndarray:
    """Per sample, the largest magnitude of any channel between it and the next sample (band-limited, oversampled).

    Its maximum is the true peak. Computed block by block with polyphase resampling: memory stays bounded by the
    block size whatever the length.
    """
    from scipy.signal import resample_poly

    channels, n = audio.shape
    envelope = np.empty(n, dtype=np.float32)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        lo, hi = max(0, start - _MARGIN), min(n, stop + _MARGIN)
        up = resample_poly(audio[:, lo:hi].astype(np.float64), oversample, 1, axis=1)
        offset = (start - lo) * oversample
        part = np.abs(up[:, offset : offset + (stop - start) * oversample])
        part = part.reshape(channels, stop - start, oversample).max(axis=(0, 2))
        envelope[start:stop] = np.maximum(part, np.abs(audio[:, start:stop]).max(axis=0))
    return envelope


def true_peak(audio: AudioArray, oversample: int = OVERSAMPLE) -> float:
    """Estimate the true peak (linear) by band-limited oversampling, as BS.1770 asks."""
    if audio.shape[1] < 2:
        return float(np.max(np.abs(audio)))
    return float(peak_envelope(audio, oversample).max())


def limit(audio: AudioArray, sample_rate: int, ceiling: float) -> AudioArray:
    """Hold the true peak under `ceiling` (linear) with a look-ahead limiter; audio under it passes unchanged.

    The gain needed at each sample is spread over a short window before and after it (a minimum filter, then a
    moving average no wider than that window), so the gain is never above what any nearby peak needs and moves
    smoothly instead of clipping.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    envelope = peak_envelope(audio)
    if envelope.max() <= ceiling:
        return audio
    # A little headroom under the ceiling: the oversampled estimate of the limited signal is not exactly the
    # product of the gain and the estimate of the original.
    needed = np.minimum(1.0, (ceiling * 0.995) / np.maximum(envelope, 1e-12)).astype(np.float32)
    window = max(3, int(_LOOKAHEAD_S * sample_rate) | 1)
    gain = uniform_filter1d(minimum_filter1d(needed, 2 * window + 1, mode="nearest"), window, mode="nearest")
    limited = (audio * gain[np.newaxis, :]).astype(np.float32)
    peak = true_peak(limited)
    if peak > ceiling:  # rounding: never leave the ceiling passed
        limited *= np.float32(ceiling / peak)
    return np.asarray(limited, dtype=np.float32)


def normalize_loudness(
    audio: AudioArray, sample_rate: int, target_lufs: float, true_peak_dbtp: float = DEFAULT_CEILING_DBTP
) -> tuple[AudioArray, float]:
    """Bring `audio` to `target_lufs` with its true peak under `true_peak_dbtp`; returns it and its measured LUFS.

    Quiet targets are a plain gain. Loud ones raise the gain and limit the peaks, correcting the gain by what the
    measurement still lacks until it is within 0.1 LU. Silence is returned as it is (-inf LUFS).
    """
    check_target(target_lufs)
    current = integrated_loudness(audio, sample_rate)
    if not np.isfinite(current):
        return audio, current
    ceiling = 10.0 ** (true_peak_dbtp / 20.0)
    gain_db = target_lufs - current
    result, measured = audio, current
    for _ in range(_MAX_PASSES):
        result = limit((audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32), sample_rate, ceiling)
        measured = integrated_loudness(result, sample_rate)
        missing = target_lufs - measured
        if abs(missing) <= _TOLERANCE_LU:
            break
        gain_db += missing
    return result, measured
