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

It is the step a decode loop of our own calls (`bench/decode_rows.py` times it against the eager step and against
the memory-bandwidth floor); tests/backends/test_musicgen_step.py checks its logits against transformers' step.
"""

from __future__ import annotations

from typing import Any


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
