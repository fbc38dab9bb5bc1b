"""TEST-ONLY stand-in for torchaudio, which has no build for the torch (2.13 CPU) installed here.

audiocraft imports torchaudio at module level. Inference needs one piece of it, `transforms.Spectrogram`
(MusicGen-Melody's chroma), implemented here with `torch.stft` exactly as torchaudio defines it; every other
name exists so imports succeed, and raises if called. Only tests/engines/ put this folder on sys.path; it is
never shipped with soundforge. Users install a real torchaudio that matches their torch (docs/providers/
audiocraft.md).
"""

from . import transforms

__version__ = "0.0.0+soundforge-test-stand-in"


def _missing(*args: object, **kwargs: object) -> None:
    raise NotImplementedError("torchaudio stand-in (tests only): not implemented")


load = save = info = _missing
__all__ = ["info", "load", "save", "transforms"]
