import pytest

from soundforge.licensing import CommercialUse, License, LicenseComponent, LicenseRegistry
from soundforge.policy import LicensePolicy

REG = LicenseRegistry.default()


@pytest.mark.parametrize("provider, model, lid, commercial", [
    ("synth", "default", "CC0-1.0", "allowed"),
    ("musicgen", "facebook/musicgen-small", "CC-BY-NC-4.0", "not_allowed"),
    ("musicgen", "facebook/musicgen-stereo-melody-large", "CC-BY-NC-4.0", "not_allowed"),
    ("audiogen", "facebook/audiogen-medium", "CC-BY-NC-4.0", "not_allowed"),
    ("magnet", "facebook/magnet-small-10secs", "CC-BY-NC-4.0", "not_allowed"),
    ("encodec", "facebook/encodec_32khz", "CC-BY-NC-4.0", "not_allowed"),
    ("encodec", "facebook/encodec_48khz", "MIT", "allowed"),
    ("stable-audio", "stabilityai/stable-audio-open-1.0", "LicenseRef-Stability-AI-Community", "conditional"),
    ("stable-audio", "stabilityai/stable-audio-open-small", "LicenseRef-Stability-AI-Community", "conditional"),
    ("stability", "stable-audio-2.5", "LicenseRef-Stability-API-ToS", "allowed"),
    ("replicate", "meta/musicgen", "CC-BY-NC-4.0", "not_allowed"),
    ("replicate", "someone/unknown", "LicenseRef-Unknown-Inherited", "unknown"),
    ("fal", "fal-ai/stable-audio", "LicenseRef-Stability-AI-Community", "conditional"),
    ("lyria", "lyria-002", "LicenseRef-Google-Cloud-GenAI", "allowed"),
    ("udio", "udio", "LicenseRef-Udio-ToS-2025-11", "not_allowed"),
])
def test_registry_records(provider: str, model: str, lid: str, commercial: str) -> None:
    lic = REG.license_for(provider, model)
    assert lic.id == lid and lic.commercial_use.value == commercial
    assert lic.source.startswith("http") or provider == "synth"
    assert all(c.license.checked_on for c in lic.components)


def test_effective_licence_is_the_strictest_component() -> None:
    lic = REG.license_for("musicgen", "facebook/musicgen-small")
    roles = {c.role: c.license.id for c in lic.components}
    assert roles == {"weights": "CC-BY-NC-4.0", "codec": "CC-BY-NC-4.0", "text_encoder": "Apache-2.0"}
    mixed = License.effective([
        LicenseComponent(role="dit", name="a", license=REG.licenses["Apache-2.0"]),
        LicenseComponent(role="vae", name="b", license=REG.licenses["LicenseRef-Stability-AI-Community"]),
    ])
    assert mixed.commercial_use is CommercialUse.CONDITIONAL
    assert mixed.attribution == "Powered by Stability AI" and mixed.attribution_required


def test_plan_dependent_terms() -> None:
    none = REG.license_for("elevenlabs", "music_v1")
    assert none.commercial_use is CommercialUse.NOT_ALLOWED and "strictest" in (none.plan_note or "")
    pro = REG.license_for("elevenlabs", "music_v1", plan="pro")
    assert pro.commercial_use is CommercialUse.CONDITIONAL and pro.plan == "pro" and pro.plan_note is None
    assert REG.license_for("suno", "v5", plan="premier").commercial_use is CommercialUse.ALLOWED
    assert REG.license_for("suno", "v5", plan="typo").plan_note.startswith("unknown plan")


def test_commercial_policy() -> None:
    policy = LicensePolicy.commercial()
    mg = REG.license_for("musicgen", "facebook/musicgen-small")
    sao = REG.license_for("stable-audio", "stabilityai/stable-audio-open-1.0")
    assert not policy.check("musicgen", "facebook/musicgen-small", mg).allowed
    assert policy.check("synth", "default", REG.license_for("synth", "default")).allowed
    refused = policy.check("stable-audio", "x", sao)
    assert not refused.allowed and "US$1,000,000" in refused.clause
    small = LicensePolicy.commercial(annual_revenue_usd=200_000, attestations=frozenset({"stability_registered"}))
    assert small.check("stable-audio", "x", sao).allowed
    big = LicensePolicy.commercial(annual_revenue_usd=5_000_000, attestations=frozenset({"stability_registered"}))
    assert not big.check("stable-audio", "x", sao).allowed
    strict = LicensePolicy.commercial(allow_conditional=False, annual_revenue_usd=1)
    assert "conditional" in strict.check("stable-audio", "x", sao).clause
    no_attr = LicensePolicy(allow_attribution=False)
    assert "attribution" in no_attr.check("stable-audio", "x", sao).clause
    assert not LicensePolicy(deny=("stable-audio:*",)).check("stable-audio", "x", sao).allowed
    assert not LicensePolicy(allow=("synth",)).check("stable-audio", "x", sao).allowed
    unknown = REG.license_for("replicate", "a/b")
    assert not policy.check("replicate", "a/b", unknown).allowed
    assert LicensePolicy.commercial(allow_unknown=True).check("replicate", "a/b", unknown).allowed
