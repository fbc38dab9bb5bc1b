"""Style adapters (LoRAs) at generation time: ACE-Step through diffusers' own LoRA loader on a tiny random pipeline
with tiny random LoRAs made in the test (PEFT writes them as the trainers do), compared with the direct diffusers
call bit for bit; each adapter's licence in the result's licence and in the policy's decision, before it is loaded;
its files' hashes in the provenance, the cache key and the batching key; bad adapters refused, the shared pipeline
left as it was."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

from soundforge import (  # noqa: E402
    Adapter,
    GenerationRequest,
    InvalidRequestError,
    LicensePolicy,
    LicensePolicyError,
    UnsupportedFeatureError,
)
from soundforge.backends.adapters import AdapterError  # noqa: E402
from soundforge.cli import cli  # noqa: E402
from soundforge.client import Client  # noqa: E402
from soundforge.config import Config  # noqa: E402
from soundforge.errors import ConfigurationError  # noqa: E402
from soundforge.licences.licensing import LicenseRegistry  # noqa: E402
from soundforge.output.inspect import read_record  # noqa: E402
from soundforge.testing.ace_step import build_ace_step  # noqa: E402
from soundforge.testing.adapters import build_pipeline_lora, card  # noqa: E402

SECONDS = 10.0  # ACE-Step's shortest song


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return str(build_ace_step(tmp_path_factory.mktemp("ace") / "tiny"))


@pytest.fixture(scope="module")
def pipe(folder):
    from diffusers import AceStepPipeline

    pipeline = AceStepPipeline.from_pretrained(folder, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def loras(pipe, tmp_path_factory) -> dict[str, str]:
    """Tiny random LoRAs for the tiny pipeline, with cards naming MIT, CC-BY-NC-4.0 or no licence."""
    root = tmp_path_factory.mktemp("loras")
    return {
        "mit": str(build_pipeline_lora(pipe, root / "mit", seed=1, license="mit")),
        "mit2": str(build_pipeline_lora(pipe, root / "mit2", seed=2, license="mit")),
        "nc": str(build_pipeline_lora(pipe, root / "nc", seed=3, license="cc-by-nc-4.0")),
        "none": str(build_pipeline_lora(pipe, root / "none", seed=4, license=None)),
    }


def client(**kwargs) -> Client:
    providers = {"ace-step": kwargs.pop("settings", {})}
    return Client(Config.load(user_file=False, providers=providers, **kwargs.pop("config", {})), **kwargs)


def direct(pipe, seed: int, adapters: list[tuple[str, float]] = ()) -> np.ndarray:
    """The direct diffusers call as its documentation writes it: load_lora_weights, set_adapters, call, unload."""
    names = [f"style{i}" for i in range(len(adapters))]
    for name, (path, _) in zip(names, adapters, strict=True):
        pipe.load_lora_weights(path, adapter_name=name)
    if adapters:
        pipe.set_adapters(names, [scale for _, scale in adapters])
    try:
        torch.manual_seed(seed)
        with torch.inference_mode():
            return pipe(
                prompt="dreamy synth pop",
                audio_duration=SECONDS,
                num_inference_steps=2,
                generator=torch.Generator().manual_seed(seed),
                output_type="np",
            ).audios[0]
    finally:
        if adapters:
            pipe.unload_lora_weights()


def song(c: Client, folder: str, seed: int = 3, **fields):
    return c.generate("dreamy synth pop", provider=f"ace-step:{folder}", duration=SECONDS, seed=seed, steps=2, **fields)


def test_an_adapter_is_the_direct_diffusers_call_and_leaves_the_base_model(folder, pipe, loras) -> None:
    c = client()
    before = song(c, folder).audio
    styled = song(c, folder, adapters=[{"source": loras["mit"], "scale": 0.7}])
    assert np.array_equal(styled.audio, direct(pipe, 3, [(loras["mit"], 0.7)]))
    assert not np.array_equal(styled.audio, before)  # the adapter changed the song
    # Nothing stays loaded: the same client's next plain call is the base model's, bit for bit.
    assert np.array_equal(song(c, folder).audio, before)
    assert np.array_equal(before, direct(pipe, 3))
    # Two adapters stacked at their own scales, as set_adapters stacks them.
    stacked = song(c, folder, adapters=[Adapter(source=loras["mit"], scale=0.5), Adapter(source=loras["mit2"])])
    assert np.array_equal(stacked.audio, direct(pipe, 3, [(loras["mit"], 0.5), (loras["mit2"], 1.0)]))
    # The scale reaches the model.
    assert not np.array_equal(song(c, folder, adapters=[{"source": loras["mit"], "scale": 0.3}]).audio, styled.audio)


def test_each_adapter_is_recorded_with_its_licence_and_hash(folder, loras, tmp_path) -> None:
    import hashlib

    styled = song(client(), folder, adapters=[{"source": loras["mit"], "scale": 0.7}])
    weights = f"{loras['mit']}/pytorch_lora_weights.safetensors"
    sha = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    assert styled.provenance.adapters == [
        {"source": loras["mit"], "scale": 0.7, "files": {"pytorch_lora_weights.safetensors": sha}, "license": "MIT"}
    ]
    adapter = [c for c in styled.license.components if c.role == "adapter"]
    assert len(adapter) == 1 and adapter[0].license.id == "MIT" and adapter[0].source.endswith("README.md")
    assert adapter[0].quote.startswith("license: mit")
    # The files carry it: tags, sidecar, and `verify` names the adapters.
    path = styled.tracks[0].save(tmp_path / "styled.flac")
    record = read_record(path)
    assert record.fields["ADAPTERS"] == f"{loras['mit']} x0.7 (MIT) sha256:{sha[:16]}"
    assert record.provenance["adapters"][0]["files"]["pytorch_lora_weights.safetensors"] == sha
    assert any(c["role"] == "adapter" for c in record.sidecar["license"]["components"])
    out = CliRunner().invoke(cli, ["verify", str(path)])
    assert out.exit_code == 0, out.output
    assert f"with adapters: {loras['mit']} x0.7 (MIT)" in out.output


def test_a_commercial_policy_decides_on_each_adapters_licence_before_loading_it(folder, loras, tmp_path) -> None:
    # The tiny model stands for ACE-Step 1.5 (its record: MIT weights, Apache-2.0 text encoder) on the test's word.
    registry = LicenseRegistry.default().declare(
        "ace-step", folder, same_as="ACE-Step/Ace-Step1.5", reason="the test's stand-in for the release"
    )
    commercial = client(policy=LicensePolicy.commercial(), registry=registry)
    # MIT passes, the adapter's licence in the result (the model's MIT too).
    ok = song(commercial, folder, adapters=[loras["mit"]])
    assert ok.license.id == "MIT" and {c.role for c in ok.license.components} >= {"adapter"}
    # A card saying cc-by-nc-4.0 is refused, and so is an adapter with no licence on its card: both before the weight
    # file is read (the files here are not even safetensors: a load or a hash would fail differently).
    for name, licence in (("nc", "cc-by-nc-4.0"), ("none", None)):
        broken = tmp_path / f"broken-{name}"
        broken.mkdir()
        (broken / "pytorch_lora_weights.safetensors").write_bytes(b"not a safetensors file")
        (broken / "README.md").write_text(card(licence), "utf-8")
        with pytest.raises(LicensePolicyError) as info:
            song(commercial, folder, adapters=[str(broken)])
        text = str(info.value)
        assert f"adapter {broken}" in text and "declare_adapter" in text and "[adapters." in text
        assert ("not allowed" in text) if licence else ("unknown" in text)
    with pytest.raises(LicensePolicyError, match=r"CC-BY-NC-4\.0"):
        song(commercial, folder, adapters=[loras["nc"]])
    # Declared by the user (in the config, or on the registry): it passes, the declaration kept with the result.
    declared = client(
        policy=LicensePolicy.commercial(),
        registry=registry,
        config={"adapters": {loras["none"]: {"license": "Apache-2.0", "reason": "its LICENSE file says so"}}},
    )
    g = song(declared, folder, adapters=[loras["none"]])
    component = next(c for c in g.license.components if c.role == "adapter")
    assert component.license.id == "Apache-2.0" and component.quote == "its LICENSE file says so"
    by_registry = client(
        policy=LicensePolicy.commercial(),
        registry=registry.declare_adapter(loras["none"], "MIT", reason="the author's word"),
    )
    assert song(by_registry, folder, adapters=[loras["none"]]).provenance.adapters[0]["license"] == "MIT"
    # A declaration never loosens a card: the NC card still wins over a declared MIT.
    loose = client(policy=LicensePolicy.commercial(), registry=registry.declare_adapter(loras["nc"], "MIT", reason="x"))
    with pytest.raises(LicensePolicyError, match=r"CC-BY-NC-4\.0"):
        song(loose, folder, adapters=[loras["nc"]])
    with pytest.raises(ConfigurationError, match="no record of"):
        registry.declare_adapter(loras["none"], "WTFPL-ish", reason="x")
    with pytest.raises(ConfigurationError, match="no record of"):  # in the config: when the client is made
        client(config={"adapters": {loras["none"]: {"license": "WTFPL-ish", "reason": "x"}}})
    # Without a commercial policy, an NC adapter runs and its licence is the result's.
    assert song(client(), folder, adapters=[loras["nc"]]).license.commercial_use.value == "not_allowed"


def test_bad_adapters_are_typed_errors_before_generation_and_leave_the_pipeline(folder, pipe, loras, tmp_path) -> None:
    from diffusers import AceStepPipeline

    from soundforge.testing.ace_step import build_pipeline

    c = client()
    before = song(c, folder).audio
    # Missing, a pickle, a folder of two files: refused before any model call.
    cases = {
        str(tmp_path / "nowhere"): "does not exist",
        str(_file(tmp_path / "x.bin", b"\x80\x04")): "not a .safetensors file",
    }
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.safetensors").write_bytes(b"")
    (two / "b.safetensors").write_bytes(b"")
    cases[str(two)] = "holds 2 .safetensors files"
    for source, reason in cases.items():
        with pytest.raises(AdapterError, match=reason) as info:
            song(c, folder, adapters=[source])
        assert info.value.field == "adapters" and info.value.code == "invalid_adapter"
    # Trained for another model (a wider DiT: shapes differ), and keys that match no module of this one.
    other = build_pipeline(seed=7)
    other.transformer = _wider_transformer(other)
    wrong_base = build_pipeline_lora(other, tmp_path / "wrong-base", license="mit")
    no_match = _renamed_lora(loras["mit"], tmp_path / "no-match")
    for source, reason in ((wrong_base, "does not fit AceStepPipeline"), (no_match, "none of its keys match")):
        with pytest.raises(AdapterError, match=reason):
            song(c, folder, adapters=[str(source)])
        # The shared pipeline was left as it was: the next plain call is the base model's.
        assert np.array_equal(song(c, folder).audio, before)
    assert isinstance(AceStepPipeline, type)


def test_providers_that_load_no_adapters_refuse_them_naming_those_that_do(loras) -> None:
    with pytest.raises(UnsupportedFeatureError, match="adapters") as info:
        Client(Config.load(user_file=False)).generate("x", provider="synth", adapters=[loras["mit"]])
    assert {"ace-step", "musicgen"} <= set(info.value.supported_by)
    assert "stable-audio-3" not in info.value.supported_by and "stable-audio" not in info.value.supported_by
    # Stable Audio 3 and Stable Audio Open say why (no loader in diffusers; docs/adapters.md), before anything loads.
    c = Client(Config.load(user_file=False))
    request = GenerationRequest(prompt="x", adapters=[loras["mit"]])
    for name, why in (("stable-audio-3", "no LoRA loader for StableAudio3Pipeline"), ("stable-audio", "LoRAW")):
        backend = c.backend(name)
        with pytest.raises(UnsupportedFeatureError, match=why):
            backend.check(request, backend.default_model)


def test_the_cache_key_holds_the_adapters_files_and_the_batching_key_their_identity(folder, loras, tmp_path) -> None:
    import shutil

    from soundforge.ops.cache import DiskCache

    own = tmp_path / "own"
    shutil.copytree(loras["mit"], own)
    c = client(cache=DiskCache(tmp_path / "cache"))
    first = song(c, folder, adapters=[str(own)])
    assert song(c, folder, adapters=[str(own)]).provenance.cache_hit
    # The same path, other weights: a new call, never the cached song of the old file.
    shutil.copy(f"{loras['mit2']}/pytorch_lora_weights.safetensors", own / "pytorch_lora_weights.safetensors")
    changed = song(c, folder, adapters=[str(own)])
    assert not changed.provenance.cache_hit and not np.array_equal(changed.audio, first.audio)
    # Concurrent requests with other adapters never share a pipeline call (with the same ones they do).
    batching = client(settings={"batch_window": 1.5})

    async def two(adapters_a, adapters_b):
        calls = [
            batching.agenerate(
                "dreamy synth pop",
                provider=f"ace-step:{folder}",
                duration=SECONDS,
                seed=i,
                steps=2,
                adapters=adapters,
            )
            for i, adapters in enumerate((adapters_a, adapters_b))
        ]
        return await asyncio.gather(*calls)

    apart = asyncio.run(two([loras["mit"]], [loras["mit2"]]))
    assert [g.provenance.parameters["batched_requests"] for g in apart] == [1, 1]
    alone = song(client(settings={"batching": False}), folder, seed=1, adapters=[loras["mit2"]])
    assert np.array_equal(apart[1].audio, alone.audio)


def test_requests_the_cli_serve_and_batch_take_adapters(folder, loras, tmp_path) -> None:
    request = GenerationRequest(prompt="x", adapters=[loras["mit"], {"source": loras["mit2"], "scale": -0.5}])
    assert GenerationRequest.model_validate_json(request.model_dump_json()) == request
    assert request.record()["adapters"] == [
        {"source": loras["mit"], "scale": 1.0},
        {"source": loras["mit2"], "scale": -0.5},
    ]
    assert Adapter.parse("owner/style:0.7") == Adapter(source="owner/style", scale=0.7)
    assert Adapter.parse("owner/style") == Adapter(source="owner/style")
    for bad, why in (
        ([loras["mit"], loras["mit"]], "same adapter twice"),
        ([{"source": "a/b", "scale": 99}], "less than or equal to 8"),
        ([f"x{i}/y" for i in range(9)], "1 to 8 adapters"),
        ([" a/b"], "spaces around it"),
    ):
        with pytest.raises(InvalidRequestError, match=why):
            GenerationRequest(prompt="x", adapters=bad)
    out = tmp_path / "cli.wav"
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            "x",
            "-p",
            f"ace-step:{folder}",
            "-d",
            "10",
            "--seed",
            "1",
            "--param",
            "steps=2",
            "--adapter",
            f"{loras['mit']}:0.7",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_record(out).provenance["adapters"][0]["scale"] == 0.7
    bad = CliRunner().invoke(cli, ["generate", "x", "--adapter", "a/b:99", "-o", str(tmp_path / "no.wav")])
    assert bad.exit_code == 2 and "--adapter" in bad.output and not (tmp_path / "no.wav").exists()
    # A batch row names adapters like any field.
    manifest = tmp_path / "rows.jsonl"
    row = {
        "name": "styled",
        "prompt": "x",
        "provider": f"ace-step:{folder}",
        "duration": 10,
        "seed": 2,
        "steps": 2,
        "adapters": [{"source": loras["mit"], "scale": 0.7}],
    }
    manifest.write_text(json.dumps(row) + "\n", "utf-8")
    done = CliRunner().invoke(cli, ["batch", str(manifest), "-o", str(tmp_path / "batch")])
    assert done.exit_code == 0, done.output
    made = [p for p in (tmp_path / "batch").rglob("*.wav")]
    assert len(made) == 1 and read_record(made[0]).provenance["adapters"][0]["source"] == loras["mit"]


def test_a_service_loads_local_adapters_only_from_its_adapter_folders(folder, loras, tmp_path) -> None:
    """A hostile client must not make the server read (or learn of) any file it can reach: local adapters come from
    `[serve] adapter_folders` only, refused at admission (422, nothing queued); inside them, a job records them."""
    pytest.importorskip("fastapi")
    import httpx

    from tests.serve.test_app import running, wait

    parent = str(Path(loras["mit"]).parent)
    spec = f"ace-step:{folder}"
    with (
        running(tmp_path / "jobs", engine="inline", adapter_folders=[parent]) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):

        def submit(source: str) -> httpx.Response:
            request = {"prompt": "x", "duration": SECONDS, "seed": 1, "steps": 2, "adapters": [source]}
            return http.post("/v1/generations", json={"request": request, "provider": spec})

        for outside in ("/etc/passwd", str(tmp_path / "nothing-here"), f"{parent}/../{Path(folder).name}"):
            answer = submit(outside)
            assert answer.status_code == 422, answer.text
            error = answer.json()["error"]
            assert error["field"] == "adapters" and "adapter folders" in error["message"]
            assert "passwd" not in answer.text.replace("/etc/passwd", "")  # the file's content never comes back
        answer = submit(loras["mit"])
        assert answer.status_code == 202, answer.text
        record = wait(http, answer.json()["id"], timeout=120)
        assert record["status"] == "succeeded", record
        assert record["provenance"]["adapters"][0]["source"] == loras["mit"]
        assert any(c["role"] == "adapter" for c in record["license"]["components"])


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


def _wider_transformer(pipeline):
    """The pipeline's DiT rebuilt twice as wide: a LoRA trained on it has shapes this test's model does not."""
    config = dict(pipeline.transformer.config)
    for key in ("hidden_size", "intermediate_size"):
        if key in config:
            config[key] = config[key] * 2
    return type(pipeline.transformer).from_config(config)


def _renamed_lora(folder: str, out):
    """A LoRA whose keys name modules this model does not have."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(f"{folder}/pytorch_lora_weights.safetensors")
    out.mkdir()
    renamed = {
        k.replace("to_q", "nowhere_q").replace("to_k", "nowhere_k").replace("to_v", "nowhere_v"): v
        for k, v in tensors.items()
    }
    save_file(renamed, str(out / "pytorch_lora_weights.safetensors"))
    return out


