import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from soundforge import GenerationRequest, InvalidRequestError
from soundforge.client import build_request
from soundforge.request import MAX_PROMPT_CHARS, AudioInput


def test_round_trip_json_with_embedded_audio() -> None:
    melody = (np.sin(np.linspace(0, 100, 8000)).astype(np.float32), 8000)
    req = GenerationRequest(prompt="piano", duration=4, seed=7, melody=melody, extra={"k": 1})
    again = GenerationRequest.model_validate_json(req.model_dump_json())
    assert again == req
    audio, rate = again.melody.load()
    assert rate == 8000 and audio.shape == (1, 8000)
    assert np.max(np.abs(audio[0] - melody[0])) < 1e-3


def test_frozen() -> None:
    req = GenerationRequest(prompt="x")
    with pytest.raises(ValidationError):
        req.duration = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"),
        ({"prompt": "x", "duration": 0}, "duration"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "num_outputs": 0}, "num_outputs"),
        ({"prompt": "x", "num_outputs": 99}, "num_outputs"),
        ({"prompt": "x", "temperature": 0}, "temperature"),
        ({"prompt": "x", "top_p": 1.5}, "top_p"),
        ({"prompt": "x", "guidance": 0.5}, "guidance"),
        ({"prompt": "x", "bogus": 1}, "bogus"),
    ],
)
def test_invalid_fields_are_named(params: dict, field: str) -> None:
    prompt = params.pop("prompt")
    with pytest.raises(InvalidRequestError) as info:
        build_request(prompt, params)
    assert info.value.field == field
    assert field in str(info.value)


def test_unknown_field_points_to_extra() -> None:
    with pytest.raises(InvalidRequestError, match="extra="):
        build_request("x", {"cfg_coef": 3})


def test_contradictions() -> None:
    with pytest.raises(InvalidRequestError, match="strength"):
        build_request("x", {"strength": 0.5})
    with pytest.raises(InvalidRequestError, match="contradict"):
        build_request("x", {"lyrics": "la", "instrumental": True})


def test_audio_input_needs_existing_file(tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="does not exist"):
        build_request("x", {"melody": str(tmp_path / "none.wav")})
    with pytest.raises(ValueError):
        AudioInput()


@given(
    duration=st.floats(allow_nan=True, allow_infinity=True),
    seed=st.integers(-10, 2**64),
    top_p=st.floats(-2, 3),
    n=st.integers(-5, 40),
)
def test_validation_never_lets_bad_values_through(duration: float, seed: int, top_p: float, n: int) -> None:
    params = {"duration": duration, "seed": seed, "top_p": top_p, "num_outputs": n}
    # Output i uses seed + i: every one of them is a seed a request may give (a track's recorded seed was 2**63).
    ok = (0 < duration <= 3600) and seed >= 0 and seed + n <= 2**63 and 0 <= top_p <= 1 and 1 <= n <= 16
    try:
        req = build_request("a prompt", params)
    except InvalidRequestError:
        assert not ok
    else:
        assert ok and req.duration == duration and req.seed == seed


def test_every_output_seed_is_a_seed_a_request_can_give_back() -> None:
    """The second track of seed=2**63-1 recorded seed 2**63, which no request accepts: refused up front instead."""
    import soundforge

    with pytest.raises(InvalidRequestError, match="give a seed up to 9223372036854775806") as caught:
        GenerationRequest(prompt="x", seed=2**63 - 1, num_outputs=2)
    assert caught.value.field == "seed"
    g = soundforge.generate("x", provider="synth", duration=1, seed=2**63 - 2, num_outputs=2)
    for track in g.tracks:
        assert GenerationRequest(prompt="x", seed=track.provenance.seed).seed == track.provenance.seed


