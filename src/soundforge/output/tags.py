"""Licence and provenance tags inside audio files, in each format's own tag system.

- WAV: RIFF LIST/INFO (written by libsndfile) plus an `id3 ` chunk holding ID3v2.4 frames.
- FLAC: a Vorbis comment block rewritten with soundforge's keys.
- OGG: Vorbis comments written by libsndfile (title, copyright, licence, comment with every key).
- MP3: an ID3v2.4 tag (TIT2, TCOP, WCOP, TSSE, COMM and TXXX frames) in front of the stream.

The ID3 writer is our own (about 40 lines): mutagen is GPL-2.0-or-later, which an MIT package must
not require. Every key is also written, as `KEY=value` lines, into the format's comment field, so any
tag reader shows them and `read_tags` can recover them from any of the four formats.
"""

from __future__ import annotations

import math
import os
import struct
from typing import TYPE_CHECKING, Any, Protocol

from ..audio import AudioArray, AudioFormat
from ..errors import InvalidRequestError
from ..music import parse_key

if TYPE_CHECKING:
    from ..licences.licensing import License
    from ..licences.provenance import Provenance

COMMENT_HEADER = "soundforge provenance"
#: ID3v2.4 text frames for the musical fields.
_MUSIC_FRAMES = (("TBPM", "BPM"), ("TKEY", "KEY"))


class TaggedAudio(Protocol):
    """What tagging and saving need of a track (`soundforge.result.Track` is one): its audio and its records.

    A protocol, so that `tags` and `files` depend on the records, not on the result class that uses them.
    """

    @property
    def audio(self) -> AudioArray: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def license(self) -> License: ...

    @property
    def provenance(self) -> Provenance: ...


def describe(track: TaggedAudio, *, audio_sha256: str, loudness: float | None, fmt: AudioFormat) -> dict[str, str]:
    """The tag fields of one saved track, in a stable order."""
    lic, prov = track.license, track.provenance
    fields = {
        "AI_GENERATED": "true",
        "DIGITAL_SOURCE_TYPE": prov.digital_source_type,
        "PROVIDER": prov.provider,
        "MODEL": prov.model,
        "LICENSE": lic.id,
        "LICENSE_NAME": lic.name,
        "LICENSE_URL": lic.url,
        "COMMERCIAL_USE": lic.commercial_use.value,
    }
    if lic.condition:
        fields["COMMERCIAL_CONDITION"] = lic.condition
    if lic.attribution_required and lic.attribution:
        fields["ATTRIBUTION"] = lic.attribution
    if lic.plan_note:
        fields["LICENSE_NOTE"] = lic.plan_note
    fields["AUDIO_SHA256"] = audio_sha256
    fields["GENERATED_PCM_SHA256"] = prov.pcm_sha256
    if prov.seed is not None:
        fields["SEED"] = str(prov.seed)
    if loudness is not None and math.isfinite(loudness):  # measured after normalising; silence has none
        fields["LOUDNESS_LUFS"] = f"{loudness:.1f}"
    if prov.role:
        fields["ROLE"] = prov.role
    if prov.cost is not None and prov.cost.amount is not None:
        how = "estimated" if prov.cost.estimated else "reported"
        fields["COST"] = f"{prov.cost.amount:.4f} {prov.cost.currency or ''}".strip()
        fields["COST_BASIS"] = f"{prov.cost.basis} ({how})"
    if prov.watermarks:
        fields["WATERMARKS"] = "; ".join(prov.watermarks)
    if prov.watermark is not None:
        fields["AUDIOSEAL_PAYLOAD"] = str(prov.watermark["payload"])
    if prov.adapters:
        fields["ADAPTERS"] = "; ".join(adapter_text(a) for a in prov.adapters)
    if prov.loop is not None:  # in samples, as game engines read them from Ogg/FLAC comments
        fields["LOOPSTART"] = str(prov.loop["start"])
        fields["LOOPLENGTH"] = str(prov.loop["end"] - prov.loop["start"])
    fields |= music_fields(prov.request)
    fields["CREATED_AT"] = prov.created_at.isoformat()
    fields["SOUNDFORGE_VERSION"] = prov.soundforge_version
    fields["PROMPT"] = str(prov.request.get("prompt", ""))[:1000]
    return fields


