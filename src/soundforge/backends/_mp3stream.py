"""MP3 decoded while it downloads, for APIs that stream MP3 (ElevenLabs `/v1/music/stream`).

MP3 is a sequence of frames, each with a 4-byte header that gives its length. The decoder keeps the bytes that
have arrived, cuts them after the last complete frame, and decodes that prefix from its start with libsndfile
(the decoder every other MP3 in soundforge goes through). Decoding a prefix of whole frames gives exactly the
samples the whole file decodes to, up to the prefix's end (measured: every sample of 50, 400 and 800-frame
prefixes of a 30 s track equal to the whole decode), so the chunks put together are the non-streamed decode of
the same bytes; two frames' worth is still held back until the end, in case a decoder's overlap reaches there.
Prefixes are decoded at geometrically growing sizes (each new decode waits for half as much audio again), so
the work stays within a few whole decodes however long the track is.
"""

from __future__ import annotations

import numpy as np

from ..audio import AudioArray, load_audio

#: Bit rates (kbit/s) by index: MPEG-1 Layer III, and MPEG-2/2.5 Layer III.
_RATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)
_RATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0)
#: Sample rates by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5) and index.
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
#: Frames of audio held back until the end of the stream (the decoder's overlap, with room to spare).
HELD_FRAMES = 2


def frame_length(header: bytes) -> tuple[int, int] | None:
    """(bytes, samples) of the Layer III frame whose 4-byte header this is; None when it is not one."""
    word = int.from_bytes(header[:4], "big")
    if word >> 21 != 0x7FF:
        return None
    version, layer = (word >> 19) & 3, (word >> 17) & 3
    rate_index, sample_index, padding = (word >> 12) & 0xF, (word >> 10) & 3, (word >> 9) & 1
    if version == 1 or layer != 1 or rate_index in (0, 15) or sample_index == 3:
        return None
    sample_rate = _SAMPLE_RATES[version][sample_index]
    if version == 3:
        return 144 * _RATES_V1[rate_index] * 1000 // sample_rate + padding, 1152
    return 72 * _RATES_V2[rate_index] * 1000 // sample_rate + padding, 576


class Mp3Stream:
    """Feed it the bytes of an MP3 as they arrive; it hands back the new audio each time enough has come.

    Args:
        first_seconds: audio to gather before the first chunk (later ones wait for at least as much, and for half
            of what has been handed on so far).
        limit: samples to hand on at most (the length asked for; the API may send a little more).
    """

    def __init__(self, *, first_seconds: float = 1.0, limit: int | None = None) -> None:
        self.data = bytearray()
        self.first_seconds = first_seconds
        self.limit = limit
        self.sample_rate: int | None = None
        self.emitted = 0  # samples handed on
        self._complete = 0  # bytes up to the end of the last complete frame
        self._scan = 0  # where the next frame header is expected
        self._frames = 0  # complete frames seen
        self._decoded_frames = 0  # frames in the last decode
        self._frame_samples = 1152
        self._frame_rate = 44100 / 1152

    def feed(self, data: bytes) -> list[AudioArray]:
        """Add bytes; the chunks (float32, channels-first) that became ready, usually none or one."""
        self.data += data
        self._find_frames()
        new = self._frames - self._decoded_frames
        wanted = max(self.first_seconds * self._frame_rate, self._decoded_frames / 2)
        if self._frames <= HELD_FRAMES or new < wanted:
            return []
        return self._decode(final=False)

    def finish(self) -> list[AudioArray]:
        """The stream ended: the rest of the audio."""
        if not self.data:
            return []
        return self._decode(final=True)

    def _find_frames(self) -> None:
        data = self.data
        if self._scan == 0 and data[:3] == b"ID3":  # an ID3v2 tag first: its size is syncsafe
            if len(data) < 10:
                return
            self._scan = 10 + ((data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9])
        while self._scan + 4 <= len(data):
            found = frame_length(bytes(data[self._scan : self._scan + 4]))
            if found is None:  # not at a frame: resynchronise on the next header-like word
                self._scan += 1
                continue
            size, samples = found
            if self._scan + size > len(data):
                break
            self._scan += size
            self._complete = self._scan
            self._frames += 1
            self._frame_samples = samples
            word = int.from_bytes(data[self._scan - size : self._scan - size + 4], "big")
            self._frame_rate = _SAMPLE_RATES[(word >> 19) & 3][(word >> 10) & 3] / samples

    def _decode(self, *, final: bool) -> list[AudioArray]:
        audio, rate = load_audio(bytes(self.data if final else self.data[: self._complete]))
        self.sample_rate = rate
        self._decoded_frames = self._frames
        end = audio.shape[1] if final else max(0, audio.shape[1] - HELD_FRAMES * self._frame_samples)
        if self.limit is not None:
            end = min(end, self.limit)
        if end <= self.emitted:
            return []
        chunk = np.ascontiguousarray(audio[:, self.emitted : end], dtype=np.float32)
        self.emitted = end
        return [chunk]
