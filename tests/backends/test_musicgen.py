"""MusicGen through transformers on tiny random checkpoints built in the test: the real code path, no weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from soundforge import (  # noqa: E402
    CancelToken,
    ConfigurationError,
    GenerationCancelledError,
    InvalidRequestError,
    LicensePolicy,
    LicensePolicyError,
    ModelNotAvailableError,
    UnsupportedFeatureError,
)
from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.licences.licensing import LicenseRegistry  # noqa: E402
from soundforge.testing.musicgen import build_musicgen  # noqa: E402

SR, FRAME_RATE = 16000, 500  # the tiny checkpoints: 16 kHz EnCodec, hop 32


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("musicgen")
    return {
        kind: str(build_musicgen(root / kind, melody=kind == "melody", stereo=kind == "stereo"))
        for kind in ("mono", "melody", "stereo")
    }


def client(**settings) -> Client:
    return Client(Config.load(user_file=False, providers={"musicgen": settings}))


def direct(folder: str, prompts: list[str], seed: int, new_tokens: int, **kwargs) -> np.ndarray:
    """The plain transformers call a user would write, for comparison."""
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    model = MusicgenForConditionalGeneration.from_pretrained(folder).eval()
    inputs = AutoTokenizer.from_pretrained(folder)(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    with torch.inference_mode():
        return model.generate(**inputs, max_new_tokens=new_tokens, **kwargs).numpy()


def test_identical_to_direct_transformers_call(checkpoints) -> None:
    folder = checkpoints["mono"]
    g = client().generate(
        "calm piano with strings",
        provider=f"musicgen:{folder}",
        duration=0.1,
        seed=42,
        guidance=3.0,
        temperature=0.9,
        top_k=20,
    )
    frames = 50  # 0.1 s at 500 frames/s
    expected = direct(
        folder, ["calm piano with strings"], 42, frames + 3, guidance_scale=3.0, temperature=0.9, top_k=20
    )
    track = g.tracks[0]
    assert track.audio.shape == (1, 1600) and track.sample_rate == SR
    assert np.array_equal(track.audio[0], expected[0, 0, :1600])
    assert track.provenance.parameters["guidance_scale"] == 3.0 and track.provenance.seed == 42
    # A folder is no published model: unknown, unless the user declares which model it holds.
    assert track.license.id == "LicenseRef-Unknown" and track.provenance.engine["transformers"]
    declared = LicenseRegistry.default().declare(
        "musicgen", folder, same_as="facebook/musicgen-small", reason="a copy of the published weights"
    )
    again = Client(Config.load(user_file=False), registry=declared).generate(
        "calm piano with strings", provider=f"musicgen:{folder}", duration=0.1, seed=42
    )
    assert again.license.id == "CC-BY-NC-4.0"


def test_seeds_and_batches(checkpoints) -> None:
    spec = f"musicgen:{checkpoints['mono']}"
    c = client()
    a = c.generate("upbeat drums", provider=spec, duration=0.05, seed=1)
    b = c.generate("upbeat drums", provider=spec, duration=0.05, seed=1)
    other = c.generate("upbeat drums", provider=spec, duration=0.05, seed=2)
    assert a.audio.tobytes() == b.audio.tobytes()
    assert not np.array_equal(a.audio, other.audio)
    batch = c.generate("upbeat drums", provider=spec, duration=0.05, seed=1, num_outputs=3)
    assert len(batch.tracks) == 3 and len({t.provenance.pcm_sha256 for t in batch.tracks}) == 3
    assert [t.provenance.parameters["batch_index"] for t in batch.tracks] == [0, 1, 2]
    expected = direct(checkpoints["mono"], ["upbeat drums"] * 3, 1, 25 + 3)
    assert np.array_equal(batch.tracks[2].audio[0], expected[2, 0, :800])


def test_stereo(checkpoints) -> None:
    g = client().generate("synthwave bass", provider=f"musicgen:{checkpoints['stereo']}", duration=0.04, seed=3)
    assert g.audio.shape == (2, 640) and not np.array_equal(g.audio[0], g.audio[1])
    with pytest.raises(UnsupportedFeatureError, match="channels"):
        client().generate("x", provider=f"musicgen:{checkpoints['stereo']}", duration=0.04, channels=1)


def test_melody_conditioning(checkpoints) -> None:
    spec = f"musicgen:{checkpoints['melody']}"
    t = np.arange(32000 * 2) / 32000
    tune_a = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    tune_b = (0.5 * np.sin(2 * np.pi * 311 * t)).astype(np.float32)
    a = client().generate("jazz melody", provider=spec, duration=0.04, seed=5, melody=(tune_a, 32000))
    a2 = client().generate("jazz melody", provider=spec, duration=0.04, seed=5, melody=(tune_a, 32000))
    b = client().generate("jazz melody", provider=spec, duration=0.04, seed=5, melody=(tune_b, 32000))
    assert a.audio.tobytes() == a2.audio.tobytes() and not np.array_equal(a.audio, b.audio)
    assert "melody" in a.provenance.request and len(a.provenance.request["melody"]["sha256"]) == 64
    with pytest.raises(UnsupportedFeatureError, match="melody"):
        client().generate("x", provider=f"musicgen:{checkpoints['mono']}", duration=0.04, melody=(tune_a, 32000))


def test_continuation_keeps_the_prompt(checkpoints) -> None:
    spec = f"musicgen:{checkpoints['mono']}"
    c = client()
    prompt = c.generate("lofi beat", provider=spec, duration=0.05, seed=8)
    cont = c.generate("lofi beat", provider=spec, duration=0.1, seed=9, audio_prompt=(prompt.audio, SR))
    assert cont.audio.shape == (1, 1600)
    head = cont.audio[0, :800]
    assert np.corrcoef(head, prompt.audio[0])[0, 1] > 0.5  # the prompt, re-decoded by EnCodec, leads the output
    with pytest.raises(InvalidRequestError, match="shorter"):
        c.generate("x", provider=spec, duration=0.05, audio_prompt=(prompt.audio, SR))
    with pytest.raises(InvalidRequestError, match="variation"):
        c.generate("x", provider=spec, duration=0.1, audio_prompt=(prompt.audio, SR), audio_prompt_mode="variation")


def test_long_form_exact_length_and_smooth_seams(checkpoints) -> None:
    spec = f"musicgen:{checkpoints['mono']}"
    events = []
    g = client(window=0.2, extend_stride=0.1).generate(
        "ambient strings", provider=spec, duration=0.55, seed=4, on_progress=events.append
    )
    audio = g.audio[0]
    assert audio.shape == (round(0.55 * SR),)
    assert g.provenance.parameters["extend_stride"] == 0.1
    # progress covered every decoding step of every chunk, ending at the total
    assert events[-1].done == events[-1].total and len(events) == events[-1].total
    # no click: the biggest sample-to-sample jump at each seam is within the signal's usual range
    jumps = np.abs(np.diff(audio))
    typical = np.percentile(jumps, 99.9)
    for seam_at in (round(0.2 * SR) + k * round(0.1 * SR) for k in range(3)):
        assert jumps[seam_at - 40 : seam_at + 40].max() <= typical * 1.5 + 1e-6


def test_cancellation_between_steps(checkpoints) -> None:
    token = CancelToken()
    steps = []

    def on_progress(event) -> None:
        steps.append(event.done)
        if event.done == 5:
            token.cancel()

    with pytest.raises(GenerationCancelledError):
        client().generate(
            "x", provider=f"musicgen:{checkpoints['mono']}", duration=0.1, seed=1, on_progress=on_progress, cancel=token
        )
    assert steps[-1] == 5


def test_model_cache_and_unload(checkpoints) -> None:
    c = client(max_loaded_models=1)
    spec = f"musicgen:{checkpoints['mono']}"
    c.generate("x", provider=spec, duration=0.02, seed=1)
    backend = c.backend("musicgen")
    engine = backend.strategy()
    first = engine.load(checkpoints["mono"])
    c.generate("x", provider=spec, duration=0.02, seed=1)
    assert engine.load(checkpoints["mono"]) is first  # reused, not reloaded
    c.generate("x", provider=f"musicgen:{checkpoints['stereo']}", duration=0.02, seed=1)
    assert engine.cache.keys() == [checkpoints["stereo"]]
    backend.unload()
    assert not engine.cache.keys()


def test_missing_weights_fail_fast_with_the_fix(tmp_path) -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as info:
        client().generate("x", provider="musicgen:facebook/musicgen-small", duration=1)
    assert time.perf_counter() - start < 10
    assert "hf download facebook/musicgen-small" in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        client().generate("x", provider=f"musicgen:{tmp_path}/nothing-here", duration=1)


def test_extra_validation_and_policy(checkpoints) -> None:
    spec = f"musicgen:{checkpoints['mono']}"
    with pytest.raises(InvalidRequestError, match="unknown musicgen extra"):
        client().generate("x", provider=spec, duration=0.02, extra={"cfg_coef": 3})
    with pytest.raises(InvalidRequestError, match="bool"):
        client().generate("x", provider=spec, duration=0.02, extra={"do_sample": "yes"})
    greedy_a = client().generate("x", provider=spec, duration=0.02, seed=1, extra={"do_sample": False})
    greedy_b = client().generate("x", provider=spec, duration=0.02, seed=2, extra={"do_sample": False})
    assert greedy_a.audio.tobytes() == greedy_b.audio.tobytes()
    declared = LicenseRegistry.default().declare(
        "musicgen", checkpoints["mono"], same_as="facebook/musicgen-small", reason="test"
    )
    commercial = Client(Config.load(user_file=False), policy=LicensePolicy.commercial(), registry=declared)
    with pytest.raises(LicensePolicyError, match=r"CC-BY-NC-4\.0"):
        commercial.generate("x", provider=spec, duration=0.02)
    assert not commercial.loaded_models()  # refused before anything loaded


def test_missing_extra_is_reported(monkeypatch) -> None:
    import importlib.util

    from soundforge.backends.musicgen import MusicgenBackend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    status = MusicgenBackend().availability()
    assert not status.available and status.fix == 'pip install "soundforge[musicgen]"'


def test_concurrent_requests_share_one_batch_and_match_the_direct_batch(checkpoints) -> None:
    import asyncio

    spec = f"musicgen:{checkpoints['mono']}"
    c = client(batch_window=0.5, max_batch_size=8)
    prompts = ["calm piano", "upbeat drums", "dark techno", "jazz guitar"]

    async def run():
        return await asyncio.gather(
            *(c.agenerate(p, provider=spec, duration=0.05, seed=10 + i, temperature=0.8) for i, p in enumerate(prompts))
        )

    results = asyncio.run(run())
    params = [g.provenance.parameters for g in results]
    assert all(p["batched_requests"] == 4 and p["batch_outputs"] == 4 for p in params)
    seeds = {g.provenance.seed for g in results}
    assert len(seeds) == 1  # the batch's seed, recorded on every track
    order = sorted(range(4), key=lambda i: params[i]["batch_offset"])
    expected = direct(checkpoints["mono"], [prompts[i] for i in order], seeds.pop(), 25 + 3, temperature=0.8)
    for row, i in enumerate(order):
        assert np.array_equal(results[i].audio[0], expected[row, 0, :800])


def test_batching_keeps_different_settings_apart_and_can_be_switched_off(checkpoints) -> None:
    import asyncio

    spec = f"musicgen:{checkpoints['mono']}"

    async def run(c):
        return await asyncio.gather(
            c.agenerate("a", provider=spec, duration=0.05, seed=1, temperature=0.7),
            c.agenerate("b", provider=spec, duration=0.05, seed=2, temperature=0.7),
            c.agenerate("c", provider=spec, duration=0.05, seed=3, temperature=1.3),
            c.agenerate("d", provider=spec, duration=0.1, seed=4, temperature=0.7),
        )

    mixed = asyncio.run(run(client(batch_window=0.5)))
    assert [g.provenance.parameters["batched_requests"] for g in mixed] == [2, 2, 1, 1]
    off = asyncio.run(run(client(batching=False)))
    assert all("batched_requests" not in g.provenance.parameters for g in off)
    alone = client(batching=False).generate("a", provider=spec, duration=0.05, seed=1, temperature=0.7)
    assert alone.audio.tobytes() == off[0].audio.tobytes()


def test_cancelling_one_request_of_a_batch_spares_the_others(checkpoints) -> None:
    import threading

    spec = f"musicgen:{checkpoints['mono']}"
    c = client(batch_window=0.5)
    token = CancelToken()
    outcome: dict[str, object] = {}

    def run(name: str, cancel: CancelToken | None) -> None:
        try:
            outcome[name] = c.generate(
                name,
                provider=spec,
                duration=0.2,
                seed=1,
                cancel=cancel,
                on_progress=(lambda e: token.cancel() if e.done == 3 else None) if cancel else None,
            )
        except GenerationCancelledError as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=run, args=("kept", None)), threading.Thread(target=run, args=("gone", token))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(outcome["gone"], GenerationCancelledError)
    kept = outcome["kept"]
    assert not isinstance(kept, Exception) and kept.provenance.parameters["batched_requests"] == 2


def test_engine_work_runs_on_one_thread_whatever_the_caller(checkpoints) -> None:
    """Loads and generation go to the CPU compute thread, from sync, threaded and async callers alike (two threads
    running torch each get an OpenMP team, which slows both: soundforge.backends._compute)."""
    import asyncio
    import threading

    spec = f"musicgen:{checkpoints['mono']}"
    names: set[str] = set()

    def record(event) -> None:
        names.add(threading.current_thread().name)

    batched, plain = client(batch_window=0.2), client(batching=False)
    batched.generate("a", provider=spec, duration=0.05, seed=1, on_progress=record)
    worker = threading.Thread(target=lambda: plain.generate("b", provider=spec, duration=0.05, on_progress=record))
    worker.start()
    worker.join()

    async def run():
        await asyncio.gather(
            *(c.agenerate(p, provider=spec, duration=0.05, on_progress=record) for c in (batched, plain) for p in "cd")
        )

    asyncio.run(run())
    assert names == {"soundforge-cpu_0"}


def test_routing_checks_the_engine_the_request_will_run_on(checkpoints, monkeypatch) -> None:
    from soundforge.backends.musicgen import MusicgenBackend

    backend = MusicgenBackend()
    chosen: list[str] = []
    real = MusicgenBackend.engine

    def spy(self, request=None):
        chosen.append(real(self, request))
        return chosen[-1]

    monkeypatch.setattr(MusicgenBackend, "engine", spy)
    from soundforge.request import GenerationRequest

    per_request = GenerationRequest(prompt="x", duration=0.5, extra={"engine": "audiocraft"})
    backend.availability(per_request)
    backend.model_availability(checkpoints["mono"], allow_fetch=False, request=per_request)
    assert chosen == ["audiocraft", "audiocraft"]  # not the configured (default) transformers engine
    with pytest.raises(InvalidRequestError, match="unknown musicgen engine"):
        client().generate("x", provider=f"musicgen:{checkpoints['mono']}", duration=0.5, extra={"engine": "jax"})


def test_the_static_cache_decode_gives_the_eager_tokens_and_is_the_direct_static_call(checkpoints) -> None:
    """`decode = "static"` (#44: a KV cache allocated once per call, what transformers compiles on CUDA) makes the
    same audio as the eager decoder on this CPU, for one request, a guided batch of concurrent ones, and a long-form
    call over several windows; and it is the direct `generate(cache_implementation="static")` call."""
    folder = checkpoints["mono"]
    spec = f"musicgen:{folder}"
    eager, static = client(decode="eager"), client(decode="static")
    one = {"duration": 0.1, "seed": 42, "guidance": 3.0, "top_k": 20}
    a = eager.generate("calm piano with strings", provider=spec, **one)
    b = static.generate("calm piano with strings", provider=spec, **one)
    assert np.array_equal(a.audio, b.audio)
    expected = direct(
        folder, ["calm piano with strings"], 42, 53, guidance_scale=3.0, top_k=20, cache_implementation="static"
    )
    assert np.array_equal(b.tracks[0].audio[0], expected[0, 0, :1600])
    two = {"duration": 0.1, "seed": 7, "num_outputs": 2}
    assert np.array_equal(
        eager.generate("drums", provider=spec, **two).audio, static.generate("drums", provider=spec, **two).audio
    )
    long_form = {"duration": 0.5, "seed": 3, "extra": {"window": 0.2, "extend_stride": 0.1}}
    assert np.array_equal(
        eager.generate("ambient", provider=spec, **long_form).audio,
        static.generate("ambient", provider=spec, **long_form).audio,
    )
    with pytest.raises(ConfigurationError, match="decode = 'turbo' is not one of auto, eager, static, compiled, fast"):
        client(decode="turbo").generate("x", provider=spec, duration=0.1)


def test_the_fast_decode_gives_the_eager_tokens_through_our_own_step(checkpoints) -> None:
    """`decode = "fast"` (#44): transformers' generation loop around soundforge's own decoder step makes the audio
    of the eager decoder, for one guided request (the direct `generate()` call too), a batch of two, a long-form call
    over several windows, a stereo model and a continuation (its audio prompt enters the step in one call);
    MusicGen-Melody, whose decoder has no cross-attention, is refused."""
    folder, spec = checkpoints["mono"], f"musicgen:{checkpoints['mono']}"
    eager, fast = client(decode="eager"), client(decode="fast")
    one = {"duration": 0.1, "seed": 42, "guidance": 3.0, "top_k": 20}
    a = fast.generate("calm piano with strings", provider=spec, **one)
    assert np.array_equal(a.audio, eager.generate("calm piano with strings", provider=spec, **one).audio)
    expected = direct(folder, ["calm piano with strings"], 42, 53, guidance_scale=3.0, top_k=20)
    assert np.array_equal(a.tracks[0].audio[0], expected[0, 0, :1600])
    for prompt, settings, model in (
        ("drums", {"duration": 0.1, "seed": 7, "num_outputs": 2}, spec),
        ("ambient", {"duration": 0.5, "seed": 3, "extra": {"window": 0.2, "extend_stride": 0.1}}, spec),
        ("upbeat rock", {"duration": 0.06, "seed": 5}, f"musicgen:{checkpoints['stereo']}"),
        ("lofi beat", {"duration": 0.15, "seed": 9, "audio_prompt": (a.audio, SR)}, spec),  # a prompt's many tokens
    ):
        mine = fast.generate(prompt, provider=model, **settings).audio
        assert np.array_equal(mine, eager.generate(prompt, provider=model, **settings).audio), prompt
    with pytest.raises(ConfigurationError, match="MusicGen-Melody"):
        fast.generate("jazz", provider=f"musicgen:{checkpoints['melody']}", duration=0.04)
