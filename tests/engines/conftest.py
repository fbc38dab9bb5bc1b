"""Environment of the audiocraft engine tests, run in their own process by tests/test_audiocraft.py.

TEST-ONLY stand-ins, never shipped:
- `tests/stand_ins/torchaudio`: torchaudio has no build for the torch installed here (see its docstring); the
  parent test puts that folder on PYTHONPATH for this process only.
- spaCy's `en_core_web_sm` pipeline: audiocraft's random `debug` model tokenises prompts with it, and it can only be
  downloaded from GitHub. A blank English pipeline (no lemmatiser, so lemmas off) tokenises the same words.
"""

from __future__ import annotations

import os
import tempfile

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
