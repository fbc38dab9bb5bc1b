"""The attention MAGNeT runs on where xformers' kernels cannot: PyTorch's SDPA with xformers' contract, against a
straightforward attention written out (scores, mask, softmax, weighted sum) with the same masks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from soundforge.backends.audiocraft.attention import sdpa_attention, xformers_kernels_run  # noqa: E402


def reference(q, k, v, mask=None):
    """Attention by hand, in xformers' layout [batch, time, heads, dim]."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores + mask
    return torch.einsum("bhqk,bkhd->bqhd", torch.softmax(scores, dim=-1), v)


def restricted(seq_len: int, heads: int, batch: int, context: int = 5):
    """MAGNeT's mask as audiocraft builds and passes it: |query - key| <= context, padded to a multiple of 8 and
    cut back, repeated for each example (audiocraft 1.3.0 `lm_magnet._stage_attn_mask`, `transformer.py`)."""
    positions = torch.arange(seq_len)
    valid = (positions[:, None] - positions[None, :]).abs() <= context
    mask = torch.where(valid, 0.0, float("-inf")).repeat((1, heads, 1, 1))
    aligned = -(-seq_len // 8) * 8
    padded = torch.zeros((1, heads, aligned, aligned))
    padded[..., :seq_len, :seq_len] = mask
    return padded.repeat((batch, 1, 1, 1))[..., :seq_len, :seq_len]


@pytest.mark.parametrize("seq_len", [37, 50, 500])
def test_masked_attention_equals_the_written_out_one(seq_len: int) -> None:
    torch.manual_seed(seq_len)
    q, k, v = (torch.randn(2, seq_len, 4, 8) for _ in range(3))
    mask = restricted(seq_len, heads=4, batch=2)
    got = sdpa_attention(q, k, v, mask)
    assert got.shape == q.shape
    assert torch.allclose(got, reference(q, k, v, mask), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, reference(q, k, v), atol=1e-3)  # the window matters: it is not full attention
    assert torch.allclose(sdpa_attention(q, k, v), reference(q, k, v), atol=1e-5, rtol=1e-5)


def test_a_lower_triangular_mask_is_causal_and_other_biases_are_refused() -> None:
    class LowerTriangularMask:  # xformers' marker class, matched by name as xformers is not needed here
        pass

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 12, 2, 4) for _ in range(3))
    causal = torch.triu(torch.full((12, 12), float("-inf")), diagonal=1)
    assert torch.allclose(sdpa_attention(q, k, v, LowerTriangularMask()), reference(q, k, v, causal), atol=1e-5)
    with pytest.raises(TypeError, match="unsupported attention bias"):
        sdpa_attention(q, k, v, object())


def test_xformers_kernels_are_not_tried_on_a_cpu() -> None:
    assert xformers_kernels_run("cpu") is False
