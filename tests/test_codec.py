"""soundforge.codec on tiny random EnCodec models built from configs: the real transformers code path, no weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from soundforge import InvalidRequestError  # noqa: E402
from soundforge.codec import Codec, Tokens, codec_license  # noqa: E402
from soundforge.output.tags import read_tags  # noqa: E402


def build_encodec(folder: Path, *, stereo_chunked: bool) -> str:
    """A tiny EnCodec: 24 kHz-like (mono, whole clip) or 48 kHz-like (stereo, 1 s chunks, normalised)."""
    config = transformers.EncodecConfig(
        target_bandwidths=[2.5, 5.0],
        sampling_rate=8000,
        audio_channels=2 if stereo_chunked else 1,
        normalize=stereo_chunked,
        chunk_length_s=0.25 if stereo_chunked else None,
        overlap=0.01 if stereo_chunked else None,
        hidden_size=16,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[8, 4],
        codebook_size=32,
        num_lstm_layers=1,
        codebook_dim=16,
    )
    torch.manual_seed(0)
    model = transformers.EncodecModel(config).eval()
    # transformers starts codebooks at zero; seed each from encoder outputs (like k-means init) so codes vary.
    with torch.no_grad():
        frames = model.encoder(torch.randn(1, config.audio_channels, 8000) * 0.3)[0].T
        for i, layer in enumerate(model.quantizer.layers):
            layer.codebook.embed.copy_(frames[torch.randint(0, frames.shape[0], (32,))] * 0.5**i)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def codecs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("encodec")
    return {
        "mono": build_encodec(root / "mono", stereo_chunked=False),
        "stereo": build_encodec(root / "stereo", stereo_chunked=True),
    }


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize("kind", ["mono", "stereo"])
def test_same_codes_and_audio_as_the_direct_transformers_call(codecs, kind) -> None:
    codec = Codec(codecs[kind], device="cpu")
    audio = tone(0.6, codec.sample_rate, codec.channels)
    tokens = codec.encode(audio, codec.sample_rate, bandwidth=5.0)
    net = transformers.EncodecModel.from_pretrained(codecs[kind]).eval()
    with torch.inference_mode():
        direct = net.encode(torch.from_numpy(audio)[None], bandwidth=5.0)
        decoded = net.decode(
            direct.audio_codes, direct.audio_scales, last_frame_pad_length=direct.last_frame_pad_length
        ).audio_values
    assert np.array_equal(tokens.codes, direct.audio_codes[:, 0].numpy())
    assert tokens.codebooks == 4 and tokens.codes.max() < 32  # 5 kbps keeps all 4 codebooks (1.25 kbps each)
    assert (tokens.scales is not None) == (kind == "stereo") and tokens.codes.shape[0] == (3 if kind == "stereo" else 1)
    audio_back, rate = codec.decode(tokens)
    assert rate == codec.sample_rate and audio_back.shape == audio.shape
    assert np.allclose(audio_back, decoded[0, :, : audio.shape[1]].numpy(), atol=1e-6)
    assert not np.array_equal(
        codec.encode(audio, codec.sample_rate, bandwidth=2.5).codes[:, :2],
        codec.encode(audio * 0.1 + 0.2, codec.sample_rate, bandwidth=2.5).codes[:, :2],
    )


def test_input_is_resampled_and_mixed_and_tokens_round_trip_a_file(codecs, tmp_path) -> None:
    codec = Codec(codecs["mono"], device="cpu")
    stereo_44k = tone(0.5, 44100, channels=2)
    tokens = codec.encode(stereo_44k, 44100)
    assert tokens.num_samples == 4000 and tokens.channels == 1 and tokens.bandwidth == 2.5
    assert tokens.license.id == "LicenseRef-Unknown"  # a local folder: its source decides
    path = tokens.save(tmp_path / "clip.npz")
    loaded = Tokens.load(path)
    assert np.array_equal(loaded.codes, tokens.codes) and loaded.metadata() == tokens.metadata()
    with pytest.raises(FileExistsError):
        tokens.save(path)
    with pytest.raises(InvalidRequestError, match="bandwidth 6"):
        codec.encode(stereo_44k, 44100, bandwidth=6.0)
    with pytest.raises(InvalidRequestError, match="decode them with that codec"):
        Codec(codecs["stereo"], device="cpu").decode(tokens)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidRequestError, match="token file"):
        Tokens.load(tmp_path / "junk.npz")


def test_codec_weights_licences() -> None:
    assert codec_license("facebook/encodec_24khz").commercial_use.value == "unknown"  # no licence on its card
    assert codec_license("facebook/encodec_48khz").commercial_use.value == "allowed"
    musicgen_codec = codec_license("facebook/encodec_32khz")
    assert musicgen_codec.id == "CC-BY-NC-4.0" and musicgen_codec.commercial_use.value == "not_allowed"


def test_cli_encode_and_decode(codecs, tmp_path) -> None:
    """`soundforge codec encode` and `decode` through the command itself (in this process: three runs of the
    installed script took 25-34 s of the suite, importing torch each time; tests/cli/ run the script itself)."""
    import soundfile as sf
    from click.testing import CliRunner

    from soundforge.cli import cli

    sf.write(tmp_path / "in.wav", tone(0.5, 16000).T, 16000)
    runner = CliRunner()
    enc = runner.invoke(
        cli,
        ["codec", "encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "t.npz"), "-m", codecs["mono"], "-b", "5"],
    )
    assert enc.exit_code == 0, enc.output
    assert "4 codebooks" in enc.stdout and "LicenseRef-Unknown" in enc.stdout
    dec = runner.invoke(cli, ["codec", "decode", str(tmp_path / "t.npz"), "-o", str(tmp_path / "out.flac")])
    assert dec.exit_code == 0, dec.output
    data, rate = sf.read(tmp_path / "out.flac")
    assert rate == 8000 and len(data) == 4000
    tags = read_tags(tmp_path / "out.flac")
    assert tags["PROVIDER"] == "encodec" and tags["LICENSE"] == "LicenseRef-Unknown"
    missing = runner.invoke(
        cli,
        ["codec", "encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "x.npz"), "-m", str(tmp_path / "no-such")],
    )
    assert missing.exit_code == 3 and "does not exist" in missing.stderr, missing.output
    assert not (tmp_path / "x.npz").exists()


def test_missing_weights_are_said_before_transformers_is_loaded_with_the_fix_that_works(tmp_path) -> None:
    """The hint names `-m FOLDER` (there is no [providers.encodec] setting the codec reads), and the weights are
    looked for before transformers is imported (it took seconds to say they were missing)."""
    import soundfile as sf

    sf.write(tmp_path / "in.wav", tone(0.5, 16000).T, 16000)
    exe = str(Path(sys.executable).with_name("soundforge"))
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    enc = subprocess.run(
        [exe, "codec", "encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "t.npz")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert enc.returncode != 0 and "Traceback" not in enc.stderr
    assert "-m FOLDER" in enc.stderr and "[providers.encodec]" not in enc.stderr
    check = (
        "import sys\nfrom soundforge.codec import Codec\nfrom soundforge import ModelNotAvailableError\n"
        "try:\n    Codec()\nexcept ModelNotAvailableError:\n    print('transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False", out.stderr
