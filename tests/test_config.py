import pytest

from soundforge import ConfigurationError
from soundforge.config import Config, user_config_path


def test_layers_later_wins(tmp_path, monkeypatch) -> None:
    user = user_config_path()
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text('default_provider = "synth"\n[providers.musicgen]\nmodel = "a"\ndevice = "cpu"\n')
    project = tmp_path / "soundforge.toml"
    project.write_text('[providers.musicgen]\nmodel = "b"\n[policy]\nrequire_commercial_use = true\n')
    extra = tmp_path / "extra.toml"
    extra.write_text('fallbacks = ["synth"]\n[aliases]\nfast = "synth"\n')
    env = {
        "SOUNDFORGE_CONFIG": str(extra),
        "SOUNDFORGE_MUSICGEN_DEVICE": "cuda",
        "SOUNDFORGE_POLICY_ANNUAL_REVENUE_USD": "250000",
        "SOUNDFORGE_STABLE_AUDIO_STEPS": "50",
    }
    cfg = Config.load(env=env, cwd=tmp_path, default_provider="auto")
    assert cfg.default_provider == "auto"  # argument beats user file
    assert cfg.providers["musicgen"] == {"model": "b", "device": "cuda"}  # merged key by key
    assert cfg.policy.require_commercial_use and cfg.policy.annual_revenue_usd == 250000
    assert cfg.fallbacks == ("synth",) and cfg.aliases == {"fast": "synth"}
    assert cfg.providers["stable-audio"] == {"steps": 50}


def test_bad_config_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigurationError, match="cannot parse"):
        Config.load(bad, user_file=False)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[policy]\nrequire_commercial_use = 'maybe'\nbogus = 1\n")
    with pytest.raises(ConfigurationError, match="policy"):
        Config.load(wrong, user_file=False)
    with pytest.raises(ConfigurationError, match="does not exist"):
        Config.load(tmp_path / "missing.toml", user_file=False)


def test_alias_resolves_in_client(tmp_path) -> None:
    from soundforge.client import Client

    cfg = tmp_path / "c.toml"
    cfg.write_text('default_provider = "fast"\n[aliases]\nfast = "synth"\n')
    g = Client(cfg).generate("x", duration=1, seed=1)
    assert g.provenance.provider == "synth"


def test_serve_section_and_its_environment_variables(tmp_path) -> None:
    (tmp_path / "soundforge.toml").write_text(
        '[serve]\nport = 9001\nworkers = 2\ncors_origins = ["https://a.example"]\n'
    )
    env = {"SOUNDFORGE_SERVE_PORT": "9002", "SOUNDFORGE_SERVE_TOKEN": "secret-value"}
    config = Config.load(user_file=False, cwd=tmp_path, env=env)
    assert (
        config.serve.port == 9002 and config.serve.workers == 2 and config.serve.cors_origins == ("https://a.example",)
    )
    assert config.serve.token(env) == "secret-value" and "secret-value" not in repr(config)
    assert Config.load(user_file=False, cwd=tmp_path, env={}).serve.token({}) is None
    (tmp_path / "soundforge.toml").write_text("[serve]\nmax_queue = 0\n")
    with pytest.raises(ConfigurationError, match=r"serve\.max_queue"):
        Config.load(user_file=False, cwd=tmp_path, env={})


def test_unknown_provider_settings_are_refused_with_the_known_ones() -> None:
    from soundforge.client import Client

    client = Client(Config.load(user_file=False, providers={"stability": {"api_kee": "x"}, "synth": {"tempo": 1}}))
    for name, typo in (("stability", "api_kee"), ("synth", "tempo")):
        with pytest.raises(ConfigurationError, match=typo) as info:
            client.generate("x", provider=name, duration=1)
        assert "reads:" in str(info.value)
    # Every setting the docs name for a provider is accepted.
    Client(
        Config.load(
            user_file=False,
            providers={
                "musicgen": {"device": "cpu", "batch_window": 0.01, "plan": "x"},
                "replicate": {"prefer_wait": 0, "poll_interval": 0.1},
            },
        )
    )
