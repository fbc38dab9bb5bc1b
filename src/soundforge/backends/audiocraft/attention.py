"""MAGNeT's attention without xformers' kernels: PyTorch's `scaled_dot_product_attention` with the same masks.

audiocraft's MAGNeT restricts the attention of every codebook after the first to a window of `subcodes_context`
frames on either side, passing that window as an additive mask. audiocraft sends a masked attention to one of two
places (audiocraft 1.3.0 `modules/transformer.py`, `StreamingMultiheadAttention.forward`):
- backend "xformers": `xformers.ops.memory_efficient_attention(q, k, v, mask)`, whose kernels need CUDA (on a CPU
  xformers has no operator for it: "No operator found for `memory_efficient_attention_forward`");
- backend "torch": `F.scaled_dot_product_attention(q, k, v, is_causal=mask is not None)`, which drops the mask and
  makes the attention causal instead: every codebook after the first is decoded from the wrong context (audiocraft
  #407, "MAGNeT models require xformers backend"; #593 reports the garbled audio).

`masked_attention()` runs MAGNeT on the "xformers" layout with `memory_efficient_attention` answered by
`sdpa_attention` below: the same inputs ([batch, time, heads, dim]), the same additive mask (or xformers'
`LowerTriangularMask`, as causal), the same 1/sqrt(dim) scale, computed by PyTorch. Where xformers' kernels can
run (CUDA), audiocraft's own xformers path is used instead. Loading a MAGNeT checkpoint sets audiocraft's global
backend to "xformers" (`loaders.load_lm_model_magnet`); the engine puts the previous backend back after loading,
so MusicGen and AudioGen through audiocraft in the same process keep theirs.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()


def sdpa_attention(query: Any, key: Any, value: Any, attn_bias: Any = None, p: float = 0.0, **kwargs: Any) -> Any:
    """`xformers.ops.memory_efficient_attention`'s contract on PyTorch: tensors [batch, time, heads, dim], an
    additive mask broadcastable to [batch, heads, queries, keys] (or a `LowerTriangularMask`), dropout `p`."""
    import torch

    q, k, v = (t.transpose(1, 2) for t in (query, key, value))
    mask, causal = None, False
    if isinstance(attn_bias, torch.Tensor):
        mask = attn_bias.to(q.dtype)
    elif attn_bias is not None:
        if type(attn_bias).__name__ != "LowerTriangularMask":
            raise TypeError(f"unsupported attention bias {type(attn_bias).__name__}")
        causal = True
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal, scale=kwargs.get("scale")
    )
    return out.transpose(1, 2)


def xformers_kernels_run(device: str) -> bool:
    """Whether xformers' memory-efficient attention has an operator for `device` here (it needs CUDA)."""
    if not device.startswith("cuda"):
        return False
    try:
        import torch
        from xformers import ops

        probe = torch.zeros((1, 8, 1, 8), device=device, dtype=torch.float16)
        ops.memory_efficient_attention(probe, probe, probe)
        return True
    except Exception:  # any failure (no operator, no device) means: not usable here
        return False


@contextlib.contextmanager
def masked_attention(device: str) -> Iterator[str]:
    """While active, audiocraft's masked attention honours its masks: through xformers' kernels where they run,
    else through `sdpa_attention`. Yields which ("xformers" or "sdpa"). One MAGNeT call at a time in a process."""
    from audiocraft.modules import transformer

    with _lock:
        saved_backend, saved_ops = transformer._efficient_attention_backend, transformer.ops
        path = "xformers" if xformers_kernels_run(device) else "sdpa"
        transformer.set_efficient_attention_backend("xformers")
        if path == "sdpa":
            transformer.ops = types.SimpleNamespace(memory_efficient_attention=sdpa_attention, unbind=saved_ops.unbind)
        try:
            yield path
        finally:
            transformer.ops = saved_ops
            transformer.set_efficient_attention_backend(saved_backend)


@contextlib.contextmanager
def backend_kept() -> Iterator[None]:
    """Undo audiocraft's loader setting the global attention backend for every model in the process."""
    from audiocraft.modules import transformer

    saved = transformer._efficient_attention_backend
    try:
        yield
    finally:
        transformer.set_efficient_attention_backend(saved)
