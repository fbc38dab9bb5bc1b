"""TEST-ONLY: `Spectrogram` as torchaudio computes it; the other transforms are names that raise when used."""

from __future__ import annotations

import torch


class Spectrogram(torch.nn.Module):
    """torchaudio.transforms.Spectrogram for the arguments audiocraft passes (power spectrogram, Hann window)."""

    def __init__(
        self,
        n_fft: int = 400,
        win_length: int | None = None,
        hop_length: int | None = None,
        pad: int = 0,
        power: float | None = 2.0,
        normalized: bool = False,
        center: bool = True,
        pad_mode: str = "reflect",
        onesided: bool = True,
    ) -> None:
        super().__init__()
        self.n_fft, self.win_length = n_fft, win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        self.pad, self.power, self.normalized = pad, power, normalized
        self.center, self.pad_mode, self.onesided = center, pad_mode, onesided
        self.register_buffer("window", torch.hann_window(self.win_length))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.pad > 0:
            waveform = torch.nn.functional.pad(waveform, (self.pad, self.pad), "constant")
        shape = waveform.size()
        spec = torch.stft(
            waveform.reshape(-1, shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=self.center,
            pad_mode=self.pad_mode,
            normalized=False,
            onesided=self.onesided,
            return_complex=True,
        )
        spec = spec.reshape(shape[:-1] + spec.shape[-2:])
        if self.normalized:  # torchaudio's "window" normalisation: divide by the window's L2 norm
            spec = spec / self.window.pow(2.0).sum().sqrt()
        if self.power is None:
            return spec
        return spec.abs().pow(self.power)


class _Missing(torch.nn.Module):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise NotImplementedError(f"torchaudio stand-in (tests only): {type(self).__name__} is not implemented")


class MelSpectrogram(_Missing):
    pass


class Loudness(_Missing):
    pass


class Resample(_Missing):
    pass
