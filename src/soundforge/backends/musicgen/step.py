"""MusicGen's decoder step written out: one token per codebook for every row, from a KV cache allocated once.

transformers' eager step (`MusicgenForCausalLM` with its dynamic cache) spends a step's time in three places the
architecture does not need: the cache grows by concatenation (every step copies every layer's keys and values: 13 %
of a musicgen-small step on a 2-core CPU), the text's cross-attention keys and values are kept per layer behind a
cache object, and each projection is its own product. `DecoderStep` keeps the same weights and the same operations
in the same order (layer norm, attention, GELU, the heads), with:

- one key/value buffer per layer of `max_steps` positions, written in place;
- the cross-attention keys and values of the text computed once, at construction;
- the self-attention's query, key and value projections as one product (their rows stacked);
- optionally the weights in another dtype (`dtype=torch.bfloat16`: half the bytes a step reads).

`stepping()` puts it under transformers' own generation loop (`[providers.musicgen] decode = "fast"`);
`bench/decode_rows.py` times it against the eager step and the memory-bandwidth floor; tests/backends/
test_musicgen_step.py checks its logits against transformers' step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...errors import ConfigurationError


class DecoderStep:
    """The decoder of a `MusicgenForCausalLM` (or of `MusicgenForConditionalGeneration.decoder`) as a step function.

    `encoder_states` are the projected text states, one row per decoder row (`[rows, text_tokens, hidden]`, the
    conditional and unconditional rows of guidance included), and `encoder_mask` (`[rows, text_tokens]`, 1 for a
    token, 0 for padding; None: every token) says which of them the cross-attention sees: as in transformers, a
    boolean mask, and a row with none (guidance's unconditional rows) attends to nothing and adds zeros.
    `max_steps` bounds the positions the cache holds.
    Calling it with `tokens` (`[rows, codebooks]`, integer) returns the logits of the next token of each codebook
    (`[rows, codebooks, vocab]`, float32) and advances the position by one.
    """

    def __init__(
        self, model: Any, encoder_states: Any, max_steps: int, dtype: Any = None, encoder_mask: Any = None
    ) -> None:
        import torch

        decoder = model.model.decoder if hasattr(model, "model") else model.decoder.model.decoder
        heads_module = model.lm_heads if hasattr(model, "lm_heads") else model.decoder.lm_heads
        config = decoder.config
        self.torch = torch
        self.dtype = dtype or next(decoder.parameters()).dtype
        self.rows = int(encoder_states.shape[0])
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.scale = self.head_dim**-0.5
        self.max_steps = max_steps
        self.position = 0
        self.encoder_mask = None if encoder_mask is None else encoder_mask.bool()[:, None, None, :]

        def weight(linear: Any) -> Any:
            return linear.weight.detach().to(self.dtype)

        def norm(layer_norm: Any) -> tuple[Any, Any, float]:
            return (weight(layer_norm), layer_norm.bias.detach().to(self.dtype), layer_norm.eps)

        self.embeddings = [weight(table) for table in decoder.embed_tokens]
        self.positions = decoder.embed_positions.weights.detach()
        if self.positions.shape[0] < max_steps:
            decoder.embed_positions.make_weights(max_steps, config.hidden_size)
            self.positions = decoder.embed_positions.weights.detach()
        self.positions = self.positions.to(self.dtype)
        states = encoder_states.to(self.dtype)
        self.layers = []
        with torch.inference_mode():
            for layer in decoder.layers:
                attn, cross = layer.self_attn, layer.encoder_attn
                qkv = torch.cat([weight(attn.q_proj), weight(attn.k_proj), weight(attn.v_proj)]).contiguous()
                cross_k = self._split(torch.nn.functional.linear(states, weight(cross.k_proj)))
                cross_v = self._split(torch.nn.functional.linear(states, weight(cross.v_proj)))
                cache_shape = (self.rows, self.heads, max_steps, self.head_dim)
                self.layers.append(
                    {
                        "norm1": norm(layer.self_attn_layer_norm),
                        "qkv": qkv,
                        "out": weight(attn.out_proj),
                        "norm2": norm(layer.encoder_attn_layer_norm),
                        "cross_q": weight(cross.q_proj),
                        "cross_k": cross_k,
                        "cross_v": cross_v,
                        "cross_out": weight(cross.out_proj),
                        "norm3": norm(layer.final_layer_norm),
                        "fc1": weight(layer.fc1),
                        "fc2": weight(layer.fc2),
                        "keys": torch.zeros(cache_shape, dtype=self.dtype),
                        "values": torch.zeros(cache_shape, dtype=self.dtype),
                    }
                )
        self.final_norm = norm(decoder.layer_norm)
        self.lm_heads = [weight(head) for head in heads_module]
        self.activation = layer.activation_fn

    def _split(self, states: Any) -> Any:
        """[rows, length, hidden] -> [rows, heads, length, head_dim]."""
        rows, length, _ = states.shape
        return states.view(rows, length, self.heads, self.head_dim).transpose(1, 2)

    def __call__(self, tokens: Any) -> Any:
        torch = self.torch
        functional = torch.nn.functional
        if self.position >= self.max_steps:
            raise IndexError(f"the cache holds {self.max_steps} positions; all are used")
        at = self.position
        with torch.inference_mode():
            hidden = sum(table[tokens[:, k]] for k, table in enumerate(self.embeddings))
            hidden = hidden + self.positions[at]  # (transformers' decoder applies no embedding scale)
            hidden = hidden.unsqueeze(1)  # [rows, 1, hidden]
            size = hidden.shape[-1]
            for layer in self.layers:
                w, b, eps = layer["norm1"]
                normed = functional.layer_norm(hidden, (size,), w, b, eps)
                q, k, v = functional.linear(normed, layer["qkv"]).split(size, dim=-1)
                layer["keys"][:, :, at] = k.view(self.rows, self.heads, self.head_dim)
                layer["values"][:, :, at] = v.view(self.rows, self.heads, self.head_dim)
                attended = functional.scaled_dot_product_attention(
                    self._split(q),
                    layer["keys"][:, :, : at + 1],
                    layer["values"][:, :, : at + 1],
                    scale=self.scale,
                )
                hidden = hidden + functional.linear(attended.transpose(1, 2).reshape(self.rows, 1, size), layer["out"])
                w, b, eps = layer["norm2"]
                normed = functional.layer_norm(hidden, (size,), w, b, eps)
                attended = functional.scaled_dot_product_attention(
                    self._split(functional.linear(normed, layer["cross_q"])),
                    layer["cross_k"],
                    layer["cross_v"],
                    attn_mask=self.encoder_mask,
                    scale=self.scale,
                )
                hidden = hidden + functional.linear(
                    attended.transpose(1, 2).reshape(self.rows, 1, size), layer["cross_out"]
                )
                w, b, eps = layer["norm3"]
                normed = functional.layer_norm(hidden, (size,), w, b, eps)
                hidden = hidden + functional.linear(
                    self.activation(functional.linear(normed, layer["fc1"])), layer["fc2"]
                )
            w, b, eps = self.final_norm
            hidden = functional.layer_norm(hidden, (size,), w, b, eps)[:, 0]
            logits = torch.stack([functional.linear(hidden, head) for head in self.lm_heads], dim=1)
        self.position += 1
        return logits.float()


class _StepCache:
    """What transformers' generation loop sees of the cache while `DecoderStep` steps: its length, so that each call
    after the first passes only the new tokens."""

    def __init__(self, step: DecoderStep) -> None:
        self.step = step

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.step.position


_PATCHING = threading.Lock()


def _same_mask(a: Any, b: Any) -> bool:
    import torch

    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


@contextmanager
def stepping(model: Any, new_tokens: int) -> Iterator[None]:
    """Within the block, `model.generate()` (a `MusicgenForConditionalGeneration`) runs its decoder through
    `DecoderStep`: the same sampling, guidance, delay pattern and stopping criteria (transformers' loop), our step.

    The step is built at the decoder's first call of a sequence (from the text states and mask it is given, with room
    for the tokens it is given and `new_tokens` more); a call without a cache starts a sequence again at position 0,
    as transformers' own decoder does. Calls are serialised: the decoder's `forward` is replaced for the block."""
    import torch
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    decoder = model.decoder
    if not hasattr(decoder, "lm_heads") or not hasattr(decoder.model.decoder.layers[0], "encoder_attn"):
        raise ConfigurationError(
            'decode = "fast" is written for text-conditioned MusicGen: MusicGen-Melody\'s decoder has no '
            "cross-attention",
            hint='use decode = "eager" (or "static") for melody models',
        )
    codebooks = decoder.num_codebooks
    built: dict[str, Any] = {}

    def forward(
        input_ids: Any = None,
        encoder_hidden_states: Any = None,
        encoder_attention_mask: Any = None,
        cache: Any = None,
        **_: Any,
    ) -> Any:
        if not isinstance(cache, _StepCache):
            # A new sequence: transformers' generation calls its decoder once without a cache before its loop, so
            # the step of that call is kept and started again when it is for the same text with room enough.
            length = input_ids.shape[-1] + new_tokens + 1
            kept: DecoderStep | None = built.get("step")
            same = (
                kept is not None
                and kept.max_steps >= length
                and torch.equal(built["states"], encoder_hidden_states)
                and _same_mask(built["mask"], encoder_attention_mask)
            )
            if kept is None or not same:
                kept = DecoderStep(model.decoder, encoder_hidden_states, length, encoder_mask=encoder_attention_mask)
                built.update(step=kept, states=encoder_hidden_states, mask=encoder_attention_mask)
            kept.position = 0
            cache = _StepCache(kept)
        tokens = input_ids.reshape(-1, codebooks, input_ids.shape[-1])
        for position in range(tokens.shape[-1]):
            logits = cache.step(tokens[:, :, position])
        return CausalLMOutputWithCrossAttentions(logits=logits.reshape(-1, 1, logits.shape[-1]), cache=cache)

    with _PATCHING:
        decoder.forward = forward
        try:
            yield
        finally:
            del decoder.forward
