"""soundforge.backends.musicgen.step: MusicGen's decoder step written out, checked against transformers' own step
(`MusicgenForCausalLM` with its KV cache) on random models built from configs, step after step."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from soundforge.backends.musicgen.step import DecoderStep  # noqa: E402
from soundforge.testing.musicgen import _configs  # noqa: E402

STEPS = 40


def reference_and_step(dtype=None, **shape):
    _, _, config = _configs(full_size=False, stereo=False)
    for key, value in shape.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model = transformers.MusicgenForCausalLM(config).eval()
    rows, codebooks = 2, config.num_codebooks
    states = torch.randn(rows, 7, config.hidden_size)
    return model, states, DecoderStep(model, states, max_steps=STEPS + 1, dtype=dtype), rows, codebooks, config


def test_each_step_gives_transformers_logits_and_the_same_tokens() -> None:
    model, states, step, rows, codebooks, config = reference_and_step()
    tokens = torch.full((rows, codebooks), config.bos_token_id)
    cache = None
    with torch.inference_mode():
        for _ in range(STEPS):
            out = model(
                input_ids=tokens.reshape(rows * codebooks, 1), encoder_hidden_states=states, cache=cache, use_cache=True
            )
            cache = out.past_key_values
            expected = out.logits[:, -1].reshape(rows, codebooks, -1)  # [rows, codebooks, vocab]
            ours = step(tokens)
            assert ours.shape == expected.shape
            torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
            assert torch.equal(ours.argmax(-1), expected.argmax(-1))
            tokens = expected.argmax(-1)


def test_a_text_mask_is_transformers_mask_padding_and_a_row_with_no_text_included() -> None:
    """Padded prompts in one batch, and guidance's unconditional rows (their whole text masked), as transformers
    masks them."""
    model, states, _, rows, codebooks, config = reference_and_step()
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]])
    step = DecoderStep(model, states, max_steps=STEPS, encoder_mask=mask)
    unmasked = DecoderStep(model, states, max_steps=STEPS)
    tokens = torch.full((rows, codebooks), config.bos_token_id)
    cache = None
    with torch.inference_mode():
        for _ in range(8):
            out = model(
                input_ids=tokens.reshape(rows * codebooks, 1),
                encoder_hidden_states=states,
                encoder_attention_mask=mask,
                cache=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            expected = out.logits[:, -1].reshape(rows, codebooks, -1)
            ours = step(tokens)
            torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
            assert not torch.allclose(unmasked(tokens), expected)  # the mask matters
            tokens = expected.argmax(-1)


def test_in_bfloat16_the_tokens_mostly_agree_and_a_full_cache_is_refused() -> None:
    model, states, step, rows, codebooks, config = reference_and_step(dtype=torch.bfloat16)
    exact = DecoderStep(model, states, max_steps=STEPS + 1)
    tokens = torch.full((rows, codebooks), config.bos_token_id)
    agree = []
    for _ in range(STEPS):
        reference = exact(tokens)
        agree.append((step(tokens).argmax(-1) == reference.argmax(-1)).float().mean().item())
        tokens = reference.argmax(-1)
    # Rounding to bfloat16 moves a close call now and then (here about 2 tokens in 100), not the rest.
    assert sum(agree) / STEPS >= 0.9, agree
    exact(tokens)
    with pytest.raises(IndexError, match="holds 41 positions"):
        exact(tokens)