def adapter_text(adapter: dict[str, Any]) -> str:
    """One adapter as a tag reads it: `source@revision x0.7 (MIT) sha256:<first 16 hex digits>`."""
    text = str(adapter.get("source", ""))
    if adapter.get("revision"):
        text += f"@{adapter['revision']}"
    text += f" x{adapter.get('scale', 1.0):g}"
    if adapter.get("license"):
        text += f" ({adapter['license']})"
    hashes = list((adapter.get("files") or {}).values())
    if hashes:
        text += f" sha256:{str(hashes[0])[:16]}"
    return text


def music_fields(request: dict[str, object]) -> dict[str, str]:
    """Tempo, key and metre the request stated (validated and spelled one way by `soundforge.music`): `BPM`
    (a whole number, as ID3's TBPM and the Vorbis BPM convention want), `KEY` (ID3 TKEY's spelling: "Am", "F#"),
    `TIME_SIGNATURE` ("6/8")."""
    fields: dict[str, str] = {}
    bpm = request.get("bpm")
    if isinstance(bpm, (int, float)):
        fields["BPM"] = str(round(bpm))
    key = request.get("key")
    if isinstance(key, str):
        fields["KEY"] = parse_key(key).short
    signature = request.get("time_signature")
    if isinstance(signature, str):
        fields["TIME_SIGNATURE"] = signature
    return fields


def comment_text(fields: dict[str, str]) -> str:
    """All fields as `KEY=value` lines under a header line (newlines inside values are flattened)."""
    lines = [COMMENT_HEADER] + [f"{k}={' '.join(v.split())}" for k, v in fields.items()]
    return "\n".join(lines)


def copyright_text(fields: dict[str, str]) -> str:
    """The human-readable copyright/licence line."""
    text = (
        f"AI-generated by {fields['PROVIDER']}:{fields['MODEL']}. Licence: {fields['LICENSE']} "
        f"({fields['LICENSE_URL']}); commercial use: {fields['COMMERCIAL_USE'].replace('_', ' ')}"
    )
    if "ATTRIBUTION" in fields:
        text += f"; attribution: {fields['ATTRIBUTION']}"
    return text


def soundfile_strings(fields: dict[str, str]) -> dict[str, str]:
    """The libsndfile string tags (RIFF INFO in WAV, Vorbis comments in FLAC/OGG, basic ID3 in MP3)."""
    return {
        "title": fields["PROMPT"][:250] or "soundforge generation",
        "artist": f"{fields['PROVIDER']}:{fields['MODEL']} (AI-generated)",
        "copyright": copyright_text(fields),
        "software": f"soundforge {fields['SOUNDFORGE_VERSION']}",
        "date": fields["CREATED_AT"][:10],
        "comment": comment_text(fields),
        "license": fields["LICENSE_URL"],
    }


def parse_comment(text: str) -> dict[str, str]:
    """Recover the fields from a comment written by `comment_text` (empty when it is not ours)."""
    lines = text.replace("\r", "").split("\n")
    if not lines or lines[0].strip() != COMMENT_HEADER:
        return {}
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


# --- embedding ---------------------------------------------------------------------------------------
def embed(data: bytes, fmt: AudioFormat, fields: dict[str, str]) -> bytes:
    """Add the format-specific tags that libsndfile cannot write to encoded file bytes."""
    if fmt.name == "wav":
        tagged = _wav_with_id3(data, id3v2_tag(fields))
        if "LOOPSTART" in fields:
            start = int(fields["LOOPSTART"])
            return _wav_with_smpl(tagged, start, start + int(fields["LOOPLENGTH"]))
        return tagged
    if fmt.name == "mp3":
        return id3v2_tag(fields) + _strip_id3(data)
    if fmt.name == "flac":
        return _flac_with_comments(data, fields)
    return data


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _unsyncsafe(b: bytes) -> int:
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def _id3_frame(frame_id: str, payload: bytes) -> bytes:
    return frame_id.encode("ascii") + _syncsafe(len(payload)) + b"\x00\x00" + payload


def id3v2_tag(fields: dict[str, str]) -> bytes:
    """An ID3v2.4 tag: title, copyright, licence URL, software, comment and one TXXX frame per field."""
    utf8 = b"\x03"
    frames = [
        _id3_frame("TIT2", utf8 + (fields["PROMPT"][:250] or "soundforge generation").encode()),
        _id3_frame("TCOP", utf8 + copyright_text(fields).encode()),
        _id3_frame("WCOP", fields["LICENSE_URL"].encode("latin-1", "replace")),
        _id3_frame("TSSE", utf8 + f"soundforge {fields['SOUNDFORGE_VERSION']}".encode()),
        _id3_frame("COMM", utf8 + b"eng" + b"\x00" + comment_text(fields).encode()),
    ]
    # The standard frames players and DJ software read (ID3v2.4 section 4.2.3): tempo and initial key.
    frames += [_id3_frame(frame, utf8 + fields[key].encode()) for frame, key in _MUSIC_FRAMES if key in fields]
    frames += [_id3_frame("TXXX", utf8 + key.encode() + b"\x00" + value.encode()) for key, value in fields.items()]
    body = b"".join(frames)
    return b"ID3\x04\x00\x00" + _syncsafe(len(body)) + body


