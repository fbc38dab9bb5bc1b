"""C2PA signing with a throwaway certificate made here, verified with c2pa-python's own reader."""

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

c2pa = pytest.importorskip("c2pa")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from soundforge import ConfigurationError  # noqa: E402
from soundforge.output.signing import ASSERTION_LABEL, C2paSigner, read_manifest, validation_problems  # noqa: E402
from soundforge.output.tags import read_tags  # noqa: E402


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "soundforge tests")]
    )


def _usage(**on: bool) -> x509.KeyUsage:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory) -> tuple[Path, Path]:
    """A test CA and an ES256 signing certificate (EKU emailProtection), valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(subject: x509.Name, issuer: x509.Name, public) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca = (
        builder(_name("test root"), _name("test root"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder(_name("test signer"), ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("pki")
    chain, private = folder / "chain.pem", folder / "key.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, private


@pytest.fixture(scope="module")
def track():
    from soundforge.client import Client
    from soundforge.config import Config

    return (
        Client(Config.load(user_file=False))
        .generate("signed groove 120 BPM", provider="synth", duration=3, seed=2)
        .tracks[0]
    )


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_sign_and_verify(track, pem_files, tmp_path, fmt: str) -> None:
    signer = C2paSigner.from_files(*pem_files)
    assert "PRIVATE" not in repr(signer)
    path = track.save(tmp_path / f"s.{fmt}", sign=signer)
    store = read_manifest(path)
    assert store is not None and validation_problems(store) == []
    manifest = store["manifests"][store["active_manifest"]]
    labels = {a["label"]: a["data"] for a in manifest["assertions"]}
    actions = next(v for k, v in labels.items() if k.startswith("c2pa.actions"))["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"].endswith("algorithmicMedia")
    assert labels[ASSERTION_LABEL]["license"] == "CC0-1.0"
    # Tags written before signing survive, the audio still decodes, and soundforge verify agrees.
    assert read_tags(path)["LICENSE"] == "CC0-1.0"
    assert sf.read(path)[0].shape[0] > 0
    exe = str(Path(sys.executable).with_name("soundforge"))
    assert subprocess.run([exe, "verify", str(path)], capture_output=True).returncode == 0


def test_edited_file_fails_validation(track, pem_files, tmp_path) -> None:
    path = track.save(tmp_path / "s.wav", sign=C2paSigner.from_files(*pem_files))
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 8 + 1000
    data[at : at + 8] = bytes(8)
    path.write_bytes(bytes(data))
    problems = validation_problems(read_manifest(path) or {})
    assert any("mismatch" in p for p in problems), problems
    exe = str(Path(sys.executable).with_name("soundforge"))
    out = subprocess.run([exe, "verify", str(path)], capture_output=True, text=True)
    assert out.returncode == 5 and "C2PA" in out.stderr


def test_unsignable_format_and_bad_key(track, pem_files, tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="OGG"):
        track.save(tmp_path / "s.ogg", sign=C2paSigner.from_files(*pem_files))
    assert not list(tmp_path.glob("s.ogg*"))
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ConfigurationError, match="signing failed"):
        track.save(tmp_path / "s.wav", sign=C2paSigner.from_files(pem_files[0], wrong))
    assert not list(tmp_path.glob("s.wav*"))


def test_cli_signs_from_config(pem_files, tmp_path) -> None:
    chain, key = pem_files
    (tmp_path / "soundforge.toml").write_text(f'[c2pa]\ncert = "{chain}"\nkey = "{key}"\n')
    exe = str(Path(sys.executable).with_name("soundforge"))
    out = subprocess.run(
        [exe, "generate", "x", "-d", "1", "-o", "c.flac"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    info = subprocess.run([exe, "info", "c.flac"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert "signed manifest, valid" in info
