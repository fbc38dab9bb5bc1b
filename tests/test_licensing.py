import pytest

from soundforge.licensing import CommercialUse, License, LicenseComponent, LicenseRegistry
from soundforge.policy import LicensePolicy

REG = LicenseRegistry.default()


@pytest.mark.parametrize(
    "provider, model, lid, commercial",
    [
        ("synth", "default", "CC0-1.0", "allowed"),
        ("musicgen", "facebook/musicgen-small", "CC-BY-NC-4.0", "not_allowed"),
        ("musicgen", "facebook/musicgen-stereo-melody-large", "CC-BY-NC-4.0", "not_allowed"),
        ("audiogen", "facebook/audiogen-medium", "CC-BY-NC-4.0", "not_allowed"),
        ("magnet", "facebook/magnet-small-10secs", "CC-BY-NC-4.0", "not_allowed"),
        ("encodec", "facebook/encodec_32khz", "CC-BY-NC-4.0", "not_allowed"),
        ("encodec", "facebook/encodec_48khz", "MIT", "allowed"),
        ("encodec", "facebook/encodec_24khz", "LicenseRef-Unknown-Weights", "unknown"),
        ("stable-audio", "stabilityai/stable-audio-open-1.0", "LicenseRef-Stability-AI-Community", "conditional"),
        ("stable-audio", "stabilityai/stable-audio-open-small", "LicenseRef-Stability-AI-Community", "conditional"),
        ("stability", "stable-audio-2.5", "LicenseRef-Stability-API-ToS", "allowed"),
        ("replicate", "meta/musicgen", "CC-BY-NC-4.0", "not_allowed"),
        ("replicate", "someone/unknown", "LicenseRef-Unknown-Replicate-Model", "unknown"),
        ("fal", "fal-ai/stable-audio", "LicenseRef-Unknown-Fal-Model", "unknown"),
        ("lyria", "lyria-002", "LicenseRef-Unknown-Google-Cloud-GenAI", "unknown"),
        ("udio", "udio", "LicenseRef-Udio-ToS-2025-11", "not_allowed"),
    ],
)
def test_registry_records(provider: str, model: str, lid: str, commercial: str) -> None:
    lic = REG.license_for(provider, model)
    assert lic.id == lid and lic.commercial_use.value == commercial
    assert lic.source.startswith("http")
    assert all(c.license.checked_on and c.source and c.quote for c in lic.components)


def test_effective_licence_is_the_strictest_component() -> None:
    lic = REG.license_for("musicgen", "facebook/musicgen-small")
    roles = {c.role: c.license.id for c in lic.components}
    assert roles == {"weights": "CC-BY-NC-4.0", "codec": "CC-BY-NC-4.0", "text_encoder": "Apache-2.0"}
    mixed = License.effective(
        [
            LicenseComponent(role="dit", name="a", license=REG.licenses["Apache-2.0"]),
            LicenseComponent(role="vae", name="b", license=REG.licenses["LicenseRef-Stability-AI-Community"]),
        ]
    )
    assert mixed.commercial_use is CommercialUse.CONDITIONAL
    assert mixed.attribution == "Powered by Stability AI" and mixed.attribution_required


def test_plan_dependent_terms() -> None:
    none = REG.license_for("elevenlabs", "music_v1")
    assert none.commercial_use is CommercialUse.NOT_ALLOWED and "strictest" in (none.plan_note or "")
    pro = REG.license_for("elevenlabs", "music_v1", plan="pro")
    assert pro.commercial_use is CommercialUse.CONDITIONAL and pro.plan == "pro" and pro.plan_note is None
    # Suno's current paid-plan wording was not read in a primary source: unknown, never allowed on a guess.
    assert REG.license_for("suno", "v5", plan="premier").commercial_use is CommercialUse.UNKNOWN
    enterprise = REG.license_for("elevenlabs", "music_v2", plan="enterprise")
    assert enterprise.id == "LicenseRef-ElevenLabs-Music-Enterprise" != pro.id
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


# --- the registry's rules -----------------------------------------------------------------------------------
def test_every_licence_that_allows_anything_quotes_its_grant_and_is_not_unconfirmed() -> None:
    for terms in REG.licenses.values():
        assert terms.source and terms.checked_on, terms.id
        if terms.commercial_use in (CommercialUse.ALLOWED, CommercialUse.CONDITIONAL):
            assert terms.quote and len(terms.quote) > 20, f"{terms.id}: 'allowed' needs a quoted grant"
            assert "UNCONFIRMED" not in (terms.notes or "").upper(), f"{terms.id} allows while unconfirmed"
            assert terms.source.startswith("https://"), terms.id
        if terms.id.startswith("LicenseRef-Unknown"):  # the URL and the source name the same place
            assert terms.url.split("/")[2:3] == terms.source.split("/")[2:3], terms.id


def test_every_component_names_its_source_quote_and_date() -> None:
    for record in REG.models:
        for component in record.all_components():
            assert component.source.startswith("https://") and component.quote and component.checked_on, record.key
            terms = REG.licenses[component.license]
            if terms.commercial_use is CommercialUse.ALLOWED:
                assert "not read" not in component.quote, record.key