def id3v1_trailer(strings: dict[str, str]) -> bytes:
    """The 128-byte ID3v1 tag libsndfile's LAME writes at the end of an MP3 from its string tags (title, artist,
    year, comment; UTF-8 bytes cut at 30, NUL-padded, no genre), byte for byte: an MP3 is then encoded once, not once
    to hash its decoded samples and again with its tags (the audio frames are the same; `encode_track`)."""

    def cell(text: str, size: int) -> bytes:
        return text.encode("utf-8")[:size].ljust(size, b"\x00")

    return (
        b"TAG"
        + cell(strings.get("title", ""), 30)
        + cell(strings.get("artist", ""), 30)
        + cell("", 30)
        + cell(strings.get("date", "")[:4], 4)
        + cell(strings.get("comment", ""), 30)
        + b"\xff"
    )


def _strip_id3(data: bytes) -> bytes:
    """Drop a leading ID3v2 tag (libsndfile's own minimal one), keeping the audio frames."""
    if data[:3] == b"ID3" and len(data) >= 10:
        size = _unsyncsafe(data[6:10]) + 10 + (10 if data[5] & 0x10 else 0)
        return data[size:]
    return data


def read_id3v2(data: bytes) -> dict[str, str]:
    """The TXXX frames of a leading ID3v2.3/2.4 tag as a dict (our own fields and anyone else's)."""
    if data[:3] != b"ID3" or len(data) < 10:
        return {}
    version, end = data[3], 10 + _unsyncsafe(data[6:10])
    pos, fields = 10, {}
    while pos + 10 <= end:
        frame_id = data[pos : pos + 4]
        if frame_id == b"\x00\x00\x00\x00":
            break
        raw = data[pos + 4 : pos + 8]
        size = _unsyncsafe(raw) if version == 4 else struct.unpack(">I", raw)[0]
        payload = data[pos + 10 : pos + 10 + size]
        if frame_id == b"TXXX" and payload:
            codec = {0: "latin-1", 1: "utf-16", 2: "utf-16-be", 3: "utf-8"}.get(payload[0], "utf-8")
            sep = b"\x00\x00" if payload[0] in (1, 2) else b"\x00"
            key, _, value = payload[1:].partition(sep)
            fields[key.decode(codec, "replace")] = value.decode(codec, "replace").rstrip("\x00")
        pos += 10 + size
    return fields


