"""MusicGen's decode step against its memory-bandwidth floor, on this machine (`python bench/run.py --only-decode`).

    python bench/decode_rows.py                      # musicgen-small shapes, 1 and 4 requests
    python bench/decode_rows.py --sizes small,medium --dtype bfloat16
    python bench/decode_rows.py --requests           # and whole 1 s requests: decode eager/fast x float32/bfloat16

At 1 to 4 requests a decode step of MusicGen's language model is a matrix-vector product per weight matrix: it reads
every decoder weight once and does two multiply-adds per weight read, far below what the cores can compute, so its
speed is set by memory. The fastest a step can be is the decoder's weight bytes over the memory bandwidth: the floor.
This bench measures, in one run:
- the bandwidth: torch summing a 1 GiB float32 tensor on this process's threads (it only reads, as a step reads its
  weights), best of 7 after one warm-up;
- per architecture (random weights of facebook/musicgen-{small,medium,large}'s decoder shapes, nothing downloaded),
  the eager step: transformers' `MusicgenForCausalLM` with its KV cache, one token per codebook, the batch of 2
  rows classifier-free guidance makes per request, after a 64-step prefix; median of 5 rounds of 16 steps, with
  their spread;
- the same step through soundforge's own `DecoderStep` (soundforge.backends.musicgen.step, what `decode = "fast"`
  runs) with its weights in float32 and in bfloat16, each as a speed-up over the eager step;
- the share of the floor each step reaches (floor time / step time; the floor of its own weights' bytes), and tokens
  per second (frames: 50 a second of audio) at 1 and 4 requests. The floor counts the weights every step reads: not
  the embeddings (4 rows of them) nor the cross-attention's key and value projections (the text's keys and values
  are cached after the first step).

The text encoder and EnCodec run once per request, not per step; they are left out of the step rows (`--requests`
times whole requests).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_rows import musicgen_configs

GIB = 1024**3
PREFIX_STEPS = 64
ROUND_STEPS = 16
ROUNDS = 5


def read_bandwidth(torch: Any) -> float:
    """Bytes per second this process reads, summing a 1 GiB float32 tensor (best of 7 after a warm-up). Always
    float32: summing bfloat16 converts every element and measured 17.7 GB/s against float32's 21.5-24.1 here,
    the cores' limit, not the memory's."""
    data = torch.rand(GIB // 4, dtype=torch.float32)
    data.sum()
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    del data
    return GIB / best


def _read_every_step(name: str) -> bool:
    """Whether a decoder weight is read by every step: not the embeddings (a step reads 4 of their rows), not the
    cross-attention's key and value projections (the text's keys and values are computed once, then cached)."""
    return "embed_tokens" not in name and not any(f"encoder_attn.{p}_proj" in name for p in ("k", "v"))


def _rounds(step: Any) -> list[float]:
    """Seconds per step of `step()` (which advances one position), one median-able value per round, after the
    prefix."""
    for _ in range(PREFIX_STEPS):
        step()
    per_round = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(ROUND_STEPS):
            step()
        per_round.append((time.perf_counter() - start) / ROUND_STEPS)
    return per_round


def step_seconds(torch: Any, model: Any, decoder: Any, requests: int) -> list[float]:
    """Seconds per eager decode step (transformers' own, its dynamic cache), per round, for `requests` guided
    requests; each step feeds back the most likely token of each codebook."""
    rows = 2 * requests  # classifier-free guidance: the conditional and the unconditional row of each request
    codebooks = decoder.num_codebooks
    dtype = next(model.parameters()).dtype
    encoder_states = torch.randn(rows, 12, decoder.hidden_size, dtype=dtype)  # the projected text of 12 tokens
    state: dict[str, Any] = {"ids": torch.full((rows * codebooks, 1), decoder.bos_token_id), "cache": None}

    def step() -> None:
        out = model(input_ids=state["ids"], encoder_hidden_states=encoder_states, cache=state["cache"], use_cache=True)
        state["cache"] = out.past_key_values
        state["ids"] = out.logits[:, -1].argmax(-1).reshape(rows * codebooks, 1)

    with torch.inference_mode():
        return _rounds(step)


def own_step_seconds(torch: Any, model: Any, decoder: Any, requests: int, dtype: Any) -> list[float]:
    """Seconds per step of `DecoderStep` (soundforge.backends.musicgen.step: the cache allocated once, the text's
    keys and values computed once, query/key/value as one product) with its weights in `dtype`, per round."""
    from soundforge.backends.musicgen.step import DecoderStep

    rows = 2 * requests
    encoder_states = torch.randn(rows, 12, decoder.hidden_size)
    own = DecoderStep(model, encoder_states, PREFIX_STEPS + ROUNDS * ROUND_STEPS, dtype=dtype)
    state = {"tokens": torch.full((rows, decoder.num_codebooks), decoder.bos_token_id)}

    def step() -> None:
        state["tokens"] = own(state["tokens"]).argmax(-1)

    return _rounds(step)


def decode_rows(sizes: list[str], dtype_name: str = "float32") -> list[tuple[str, str, str]]:
    """(name, share of the floor, detail) per architecture, request count and way of stepping: transformers' eager
    step with the weights in `dtype_name`, then our own step (`DecoderStep`) in float32 and in bfloat16, each
    against the floor of its own weights' bytes and as a speed-up over the eager step."""
    import torch
    from transformers import MusicgenForCausalLM

    bandwidth = read_bandwidth(torch)
    rows = [("memory read bandwidth", f"{bandwidth / 1e9:.1f} GB/s", "torch sum of 1 GiB of float32, best of 7")]
    for size in sizes:
        _, _, decoder = musicgen_configs(size)
        torch.manual_seed(0)
        model = MusicgenForCausalLM(decoder).eval()
        weights = sum(p.numel() for name, p in model.named_parameters() if _read_every_step(name))
        for requests in (1, 4):
            model.to(getattr(torch, dtype_name))  # in place: the eager step in `dtype_name`, the own steps from float32
            measured = [(f"eager, {dtype_name}", dtype_name, step_seconds(torch, model, decoder, requests))]
            model.float()
            for own in ("float32", "bfloat16"):
                rounds = own_step_seconds(torch, model, decoder, requests, getattr(torch, own))
                measured.append((f"own step, {own}", own, rounds))
            eager = statistics.median(measured[0][2])
            for way, weight_dtype, rounds in measured:
                median = statistics.median(rounds)
                weight_bytes = weights * torch.empty((), dtype=getattr(torch, weight_dtype)).element_size()
                floor = weight_bytes / bandwidth
                rows.append(
                    (
                        f"musicgen-{size} decode step, {requests} request{'s' if requests > 1 else ''}, {way}",
                        f"{floor / median:.0%} of the floor, {eager / median:.2f}x eager",
                        f"step {median * 1e3:.1f} ms (rounds {min(rounds) * 1e3:.1f}-{max(rounds) * 1e3:.1f}), floor "
                        f"{floor * 1e3:.1f} ms ({weight_bytes / GIB:.2f} GiB of weights), {requests / median:.1f} "
                        f"tokens/s ({requests / median / 50:.2f}x real time)",
                    )
                )
        del model
    return rows


def request_rows(seconds: float = 1.0, rounds: int = 2) -> list[tuple[str, str, str]]:
    """Whole requests through the library (text encoder, decoder, EnCodec) on a random musicgen-small-shaped
    checkpoint: `decode` eager and fast, `dtype` float32 and bfloat16, alternated `rounds` times, each against eager
    float32 (median and spread of the seconds)."""
    import tempfile

    from soundforge.client import Client
    from soundforge.config import Config
    from soundforge.testing.musicgen import build_musicgen, build_tokenizer

    ways = (("eager", "float32"), ("fast", "float32"), ("fast", "bfloat16"), ("eager", "bfloat16"))
    with tempfile.TemporaryDirectory() as folder:
        path = build_musicgen(Path(folder) / "small", full_size=True)
        build_tokenizer(path)
        spec = f"musicgen:{path}"
        clients = {
            way: Client(
                Config.load(
                    user_file=False, providers={"musicgen": {"decode": way[0], "dtype": way[1], "batching": False}}
                )
            )
            for way in ways
        }
        for client in clients.values():  # load each model once before timing
            client.generate("calm piano", provider=spec, duration=0.1, seed=1)
        times: dict[tuple[str, str], list[float]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, client in clients.items():
                start = time.perf_counter()
                client.generate("calm piano", provider=spec, duration=seconds, seed=1)
                times[way].append(time.perf_counter() - start)
    base = statistics.median(times[ways[0]])
    return [
        (
            f"musicgen-small {seconds:g} s request, decode {mode}, {dtype}",
            f"{base / statistics.median(spent):.2f}x eager float32",
            f"median {statistics.median(spent):.2f} s ({min(spent):.2f}-{max(spent):.2f}) over {rounds} rounds",
        )
        for (mode, dtype), spent in times.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="small", help="comma-separated: small, medium, large")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--requests", action="store_true", help="also whole 1 s requests through the library")
    args = parser.parse_args()
    rows = decode_rows(args.sizes.split(","), args.dtype) + (request_rows() if args.requests else [])
    for name, share, detail in rows:
        print(f"{name}  {share}  {detail}")


if __name__ == "__main__":
    main()
