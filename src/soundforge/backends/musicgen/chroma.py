"""MusicGen-Melody's chroma conditioning computed with numpy, without torchaudio.

transformers' `MusicgenMelodyFeatureExtractor` needs torchaudio, which cannot load beside a CPU-only torch
from PyPI. Its recipe is simple, and reproduced here step by step: mono audio at 32 kHz, a centred,
reflect-padded Hann STFT (n_fft 16384, hop 4096) as power spectrum, librosa-style chroma filters, then a
one-hot of the strongest chroma bin per frame. The normalisations the extractor applies (window energy,
max-norm) do not change that argmax, so the one-hot result is the same; tests check it against the
extractor's own code.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 32000
N_FFT = 16384
HOP = 4096
NUM_CHROMA = 12


@lru_cache(maxsize=4)
def _filters(sample_rate: int, n_fft: int, num_chroma: int) -> npt.NDArray[np.float64]:
    from transformers.audio_utils import chroma_filter_bank

    return np.asarray(
        chroma_filter_bank(sampling_rate=sample_rate, num_frequency_bins=n_fft, tuning=0, num_chroma=num_chroma),
        dtype=np.float64,
    )


def power_spectrogram(wave: npt.NDArray[np.floating], n_fft: int = N_FFT, hop: int = HOP) -> npt.NDArray[np.float64]:
    """|STFT|² of a mono signal, frames centred (reflect padding) like torch.stft(center=True): (bins, frames)."""
    signal = np.asarray(wave, dtype=np.float64)
    if signal.shape[0] < n_fft:  # the extractor zero-pads short clips to one window first
        pad = n_fft - signal.shape[0]
        signal = np.pad(signal, (pad // 2, pad // 2 + pad % 2))
    padded = np.pad(signal, (n_fft // 2, n_fft // 2), mode="reflect")
    frames = 1 + (padded.shape[0] - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann, as torch.hann_window
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(padded[index] * window, axis=1)
    return (np.abs(spectrum) ** 2).T


def melody_chroma(
    wave: npt.NDArray[np.floating],
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    hop: int = HOP,
    num_chroma: int = NUM_CHROMA,
) -> npt.NDArray[np.float32]:
    """One-hot chroma (frames, num_chroma) of a mono signal already at `sample_rate`."""
    raw = _filters(sample_rate, n_fft, num_chroma) @ power_spectrogram(wave, n_fft, hop)  # (chroma, frames)
    one_hot = np.zeros((raw.shape[1], num_chroma), dtype=np.float32)
    one_hot[np.arange(raw.shape[1]), np.argmax(raw, axis=0)] = 1.0
    return one_hot