def test_backend_extra_is_checked_by_key_and_type() -> None:
    from soundforge.backends.base import checked_extra

    kinds = {"steps": int, "strength": float, "sampler": (str,), "flag": bool}
    request = GenerationRequest(prompt="x", extra={"steps": 4, "strength": 1, "flag": True, "sampler": None})
    assert checked_extra(request, kinds, provider="p") == {"steps": 4, "strength": 1.0, "flag": True}
    for bad, message in (
        ({"steps": True}, "must be int"),
        ({"strength": "a"}, "must be float"),
        ({"nope": 1}, "unknown p extra parameter"),
    ):
        with pytest.raises(InvalidRequestError, match=message):
            checked_extra(GenerationRequest(prompt="x", extra=bad), kinds, provider="p")


def test_a_bad_request_is_an_invalid_request_error_on_every_path() -> None:
    from soundforge import InvalidRequestError, SoundforgeError

    for make in (
        lambda: GenerationRequest(prompt="x", duration=-1),
        lambda: GenerationRequest.model_validate({"prompt": "x", "bogus": 1}),
        lambda: GenerationRequest.model_validate_json('{"prompt": "x", "seed": -3}'),
    ):
        with pytest.raises(SoundforgeError) as info:
            make()
        assert isinstance(info.value, InvalidRequestError) and info.value.field in ("duration", "bogus", "seed")


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": "calm \ud800 piano"},
        {"prompt": "x", "negative_prompt": "\udcff"},
        {"prompt": "x", "lyrics": "\ud83d"},
        {"prompt": "x", "extra": {"tag": "\ud800"}},
        {"prompt": "x", "extra": {"nested": ["ok", "\udc80"]}},
    ],
)
def test_text_that_is_not_unicode_is_refused_at_validation(params) -> None:
    from soundforge import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="not valid Unicode"):
        GenerationRequest(**params)


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": float("inf")},
        {"guidance": float("nan")},
        {"top_p": float("nan")},
        {"duration": float("nan")},
        {"extra": {"x": float("inf")}},
        {"extra": {"y": [1.0, float("nan")]}},
    ],
)
def test_non_finite_numbers_are_refused(params) -> None:
    from soundforge import InvalidRequestError

    with pytest.raises(InvalidRequestError):
        GenerationRequest(prompt="x", **params)
    with pytest.raises(InvalidRequestError):
        GenerationRequest.model_validate_json(
            '{"prompt": "x", ' + ", ".join(f'"{k}": {_json(v)}' for k, v in params.items()) + "}"
        )


def _json(value) -> str:
    import json

    return json.dumps(value)  # writes NaN / Infinity, as a careless client would


def test_extra_is_bounded_in_depth_and_size() -> None:
    """A hostile `extra` (1000 levels deep: a RecursionError and a 500 in serve; 32 MiB: kept for good) is refused
    as an invalid request, naming the limit."""
    from soundforge.request import MAX_EXTRA_BYTES, MAX_EXTRA_DEPTH

    deep: dict = {}
    node = deep
    for _ in range(1000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidRequestError, match="nested more than"):
        GenerationRequest(prompt="x", extra=deep)
    with pytest.raises(InvalidRequestError, match="bytes as JSON"):
        GenerationRequest(prompt="x", extra={"blob": "x" * (MAX_EXTRA_BYTES + 1)})
    shallow: dict = {}
    node = shallow
    for _ in range(MAX_EXTRA_DEPTH - 1):
        node["a"] = {}
        node = node["a"]
    assert GenerationRequest(prompt="x", extra=shallow).extra == shallow


def test_a_trim_longer_than_the_audio_is_refused_not_ignored() -> None:
    """A trim past `duration` would cut nothing: refused when the request is made, naming the field (a loop refuses
    any trim, for its own reason)."""
    with pytest.raises(InvalidRequestError) as refused:
        build_request("x", {"duration": 2, "trim": 5})
    assert refused.value.field == "trim" and "longer than the 2 s asked for" in str(refused.value)
    assert build_request("x", {"duration": 2, "trim": 2}).trim == 2
    with pytest.raises(InvalidRequestError, match="break its wrap"):
        build_request("x", {"duration": 2, "trim": 5, "loop": True})
