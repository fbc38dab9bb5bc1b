"""C2PA signing of saved audio (extra `soundforge[c2pa]`): a signed, tamper-evident AI-generated marker.

The manifest holds a `c2pa.created` action whose digital source type is the track's IPTC type
(`trainedAlgorithmicMedia` for models) and a `org.soundforge.provenance` assertion with the licence and
provenance facts. C2PA hashes the file, so signing is the very last step, after every other tag.
Works offline: with no `tsa_url` the signature carries no trusted timestamp.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audio import AudioFormat
from ..errors import ConfigurationError, ProviderUnavailableError

#: Formats c2pa-rs can embed a manifest in (WAV RIFF chunk; MP3 and FLAC ID3 GEOB frame).
SIGNABLE = frozenset({"wav", "mp3", "flac"})
ASSERTION_LABEL = "org.soundforge.provenance"


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError as exc:
        raise ProviderUnavailableError(
            "c2pa", "the c2pa-python package is not installed", fix='pip install "soundforge[c2pa]"'
        ) from exc
    return c2pa


@dataclass(frozen=True)
class C2paSigner:
    """A certificate chain (PEM, signer first) and its private key (PEM), never shown in reprs or logs."""

    cert_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    alg: str = "es256"
    tsa_url: str | None = None

    @classmethod
    def from_files(
        cls,
        cert_chain: str | os.PathLike[str],
        private_key: str | os.PathLike[str],
        alg: str = "es256",
        tsa_url: str | None = None,
    ) -> C2paSigner:
        """Read the chain and key from PEM files."""
        try:
            return cls(Path(cert_chain).read_bytes(), Path(private_key).read_bytes(), alg, tsa_url)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the C2PA certificate or key: {exc.strerror}",
                hint="give PEM files for the certificate chain and the private key",
            ) from None


def manifest_for(fields: dict[str, str], version: str) -> dict[str, Any]:
    """The C2PA manifest definition for a track described by its tag fields."""
    agent = f"{fields['PROVIDER']}:{fields['MODEL']}"
    facts = {k.lower(): v for k, v in fields.items() if k not in ("PROMPT",)}
    return {
        "claim_generator_info": [{"name": "soundforge", "version": version}],
        "title": fields.get("PROMPT", "soundforge generation")[:200] or "soundforge generation",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": fields["DIGITAL_SOURCE_TYPE"],
                            "softwareAgent": {"name": agent},
                        }
                    ]
                },
            },
            {"label": ASSERTION_LABEL, "data": facts},
        ],
    }


def sign_bytes(data: bytes, fmt: AudioFormat, fields: dict[str, str], signer: C2paSigner) -> bytes:
    """Return `data` (a complete, tagged file) with a signed C2PA manifest embedded."""
    if fmt.name not in SIGNABLE:
        raise ConfigurationError(
            f"C2PA signing is not available for {fmt.name.upper()} files",
            hint=f"save as {', '.join(sorted(SIGNABLE))} to sign",
        )
    c2pa = _c2pa()
    info = c2pa.C2paSignerInfo(
        alg=signer.alg.encode(),
        sign_cert=signer.cert_chain,
        private_key=signer.private_key,
        ta_url=signer.tsa_url.encode() if signer.tsa_url else None,
    )
    manifest = manifest_for(fields, fields.get("SOUNDFORGE_VERSION", ""))
    with tempfile.TemporaryDirectory(prefix="soundforge-c2pa-") as tmp:
        source, dest = Path(tmp) / f"in{fmt.extension}", Path(tmp) / f"out{fmt.extension}"
        source.write_bytes(data)
        try:
            with c2pa.Signer.from_info(info) as handle, c2pa.Builder(manifest) as builder:
                builder.sign_file(str(source), str(dest), handle)
        except c2pa.C2paError as exc:
            raise ConfigurationError(
                f"C2PA signing failed: {exc}", hint="check that the certificate chain matches the key and algorithm"
            ) from None
        return dest.read_bytes()


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The active C2PA manifest store of a file as JSON (None when the file has none)."""
    c2pa = _c2pa()
    try:
        with c2pa.Reader(os.fspath(path)) as reader:
            return json.loads(reader.json())  # type: ignore[no-any-return]
    except c2pa.C2paError:
        return None


def validation_problems(store: dict[str, Any]) -> list[str]:
    """Validation failures other than an untrusted (self-managed) signing certificate."""
    statuses = store.get("validation_status") or []
    return [s.get("code", "?") for s in statuses if s.get("code") != "signingCredential.untrusted"]