def _riff_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(id, payload start, payload size) of each top-level chunk of a RIFF/WAVE file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((cid, pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


def _riff(parts: list[bytes | memoryview]) -> bytes:
    """A RIFF/WAVE file of these chunks (views into another file's bytes are joined without copying them first:
    one copy of a 600 s track's samples, where slicing, joining and prefixing made four)."""
    size = 4 + sum(len(part) for part in parts)
    return b"".join([b"RIFF", struct.pack("<I", size), b"WAVE", *parts])


def _kept_chunks(data: bytes, dropped: tuple[bytes, ...]) -> list[bytes | memoryview]:
    """Views of the file's chunks (header and padding included), except those with the ids `dropped`."""
    view = memoryview(data)
    return [
        view[start - 8 : start + size + (size & 1)] for cid, start, size in _riff_chunks(data) if cid not in dropped
    ]


def _wav_with_id3(data: bytes, tag: bytes) -> bytes:
    chunk = b"id3 " + struct.pack("<I", len(tag)) + tag + (b"\x00" if len(tag) & 1 else b"")
    return _riff([*_kept_chunks(data, (b"id3 ", b"ID3 ")), chunk])


def smpl_chunk(sample_rate: int, start: int, end: int) -> bytes:
    """A RIFF `smpl` chunk with one forward loop over samples [start, end) (its end field is the last sample, as
    the chunk's specification counts), played forever: what samplers and game engines read as loop points."""
    header = struct.pack("<9I", 0, 0, round(1e9 / sample_rate), 60, 0, 0, 0, 1, 0)
    loop = struct.pack("<6I", 0, 0, start, end - 1, 0, 0)
    payload = header + loop
    return b"smpl" + struct.pack("<I", len(payload)) + payload


def _wav_with_smpl(data: bytes, start: int, end: int) -> bytes:
    chunks = _riff_chunks(data)
    fmt = next(data[s : s + n] for cid, s, n in chunks if cid == b"fmt ")
    sample_rate = struct.unpack("<I", fmt[4:8])[0]
    return _riff([*_kept_chunks(data, (b"smpl",)), smpl_chunk(sample_rate, start, end)])


def _wav_id3(data: bytes) -> dict[str, str]:
    for cid, start, size in _riff_chunks(data):
        if cid in (b"id3 ", b"ID3 "):
            return read_id3v2(data[start : start + size])
    return {}


def _flac_blocks(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    if data[:4] != b"fLaC":
        raise ValueError("not a FLAC stream")
    blocks, pos, last = [], 4, False
    while not last:
        header = data[pos]
        last, kind = bool(header & 0x80), header & 0x7F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        blocks.append((kind, data[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return blocks, pos


def _vorbis_comment_block(vendor: bytes, comments: list[bytes]) -> bytes:
    out = struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", len(comments))
    return out + b"".join(struct.pack("<I", len(c)) + c for c in comments)


def _parse_vorbis_comment(block: bytes) -> tuple[bytes, list[bytes]]:
    vlen = struct.unpack("<I", block[:4])[0]
    vendor, pos = block[4 : 4 + vlen], 4 + vlen
    count, pos = struct.unpack("<I", block[pos : pos + 4])[0], pos + 4
    comments = []
    for _ in range(count):
        n = struct.unpack("<I", block[pos : pos + 4])[0]
        comments.append(block[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return vendor, comments


def _flac_with_comments(data: bytes, fields: dict[str, str]) -> bytes:
    blocks, audio_start = _flac_blocks(data)
    vendor, comments = b"soundforge", list[bytes]()
    for kind, payload in blocks:
        if kind == 4:
            vendor, comments = _parse_vorbis_comment(payload)
    ours = {k.upper() for k in fields}
    comments = [c for c in comments if c.split(b"=", 1)[0].decode("ascii", "replace").upper() not in ours]
    comments += [f"{k}={v}".encode() for k, v in fields.items()]
    kept = [(k, p) for k, p in blocks if k != 4] + [(4, _vorbis_comment_block(vendor, comments))]
    out = bytearray(b"fLaC")
    for i, (kind, payload) in enumerate(kept):
        out.append(kind | (0x80 if i == len(kept) - 1 else 0))
        out += len(payload).to_bytes(3, "big") + payload
    return bytes(out) + data[audio_start:]


def _flac_comments(data: bytes) -> dict[str, str]:
    blocks, _ = _flac_blocks(data)
    for kind, payload in blocks:
        if kind == 4:
            _, comments = _parse_vorbis_comment(payload)
            pairs = (c.decode("utf-8", "replace").partition("=") for c in comments)
            return {k.upper(): v for k, _, v in pairs}
    return {}


# --- reading ------------------------------------------------------------------------------------------
def read_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """soundforge's fields from a saved file, whatever its format (empty when the file carries none)."""
    with open(path, "rb") as handle:
        return read_tags_bytes(handle.read())


def read_tags_bytes(data: bytes) -> dict[str, str]:
    """soundforge's fields from the bytes of an encoded file (see `read_tags`).

    Raises InvalidRequestError for a file whose tag block is damaged (truncated, or crafted to point past itself):
    a typed error the CLI turns into an exit code, and batch's resume into a row made again.
    """
    fields: dict[str, str] = {}
    try:
        if data[:4] == b"RIFF":
            fields = _wav_id3(data)
        elif data[:4] == b"fLaC":
            fields = _flac_comments(data)
        elif data[:3] == b"ID3":
            fields = read_id3v2(data)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise InvalidRequestError(
            f"the file's tags are damaged ({type(exc).__name__}: {exc})",
            field="file",
            hint="the file was truncated or changed after it was written; make it again",
        ) from exc
    if "AI_GENERATED" in fields:
        # The comment block repeats every field for readers that show only the comment: once is enough here.
        return {key: value for key, value in fields.items() if not (key.upper() == "COMMENT" and parse_comment(value))}
    import io

    import soundfile as sf  # OGG, or a file whose custom tags were stripped: fall back to the comment field

    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            return parse_comment(handle.comment or "")
    except (sf.LibsndfileError, RuntimeError):
        return {}