def test_records_cover_only_the_ids_they_name() -> None:
    for record in REG.models:
        assert record.ids or record.pattern_reason, f"{record.key}: a pattern needs its reason"
    # No id is named by two records of one provider.
    seen: dict[tuple[str, str], str] = {}
    for record in REG.models:
        for model in record.ids:
            assert (record.provider, model) not in seen, (record.key, seen.get((record.provider, model)))
            seen[(record.provider, model)] = record.key
    # Fine-tunes, local folders and new releases get unknown, never a sibling's terms.
    for provider, model in [
        ("stable-audio", "someone/finetune"),
        ("stable-audio", "stabilityai/stable-audio-3-medium"),
        ("musicgen", "someone/musicgen-finetune"),
        ("musicgen", "/models/my-musicgen"),
        ("lyria", "lyria-3-pro-preview"),
        ("elevenlabs", "eleven_text_to_sound_v2"),
        ("audiogen", "facebook/audiogen-large"),
        ("nobody", "nothing"),
    ]:
        lic = REG.license_for(provider, model)
        assert lic.commercial_use is CommercialUse.UNKNOWN, (provider, model, lic.id)


def test_audited_defects_stay_fixed() -> None:
    # EnCodec 24 kHz weights carry no licence; 48 kHz is tagged MIT on its own card.
    assert REG.license_for("encodec", "facebook/encodec_24khz").commercial_use is CommercialUse.UNKNOWN
    # Stable Audio 3 (its own provider) brings a Gemma-terms text encoder, not Stable Audio Open's T5.
    sa3 = REG.license_for("stable-audio-3", "stabilityai/stable-audio-3-small-sfx")
    assert {c.license.id for c in sa3.components} >= {"LicenseRef-Gemma-Terms"}
    assert "t5-base" not in " ".join(c.name for c in sa3.components)
    # AudioGen's text encoder is t5-large; MAGNeT's sound variants use the 16 kHz codec.
    assert "t5-large" in " ".join(c.name for c in REG.license_for("audiogen", "facebook/audiogen-medium").components)
    audio_magnet = REG.license_for("magnet", "facebook/audio-magnet-small")
    assert any("16 kHz" in c.name for c in audio_magnet.components if c.role == "codec")
    # Stable Audio Open's earlier revisions were non-commercial: the record says so.
    record = REG.record_for("stable-audio", "stabilityai/stable-audio-open-1.0")
    assert record is not None and record.history[0].license == "LicenseRef-Stability-AI-NC-Research"


def test_the_community_licence_terminates_above_its_revenue_cap_for_every_policy() -> None:
    sao = REG.license_for("stable-audio", "stabilityai/stable-audio-open-1.0")
    # Not only commercial rights: a default policy (no commercial requirement) refuses a declared US$5M too.
    default_big = LicensePolicy(annual_revenue_usd=5_000_000)
    decision = default_big.check("stable-audio", "stabilityai/stable-audio-open-1.0", sao)
    assert not decision.allowed and "terminate" in decision.clause
    assert LicensePolicy(annual_revenue_usd=200_000).check("stable-audio", "x", sao).allowed
    assert LicensePolicy().check("stable-audio", "x", sao).allowed  # nothing declared: nothing contradicted
    assert any("internal operations" in r for r in sao.restrictions)


def test_conditions_are_checked_whatever_else_is_unknown() -> None:
    # Community-licensed weights on an unknown host: allow_unknown accepts the host, not the missing registration.
    hosted = REG.license_for("fal", "fal-ai/stable-audio")
    assert hosted.commercial_use is CommercialUse.UNKNOWN and hosted.conditions
    lenient = LicensePolicy.commercial(allow_unknown=True)
    refused = lenient.check("fal", "fal-ai/stable-audio", hosted)
    assert not refused.allowed and "stability_registered" in refused.clause
    declared = LicensePolicy.commercial(
        allow_unknown=True, annual_revenue_usd=100_000, attestations=frozenset({"stability_registered"})
    )
    assert declared.check("fal", "fal-ai/stable-audio", hosted).allowed


def test_a_folder_is_licensed_only_when_the_user_declares_what_it_holds() -> None:
    from soundforge import ConfigurationError

    assert REG.license_for("musicgen", "/models/mg").commercial_use is CommercialUse.UNKNOWN
    declared = REG.declare("musicgen", "/models/mg", same_as="facebook/musicgen-small", reason="downloaded copy")
    assert declared.license_for("musicgen", "/models/mg").id == "CC-BY-NC-4.0"
    assert "declared by the user" in (declared.record_for("musicgen", "/models/mg").notes or "")
    assert REG.license_for("musicgen", "/models/mg").commercial_use is CommercialUse.UNKNOWN  # the default is unchanged
    with pytest.raises(ConfigurationError):
        REG.declare("musicgen", "/models/x", same_as="someone/else", reason="?")
