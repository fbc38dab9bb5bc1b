"""Streaming MusicGen (transformers): EnCodec tokens decoded into audio while the language model is still working.

MusicGen predicts K codebooks per EnCodec frame with a delay pattern: codebook k of frame f is sampled at step
f + k + 1, so frame f is complete once step f + K has run. `StreamDecoder.step` sees the token matrix after every
step (through a stopping criterion: transformers' MusicGen `generate` ignores its `streamer`), and whenever enough
new frames are complete it decodes a window of them with EnCodec and hands the settled samples on.

Why a window and what it costs (measured on the full-size musicgen-small EnCodec with random weights, CPU):
- EnCodec's decoder looks ahead: with non-causal convolutions (MusicGen's 32 kHz EnCodec) a frame's samples
  change until about 4 more frames are known. Samples are released only `lookahead` frames (derived from the
  decoder's layers, plus one) behind the newest complete frame; the last chunk is released when all tokens are in.
- Its LSTM carries state from the start, so each window starts `context` seconds (default 1 s) before the first
  frame it releases. Against the decode of the whole sequence, windows with 0.5 s of context already agree to
  within 2e-7 (float32 rounding; 10 frames of context: 3e-4).
- Exact equality with the non-streamed call is impossible even in principle on this path: decoding the first N
  frames alone differs from the whole decode by ~1e-7 from the first sample, because the matrix products are
  blocked differently for a different length. The tokens are bit-identical to the non-streamed call for the
  same seed; the audio differs by float rounding only (tests assert < 1e-5 of full scale).
- Decoding costs (1 s window + 1 s context + lookahead) / 1 s, about 2.1x of one whole decode, while the whole
  decode the non-streamed call makes at the end is skipped: the language model's last step raises
  `AllTokensIn`, so `generate` stops before decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..base import AudioChunk


class AllTokensIn(Exception):
    """Raised from the last step's stopping criterion: every token is decoded, `generate` need not decode again."""


def lookahead_frames(audio_encoder: Any) -> int:
    """How many frames past a sample EnCodec's decoder reads before that sample is final, from its layers.

    A non-causal convolution pads (kernel - stride) // 2 on the right at its own time resolution; a transposed
    convolution trims its padding and multiplies the resolution by its stride. One frame is added for the
    rounding of the fractions.
    """
    scale, reach = 1, 0.0
    for module in audio_encoder.decoder.modules():
        kind = type(module).__name__
        if kind == "EncodecConv1d" and not module.causal:
            reach += int(module.padding_total) // 2 / scale
        elif kind == "EncodecConvTranspose1d":
            stride = int(module.conv.stride[0])
            if not module.causal:
                padding = int(module.conv.kernel_size[0]) - stride
                reach += (padding - padding // 2) / (scale * stride)
            scale *= stride
    return math.ceil(reach) + 1 if reach else 0


class StreamDecoder:
    """Turns the token matrix after each step into audio chunks (see the module docstring).

    Args:
        model: the loaded MusicGen (its `audio_encoder` decodes).
        batch: outputs generated together (one track each).
        channels: 1, or 2 for the stereo checkpoints (codebooks interleaved left/right).
        frames: frames the call makes; samples: the samples each track is cut to.
        hop: samples per frame; frame_rate: frames per second.
        first_frames, chunk_frames: frames released in the first chunk and in each later one.
        context_frames: frames decoded before the first released one (the LSTM's warm-up).
        emit: called with the chunks of one release (one per track).
    """

    def __init__(
        self,
        model: Any,
        *,
        batch: int,
        channels: int,
        frames: int,
        samples: int,
        hop: int,
        first_frames: int,
        chunk_frames: int,
        context_frames: int,
        sample_rate: int,
        emit: Callable[[list[AudioChunk]], None],
    ) -> None:
        self.model = model
        self.batch, self.channels, self.frames, self.samples, self.hop = batch, channels, frames, samples, hop
        self.codebooks = int(model.decoder.num_codebooks)
        self.delay = self.codebooks // channels - 1
        self.lookahead = lookahead_frames(model.audio_encoder)
        self.first_frames, self.chunk_frames, self.context_frames = first_frames, chunk_frames, context_frames
        self.sample_rate = sample_rate
        self.emit = emit
        self.released = 0  # frames whose samples have been handed on

    def step(self, input_ids: Any) -> None:
        """After a decoding step: release the frames that are settled, if enough are; at the last step release
        the rest and raise `AllTokensIn`."""
        complete = min(self.frames, int(input_ids.shape[-1]) - 1 - self.delay)
        final = complete >= self.frames
        settled = self.frames if final else complete - self.lookahead
        wanted = self.first_frames if self.released == 0 else self.chunk_frames
        if not final and settled - self.released < wanted:
            return
        start = max(0, self.released - self.context_frames)
        audio = self._decode(input_ids, start, complete)  # (batch, channels, samples) from frame `start`
        lo = (self.released - start) * self.hop
        offset = self.released * self.hop
        end = min(self.samples, settled * self.hop)
        chunks = [
            AudioChunk(np.ascontiguousarray(audio[b, :, lo : lo + end - offset]), offset, self.sample_rate, b)
            for b in range(self.batch)
        ]
        self.released = settled
        if end > offset:
            self.emit(chunks)
        if final:
            raise AllTokensIn

    def _decode(self, input_ids: Any, start: int, stop: int) -> Any:
        """EnCodec's audio for frames [start, stop) of every output, numpy float32 (batch, channels, samples)."""
        import torch

        ids = input_ids.reshape(self.batch, self.codebooks, -1)
        rows = []
        for row in range(self.codebooks):
            first = row // self.channels + 1  # where this codebook's frame 0 sits (after its delay)
            rows.append(ids[:, row, first + start : first + stop])
        codes = torch.stack(rows, dim=1)  # (batch, codebooks, frames)
        scales = [None] * self.batch
        encoder = self.model.audio_encoder
        if self.channels == 1:
            audio = encoder.decode(codes[None], audio_scales=scales).audio_values
        else:
            left = encoder.decode(codes[None, :, ::2], audio_scales=scales).audio_values
            right = encoder.decode(codes[None, :, 1::2], audio_scales=scales).audio_values
            audio = torch.cat([left, right], dim=1)
        return audio.float().cpu().numpy()
