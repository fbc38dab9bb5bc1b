"""`soundforge serve`'s ElevenLabs-compatible routes, driven by the official `elevenlabs` SDK with only its base URL
changed (and the server's token as its API key): music from a prompt and from a composition plan, streamed music,
sound effects, the output formats, refusals in the SDK's error types, and a tiny local ACE-Step model whose audio
is the library's."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
elevenlabs_client = pytest.importorskip("elevenlabs.client")

from elevenlabs.core.api_error import ApiError  # noqa: E402
from elevenlabs.errors import UnprocessableEntityError  # noqa: E402

from soundforge import LicensePolicy  # noqa: E402
from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.output.inspect import record_of  # noqa: E402

from .test_app import running  # noqa: E402

TOKEN = "compat-token"


def sdk(url: str, key: str = TOKEN):
    return elevenlabs_client.ElevenLabs(api_key=key, base_url=url)


def test_music_and_sound_effects_with_the_official_sdk(tmp_path) -> None:
    with running(tmp_path / "jobs", engine="inline", token=TOKEN, elevenlabs={"music": "synth"}) as url:
        eleven = sdk(url)
        song = b"".join(eleven.music.compose(prompt="lofi 80 BPM", music_length_ms=3000, seed=4))
        data, rate = sf.read(io.BytesIO(song))
        assert rate == 44100 and data.shape[0] == pytest.approx(3 * 44100, abs=1200)
        record = record_of(song, None, "song.mp3")
        assert record.fields["PROVIDER"] == "synth" and record.fields["LICENSE"] == "CC0-1.0"
        # The licence and provenance come in headers too (the raw response shows them).
        with eleven.music.with_raw_response.compose(prompt="lofi", music_length_ms=3000, seed=4) as raw:
            headers = raw.headers
            assert b"".join(raw.data)
        assert headers["x-soundforge-license"] == "CC0-1.0" and headers["x-soundforge-provider"] == "synth"
        assert headers["x-soundforge-seed"] == "4" and headers["x-soundforge-job"]
        # A streamed song: chunked audio, the same bytes.
        streamed = b"".join(eleven.music.stream(prompt="lofi 80 BPM", music_length_ms=3000, seed=4))
        again, _ = sf.read(io.BytesIO(streamed))
        assert np.array_equal(again, data)  # another job, the same audio (its tags say when it was made)
        # Sound effects, as WAV at the made rate, and as 16-bit PCM at the rate asked for.
        effect = b"".join(
            eleven.text_to_sound_effects.convert(text="door slam", duration_seconds=1.5, output_format="wav_44100")
        )
        data, rate = sf.read(io.BytesIO(effect))
        assert rate == 44100 and data.shape[0] == round(1.5 * 44100)
        pcm = b"".join(
            eleven.text_to_sound_effects.convert(text="door slam", duration_seconds=1.5, output_format="pcm_16000")
        )
        assert len(pcm) == round(1.5 * 16000) * 2 * 2  # stereo, 16-bit
        # What the server cannot honour is refused in the SDK's own error types, before any work.
        with pytest.raises(UnprocessableEntityError) as info:
            b"".join(eleven.music.compose(prompt="x", music_length_ms=3000, output_format="opus_48000_128"))
        assert info.value.body["detail"][0]["loc"] == ["query", "output_format"]
        with pytest.raises(UnprocessableEntityError):
            b"".join(eleven.music.compose(prompt="x", music_length_ms=1000))
        with pytest.raises(UnprocessableEntityError) as info:
            b"".join(eleven.music.compose(prompt="x", music_length_ms=3000, finetune_id="ft-1"))
        assert "finetune_id" in info.value.body["detail"][0]["loc"]
        # A plan with lines asks for lyrics, which the synth cannot sing: refused naming the field.
        plan = {
            "positive_global_styles": ["pop"],
            "negative_global_styles": [],
            "sections": [{"section_name": "Verse", "positive_local_styles": [], "negative_local_styles": [],
                          "duration_ms": 3000, "lines": ["la la la"]}],
        }  # fmt: skip
        with pytest.raises(UnprocessableEntityError) as info:
            b"".join(eleven.music.compose(composition_plan=plan))
        assert info.value.body["detail"][0]["loc"] == ["body", "lyrics"]
        # The server's token is the API key: another key is refused.
        with pytest.raises(ApiError) as info:
            b"".join(sdk(url, key="wrong").music.compose(prompt="x", music_length_ms=3000))
        assert info.value.status_code == 401


def test_the_licence_policy_refuses_as_elevenlabs_would_answer(tmp_path) -> None:
    with (
        running(
            tmp_path / "jobs",
            engine="inline",
            policy=LicensePolicy.commercial(),
            elevenlabs={"music": "musicgen"},
        ) as url,
        pytest.raises(ApiError) as info,
    ):
        b"".join(sdk(url).music.compose(prompt="x", music_length_ms=3000))
    assert info.value.status_code == 403
    assert info.value.body["detail"]["status"] == "license_policy"
    assert "musicgen" in info.value.body["detail"]["message"]


@pytest.fixture(scope="module")
def ace_step(tmp_path_factory) -> str:
    pytest.importorskip("diffusers")
    from soundforge.testing.ace_step import build_ace_step

    return str(build_ace_step(tmp_path_factory.mktemp("compat-ace") / "tiny"))


def test_a_composition_plan_on_a_tiny_ace_step_is_the_librarys_song(ace_step, tmp_path) -> None:
    spec = f"ace-step:{ace_step}"
    plan = {
        "positive_global_styles": ["indie pop", "female vocals"],
        "negative_global_styles": [],
        "sections": [
            {"section_name": "Verse 1", "positive_local_styles": ["soft"], "negative_local_styles": [],
             "duration_ms": 6000, "lines": ["walking home in the rain"]},
            {"section_name": "Chorus", "positive_local_styles": [], "negative_local_styles": [],
             "duration_ms": 6000, "lines": ["sing it again"]},
        ],
    }  # fmt: skip
    with running(tmp_path / "jobs", engine="inline", elevenlabs={"music": spec}) as url:
        made = b"".join(sdk(url, key="any").music.compose(composition_plan=plan, seed=7, output_format="wav_48000"))
        # ACE-Step takes no negative prompt: a plan with negative styles is refused naming the field it maps to.
        with pytest.raises(UnprocessableEntityError) as info:
            b"".join(sdk(url).music.compose(composition_plan={**plan, "negative_global_styles": ["metal"]}))
        assert info.value.body["detail"][0]["loc"] == ["body", "negative_prompt"]
    heard, rate = sf.read(io.BytesIO(made), dtype="float32", always_2d=True)
    library = Client(Config.load(user_file=False)).generate(
        "indie pop, female vocals, soft",
        provider=spec,
        duration=12.0,
        seed=7,
        lyrics="[Verse 1]\nwalking home in the rain\n\n[Chorus]\nsing it again",
    )
    assert rate == library.sample_rate and heard.shape == library.audio.T.shape
    assert np.abs(heard - library.audio.T).max() <= 1 / 32768 + 1e-6  # the same song, to 16-bit precision
