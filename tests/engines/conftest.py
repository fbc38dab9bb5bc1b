"""Environment of the audiocraft engine tests, run in their own process by tests/test_audiocraft.py.

TEST-ONLY stand-ins, never shipped:
- `tests/stand_ins/torchaudio`: torchaudio has no build for the torch installed here (see its docstring); the
  parent test puts that folder on PYTHONPATH for this process only.
- torchvision, CLIP, clean-fid and scikit-image while k-diffusion is imported: its package `__init__` imports its
  training and evaluation helpers, which import them; sampling (all stable-audio-tools uses) needs none, and
  torchvision has no build for this torch. They are removed from `sys.modules` right after, so nothing else sees
  them.
- spaCy's `en_core_web_sm` pipeline: audiocraft's random `debug` model tokenises prompts with it, and it can only be
  downloaded from GitHub. A blank English pipeline (no lemmatiser, so lemmas off) tokenises the same words.
"""

from __future__ import annotations

import os
import sys
import tempfile
import types

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="soundforge-hf-")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import spacy

_blank = spacy.blank
spacy.load = lambda name, *args, **kwargs: _blank("en")  # stand-in for en_core_web_sm (see above)

from audiocraft.modules import conditioners  # noqa: E402

_init = conditioners.WhiteSpaceTokenizer.__init__


def _init_without_lemmas(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    _init(self, *args, **kwargs)
    self.lemma = False  # a blank pipeline has no lemmatiser


conditioners.WhiteSpaceTokenizer.__init__ = _init_without_lemmas  # type: ignore[method-assign]


class _Placeholder(types.ModuleType):
    """A module whose every attribute is a do-nothing placeholder (import-time names only)."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *a, **k: None})


_IMPORT_ONLY = [
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "clip",
    "cleanfid",
    "cleanfid.inception_torchscript",
    "skimage",
    "skimage.transform",
]
sys.modules.update({name: _Placeholder(name) for name in _IMPORT_ONLY})
try:
    import k_diffusion  # noqa: F401
    from stable_audio_tools.inference import generation  # noqa: F401
finally:
    for name in _IMPORT_ONLY:
        sys.modules.pop(name, None)