# --- MusicGen (transformers) through PEFT ------------------------------------------------------------------------
MUSICGEN_SECONDS, MUSICGEN_FRAMES = 0.1, 50  # the tiny checkpoint: 500 frames a second, 16 kHz


@pytest.fixture(scope="module")
def musicgen(tmp_path_factory) -> dict[str, str]:
    """A tiny random MusicGen and random LoRAs for it written by PEFT's save_pretrained (cards: MIT)."""
    from transformers import MusicgenForConditionalGeneration

    from soundforge.testing.adapters import build_peft_lora
    from soundforge.testing.musicgen import build_musicgen

    root = tmp_path_factory.mktemp("musicgen-adapters")
    folder = str(build_musicgen(root / "tiny"))
    made = {"folder": folder}
    for name, seed in (("lora", 1), ("lora2", 2)):
        model = MusicgenForConditionalGeneration.from_pretrained(folder)
        made[name] = str(build_peft_lora(model, root / name, seed=seed))
    return made


def musicgen_direct(folder: str, seed: int, adapters: list[tuple[str, float]] = ()) -> np.ndarray:
    """The direct transformers + PEFT call: the model wrapped by PeftModel.from_pretrained (then load_adapter for
    more), the adapters active at their scales, model.generate; the first track's samples."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    model = MusicgenForConditionalGeneration.from_pretrained(folder).eval()
    names = [f"style{i}" for i in range(len(adapters))]
    if adapters:
        wrapped = PeftModel.from_pretrained(model, adapters[0][0], adapter_name=names[0])
        for name, (path, _) in zip(names[1:], adapters[1:], strict=True):
            wrapped.load_adapter(path, adapter_name=name)
        wrapped.base_model.set_adapter(names)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for name, (_, scale) in zip(names, adapters, strict=True):
                    module.set_scale(name, scale)
    inputs = AutoTokenizer.from_pretrained(folder)(["calm piano"], return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=MUSICGEN_FRAMES + 3).numpy()
    return out[0, 0, :1600]


def test_a_musicgen_adapter_is_the_direct_peft_call_and_leaves_the_base_model(musicgen) -> None:
    c = Client(Config.load(user_file=False))
    spec = f"musicgen:{musicgen['folder']}"

    def make(**fields):
        return c.generate("calm piano", provider=spec, duration=MUSICGEN_SECONDS, seed=42, **fields).audio[0]

    before = make()
    styled = make(adapters=[musicgen["lora"]])
    assert np.array_equal(styled, musicgen_direct(musicgen["folder"], 42, [(musicgen["lora"], 1.0)]))
    assert not np.array_equal(styled, before)
    assert np.array_equal(make(), before)  # unloaded: the next call is the base model's
    assert np.array_equal(before, musicgen_direct(musicgen["folder"], 42))
    two = [(musicgen["lora"], 0.5), (musicgen["lora2"], 1.5)]
    stacked = make(adapters=[{"source": s, "scale": k} for s, k in two])
    assert np.array_equal(stacked, musicgen_direct(musicgen["folder"], 42, two))
    # Streamed, the same adapters give the same audio as the whole call.
    streamed = c.stream("calm piano", provider=spec, duration=MUSICGEN_SECONDS, seed=42, adapters=[musicgen["lora"]])
    for _ in streamed:
        pass
    assert np.array_equal(streamed.result().audio[0], styled)
    # The audiocraft engine loads none: refused by the provider's check (routing's, before anything runs), naming
    # the engine that does. (Asked directly: audiocraft needs torchaudio, which this machine may not have.)
    audiocraft = Client(Config.load(user_file=False, providers={"musicgen": {"engine": "audiocraft"}}))
    request = GenerationRequest(prompt="calm piano", duration=MUSICGEN_SECONDS, adapters=[musicgen["lora"]])
    with pytest.raises(UnsupportedFeatureError, match="engine = 'transformers' does"):
        audiocraft.backend("musicgen").check(request, musicgen["folder"])


def test_a_musicgen_adapter_that_does_not_fit_is_refused_and_the_model_restored(musicgen, loras, tmp_path) -> None:
    c = Client(Config.load(user_file=False))
    spec = f"musicgen:{musicgen['folder']}"
    before = c.generate("calm piano", provider=spec, duration=MUSICGEN_SECONDS, seed=1).audio
    # ACE-Step's LoRA (no adapter_config.json: diffusers' format), and a PEFT LoRA whose targets MusicGen lacks.
    import shutil

    foreign = tmp_path / "foreign"
    shutil.copytree(musicgen["lora"], foreign)
    config = json.loads((foreign / "adapter_config.json").read_text("utf-8"))
    config["target_modules"] = ["nowhere_proj"]
    (foreign / "adapter_config.json").write_text(json.dumps(config), "utf-8")
    for source, reason in ((loras["mit"], "no adapter_config.json"), (str(foreign), "none of its target modules")):
        with pytest.raises(AdapterError, match=reason):
            c.generate("calm piano", provider=spec, duration=MUSICGEN_SECONDS, seed=1, adapters=[source])
        assert np.array_equal(c.generate("calm piano", provider=spec, duration=MUSICGEN_SECONDS, seed=1).audio, before)


def test_a_hub_adapter_comes_from_the_hugging_face_cache_with_its_card_and_revision(
    folder, pipe, loras, tmp_path, monkeypatch
) -> None:
    import shutil

    from soundforge.testing.hub import REVISION, install_in_hub_cache

    hub = tmp_path / "hub"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))  # read at each call
    weights = tmp_path / "weights-only"
    weights.mkdir()
    shutil.copy(f"{loras['mit']}/pytorch_lora_weights.safetensors", weights)
    install_in_hub_cache(weights, "someone/style-lora", hub, card=card("apache-2.0"))
    g = song(client(), folder, adapters=["someone/style-lora"])
    assert np.array_equal(g.audio, direct(pipe, 3, [(loras["mit"], 1.0)]))  # the same weights, from the cache
    record = g.provenance.adapters[0]
    assert record["source"] == "someone/style-lora" and record["revision"] == REVISION
    assert record["license"] == "Apache-2.0"  # the cached snapshot's own card
    # Not in the cache, downloads off (as in every test): a typed error with the command that fetches it.
    with pytest.raises(AdapterError, match="not in the Hugging Face cache") as info:
        song(client(), folder, adapters=["someone/other-lora"])
    assert "hf download someone/other-lora" in str(info.value)


def test_loaded_adapters_are_counted_in_the_memory_ledger_while_they_are_loaded(folder, loras) -> None:
    c = client()
    during: list[list[tuple[str, str, int]]] = []

    def look(event) -> None:  # called on the engine's thread inside the pipeline call, adapters loaded
        during.append([(m.provider, m.model, m.nbytes) for m in c.loaded_models()])

    song(c, folder, adapters=[loras["mit"], loras["mit2"]], on_progress=look)
    size = sum(Path(loras[n], "pytorch_lora_weights.safetensors").stat().st_size for n in ("mit", "mit2"))
    counted = [(p, nbytes) for p, model, nbytes in during[0] if model.startswith("adapters ")]
    assert counted == [("ace-step", size)]
    assert not any(m.model.startswith("adapters ") for m in c.loaded_models())  # forgotten once unloaded


def test_a_hub_adapter_is_fetched_only_once_its_card_passes_the_policy(folder, pipe, loras, tmp_path, monkeypatch):
    """Against the fake hub (tests/fake_hub.py): a provider named in the request may download an adapter; its card
    comes first, alone, and a refused adapter's weights are never requested."""
    import shutil

    import huggingface_hub.constants as constants

    from ..fake_hub import COMMIT, FakeHub

    hub = FakeHub()
    for name, licence in (("someone/nc-style", "cc-by-nc-4.0"), ("someone/mit-style", "mit")):
        repo = tmp_path / name.replace("/", "--")
        repo.mkdir()
        shutil.copy(f"{loras['mit']}/pytorch_lora_weights.safetensors", repo)
        (repo / "README.md").write_text(card(licence), "utf-8")
        hub.add(name, repo)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    try:
        registry = LicenseRegistry.default().declare("ace-step", folder, same_as="ACE-Step/Ace-Step1.5", reason="test")
        commercial = client(policy=LicensePolicy.commercial(), registry=registry)
        with pytest.raises(LicensePolicyError, match=r"CC-BY-NC-4\.0"):
            song(commercial, folder, adapters=["someone/nc-style"])
        fetched = [path for method, path in hub.requests if method == "GET" and "nc-style" in path]
        assert fetched == ["/someone/nc-style/resolve/main/README.md"]  # the card, never the weights
        g = song(commercial, folder, adapters=["someone/mit-style"])
        assert g.provenance.adapters[0]["revision"] == COMMIT and g.provenance.adapters[0]["license"] == "MIT"
        assert np.array_equal(g.audio, direct(pipe, 3, [(loras["mit"], 1.0)]))
    finally:
        hub.close()
