"""TEST-ONLY stand-in for `t5-base` in a temporary Hugging Face cache: a tiny random T5 encoder with t5-base's
width (768, which audiocraft and stable-audio-tools hard-code) and a SentencePiece vocabulary trained here."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

REVISION = "0" * 40


def fabricate_t5_base(hf_home: Path, work: Path) -> Path:
    """Write the snapshot `from_pretrained("t5-base")` finds offline; returns its folder (idempotent)."""
    import sentencepiece as spm

    snapshot = hf_home / "hub" / "models--t5-base" / "snapshots" / REVISION
    if (snapshot / "config.json").is_file():
        return snapshot
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    corpus.write_text(
        "\n".join(
            [
                "calm piano with soft strings",
                "upbeat drums and bass",
                "dark techno at night",
                "a jazz guitar solo",
                "rain on a tin roof",
                "lofi beat for study",
            ]
            * 20
        )
    )
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(work / "spiece"),
        vocab_size=60,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir(exist_ok=True)
    (snapshot.parent.parent / "refs" / "main").write_text(REVISION)
    tokenizer = transformers.T5Tokenizer(vocab_file=str(work / "spiece.model"), extra_ids=0)
    tokenizer.save_pretrained(snapshot)
    config = transformers.T5Config(
        vocab_size=len(tokenizer), d_model=768, d_kv=16, d_ff=64, num_layers=1, num_heads=2, dropout_rate=0.0
    )
    torch.manual_seed(1)
    transformers.T5EncoderModel(config).eval().save_pretrained(snapshot)
    return snapshot
