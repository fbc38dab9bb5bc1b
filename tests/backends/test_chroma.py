"""The numpy chroma equals transformers' MusicgenMelodyFeatureExtractor output.

torchaudio cannot load beside the CPU torch here, so the extractor's own feature function runs with one
stand-in, defined in this test only: `TorchaudioSpectrogramStandIn`, a copy of what
`torchaudio.transforms.Spectrogram(n_fft, win_length=n_fft, hop_length, power=2, center=True, pad=0,
normalized=True)` computes (torchaudio.functional.spectrogram: torch.stft with a periodic Hann window,
reflect padding, divided by the window's L2 norm, then |.|^2).
"""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers.audio_utils import chroma_filter_bank  # noqa: E402
from transformers.models.musicgen_melody.feature_extraction_musicgen_melody import (  # noqa: E402
    MusicgenMelodyFeatureExtractor,
)

from soundforge.backends.musicgen.chroma import HOP, N_FFT, SAMPLE_RATE, melody_chroma  # noqa: E402


class TorchaudioSpectrogramStandIn:
    """Stand-in for torchaudio.transforms.Spectrogram with the extractor's arguments (see module doc)."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        self.n_fft, self.hop = n_fft, hop_length
        self.window = torch.hann_window(n_fft)

    def __call__(self, waveform):
        shape = waveform.shape
        spec = torch.stft(
            waveform.reshape(-1, shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.n_fft,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        spec = spec / self.window.pow(2.0).sum().sqrt()
        spec = spec.reshape(shape[:-1] + spec.shape[-2:])
        return spec.abs().pow(2.0)


def extractor_chroma(wave: np.ndarray) -> np.ndarray:
    fake_self = types.SimpleNamespace(
        n_fft=N_FFT,
        spectrogram=TorchaudioSpectrogramStandIn(N_FFT, HOP),
        chroma_filters=torch.from_numpy(
            chroma_filter_bank(sampling_rate=SAMPLE_RATE, num_frequency_bins=N_FFT, tuning=0, num_chroma=12)
        ).float(),
    )
    waveform = torch.from_numpy(wave.astype(np.float32))[None, None, :]  # (batch, channel, samples)
    out = MusicgenMelodyFeatureExtractor._torch_extract_fbank_features(fake_self, waveform)
    return out[0].numpy()


@pytest.mark.parametrize("kind", ["two_tones", "noisy_chord", "short_clip"])
def test_numpy_chroma_matches_the_extractor(kind: str) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE * 3) / SAMPLE_RATE
    if kind == "two_tones":
        wave = np.where(t < 1.5, np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 329.63 * t))
    elif kind == "noisy_chord":
        wave = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)) + 0.3 * rng.standard_normal(t.size)
    else:
        wave = np.sin(2 * np.pi * 196 * t[: SAMPLE_RATE // 4])
    ours = melody_chroma(wave)
    theirs = extractor_chroma(wave)
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
