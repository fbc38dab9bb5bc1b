from pathlib import Path

import pytest

from soundforge.licences.licensing import CommercialUse, License, LicenseComponent, LicenseRegistry
from soundforge.licences.policy import LicensePolicy

REG = LicenseRegistry.default()
ROOT = Path(__file__).resolve().parents[2]


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
            # A primary source on the web, or soundforge's own statement in its docs (synth's dedication).
            assert component.source.startswith("https://") or (ROOT / component.source).is_file(), record.key
            assert component.quote and component.checked_on, record.key
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
    # A Stable Audio 3 folder: its own terms are unknown, the Community License's conditions are not.
    # allow_unknown accepts the unknown part, not the missing registration.
    folder = REG.license_for("stable-audio-3", "/models/sa3")
    assert folder.commercial_use is CommercialUse.UNKNOWN and folder.conditions
    lenient = LicensePolicy.commercial(allow_unknown=True)
    refused = lenient.check("stable-audio-3", "/models/sa3", folder)
    assert not refused.allowed and "stability_registered" in refused.clause
    declared = LicensePolicy.commercial(
        allow_unknown=True, annual_revenue_usd=100_000, attestations=frozenset({"stability_registered"})
    )
    assert declared.check("stable-audio-3", "/models/sa3", folder).allowed


def test_a_folder_is_licensed_only_when_the_user_declares_what_it_holds() -> None:
    from soundforge import ConfigurationError

    assert REG.license_for("musicgen", "/models/mg").commercial_use is CommercialUse.UNKNOWN
    declared = REG.declare("musicgen", "/models/mg", same_as="facebook/musicgen-small", reason="downloaded copy")
    assert declared.license_for("musicgen", "/models/mg").id == "CC-BY-NC-4.0"
    assert "declared by the user" in (declared.record_for("musicgen", "/models/mg").notes or "")
    assert REG.license_for("musicgen", "/models/mg").commercial_use is CommercialUse.UNKNOWN  # the default is unchanged
    with pytest.raises(ConfigurationError):
        REG.declare("musicgen", "/models/x", same_as="someone/else", reason="?")


# --- licence truth (issue 37): each defect of the December audit ---------------------------------------------
FIVE_MILLION = LicensePolicy(annual_revenue_usd=5_000_000)
SMALL_REGISTERED = LicensePolicy.commercial(
    annual_revenue_usd=500_000, attestations=frozenset({"stability_registered"})
)


@pytest.mark.parametrize(
    "provider, folder", [("stable-audio-3", "/models/sa3-small-music"), ("stable-audio", "/models/sao-finetune")]
)
def test_a_folder_keeps_the_community_licence_of_the_model_it_derives_from(provider: str, folder: str) -> None:
    lic = REG.license_for(provider, folder)
    # Its own terms are unknown, and the Community License's conditions stay on it.
    assert lic.commercial_use is CommercialUse.UNKNOWN
    assert "LicenseRef-Stability-AI-Community" in {c.license.id for c in lic.components}
    assert lic.attribution == "Powered by Stability AI"
    big_registered = LicensePolicy.commercial(
        allow_unknown=True, annual_revenue_usd=5e6, attestations=frozenset({"stability_registered"})
    )
    for policy in (big_registered, FIVE_MILLION):
        decision = policy.check(provider, folder, lic)
        assert not decision.allowed and "terminate" in decision.clause, decision
    # A small registered company that accepts the unknown part may use it.
    lenient = LicensePolicy.commercial(
        allow_unknown=True, annual_revenue_usd=500_000, attestations=frozenset({"stability_registered"})
    )
    assert lenient.check(provider, folder, lic).allowed
    if provider == "stable-audio-3":
        assert "LicenseRef-Gemma-Terms" in {c.license.id for c in lic.components}
    # A folder declared to be an unchanged conversion is licensed like its hub release.
    hub = (
        "stabilityai/stable-audio-3-small-music"
        if provider == "stable-audio-3"
        else "stabilityai/stable-audio-open-1.0"
    )
    declared = REG.declare(provider, folder, same_as=hub, reason="converted from the hub release")
    assert declared.license_for(provider, folder).commercial_use is CommercialUse.CONDITIONAL


def test_the_stable_audio_3_conversion_hint_names_the_declaration() -> None:
    from soundforge.backends.stable_audio_3 import CONVERT

    assert "LicenseRegistry.default().declare" in CONVERT


def test_ace_step_1_5_is_mit_from_its_own_card_and_its_checkpoints_wait_on_theirs() -> None:
    from soundforge.licences.model_card import ModelCard

    release = REG.license_for("ace-step", "ACE-Step/Ace-Step1.5")
    assert release.commercial_use is CommercialUse.ALLOWED and release.id == "MIT"
    assert {c.license.id for c in release.components} == {"MIT", "Apache-2.0"}  # the encoder's licence is checked
    assert all("commercial purposes" in (c.quote or "") for c in release.components if c.license.id == "MIT")
    assert LicensePolicy.commercial().check("ace-step", "ACE-Step/Ace-Step1.5", release).allowed
    for model in (
        "ACE-Step/acestep-v15-xl-turbo-diffusers",
        "ACE-Step/acestep-v15-base",
        "ACE-Step/acestep-v15-sft",
    ):
        unread = REG.license_for("ace-step", model)
        assert unread.commercial_use is CommercialUse.UNKNOWN, model
        assert all("could not be read" in (c.quote or "") for c in unread.components if c.license.id != "Apache-2.0")
        mit = ModelCard(path=f"/cache/{model}/README.md", license="mit")
        confirmed = REG.license_for("ace-step", model, card=mit)
        assert confirmed.commercial_use is CommercialUse.ALLOWED, model
        assert {c.source for c in confirmed.components if c.license.id == "MIT"} == {mit.path}
        assert "waits on" in (confirmed.card_note or "")
        # Another licence in the card confirms nothing: the model stays unknown.
        other = ModelCard(path="/cache/README.md", license="apache-2.0")
        assert REG.license_for("ace-step", model, card=other).commercial_use is CommercialUse.UNKNOWN
    # A folder is not a release: its card alone never licenses it.
    folder = REG.license_for("ace-step", "/models/ace", card=ModelCard(path="/models/ace/README.md", license="mit"))
    assert folder.commercial_use is CommercialUse.UNKNOWN and "stricter" in (folder.card_note or "")


def test_gemma_terms_are_read_so_stable_audio_3_is_conditional() -> None:
    gemma = REG.licenses["LicenseRef-Gemma-Terms"]
    assert gemma.commercial_use is CommercialUse.ALLOWED and "claims no rights in Outputs" in (gemma.quote or "")
    assert any("Prohibited Use Policy" in r for r in gemma.restrictions)
    for model in ("stabilityai/stable-audio-3-small-music", "stabilityai/stable-audio-3-medium"):
        lic = REG.license_for("stable-audio-3", model)
        assert lic.commercial_use is CommercialUse.CONDITIONAL and lic.id == "LicenseRef-Stability-AI-Community"
        assert SMALL_REGISTERED.check("stable-audio-3", model, lic).allowed
        assert not LicensePolicy.commercial().check("stable-audio-3", model, lic).allowed
        assert "terminate" in FIVE_MILLION.check("stable-audio-3", model, lic).clause
        encoder = next(c for c in lic.components if c.role == "text_encoder")
        assert "stable-audio-3" in (encoder.source or ""), "the gate text is quoted from the SA3 card"


def test_a_hosts_customer_is_judged_by_the_hosts_terms_not_the_weights_licence() -> None:
    hosted = REG.license_for("fal", "fal-ai/stable-audio")
    assert hosted.commercial_use is CommercialUse.UNKNOWN and hosted.conditions == []
    assert not hosted.attribution_required
    weights = next(c for c in hosted.components if c.license.id == "LicenseRef-Stability-AI-Community")
    assert weights.binds == "host"  # listed for information
    assert FIVE_MILLION.check("fal", "fal-ai/stable-audio", hosted).allowed  # no termination for fal's customer
    refused = LicensePolicy.commercial().check("fal", "fal-ai/stable-audio", hosted)
    assert not refused.allowed and "unknown" in refused.clause and "terminate" not in refused.clause
    # Replicate passes the model's own terms through to its customer: those still bind.
    assert REG.license_for("replicate", "meta/musicgen").commercial_use is CommercialUse.NOT_ALLOWED


def test_gemini_terms_are_the_current_ones() -> None:
    lyria = REG.license_for("gemini", "lyria-3-pro-preview")
    assert lyria.commercial_use is CommercialUse.UNKNOWN
    assert not any("Preview" in r for r in lyria.restrictions)
    assert "terms-archive" not in lyria.source and "2026" in (REG.licenses[lyria.id].quote or "")
    assert any("professional or business" in r for r in lyria.restrictions)


def test_elevenlabs_sound_effects_on_a_free_plan_are_not_commercial() -> None:
    none = REG.license_for("elevenlabs-sfx", "eleven_text_to_sound_v2")
    assert none.commercial_use is CommercialUse.NOT_ALLOWED and "strictest" in (none.plan_note or "")
    assert REG.license_for("elevenlabs-sfx", "eleven_text_to_sound_v2", plan="free").id.endswith("SFX-Free")
    paid = REG.license_for("elevenlabs-sfx", "eleven_text_to_sound_v3", plan="pro")
    assert paid.commercial_use is CommercialUse.UNKNOWN
    assert not LicensePolicy.commercial(allow_unknown=True).check("elevenlabs-sfx", "v2", none).allowed


def test_the_community_licence_ends_only_above_one_million() -> None:
    sao = REG.license_for("stable-audio", "stabilityai/stable-audio-open-1.0")
    exactly = LicensePolicy.commercial(annual_revenue_usd=1_000_000, attestations=frozenset({"stability_registered"}))
    assert exactly.check("stable-audio", "x", sao).allowed
    over = LicensePolicy.commercial(annual_revenue_usd=1_000_001, attestations=frozenset({"stability_registered"}))
    assert not over.check("stable-audio", "x", sao).allowed


def test_sources_and_quotes_say_where_each_fact_comes_from() -> None:
    # The NC-era licence points at the NC text, not at today's page (which shows the Community License).
    assert "huggingface.co" not in REG.licenses["LicenseRef-Stability-AI-NC-Research"].url
    # synth's dedication is soundforge's own statement, cited to soundforge's docs, not to the CC0 legal code.
    synth = REG.license_for("synth", "default").components[0]
    assert synth.source == "docs/licenses.md" and "soundforge" in (synth.quote or "")
    # The audio-MAGNeT codec quote comes from the README that states the weights' licence.
    codec = next(c for c in REG.license_for("magnet", "facebook/audio-magnet-small").components if c.role == "codec")
    assert not (codec.source or "").endswith(".yaml") and "CC-BY-NC 4.0" in (codec.quote or "")
    # Demucs: the MIT tag of the author's exports is named, with the reason it is set aside.
    demucs = REG.record_for("demucs", "htdemucs")
    assert demucs is not None and "license: mit" in (demucs.notes or "") and "#327" in (demucs.notes or "")
    # ElevenLabs stem models are not under the music terms without a source: a record of their own, unknown.
    stems = REG.license_for("elevenlabs", "six_stems_v1", plan="pro")
    assert stems.commercial_use is CommercialUse.UNKNOWN and stems.id == "LicenseRef-ElevenLabs-Stems"


def test_a_cached_card_naming_a_stricter_licence_wins() -> None:
    from soundforge.licences.model_card import ModelCard

    nc_card = ModelCard(path="/cache/README.md", license="other", license_name="stable-audio-nc-community")
    old = REG.license_for("stable-audio", "stabilityai/stable-audio-open-1.0", card=nc_card)
    assert old.commercial_use is CommercialUse.NOT_ALLOWED and "stricter" in (old.card_note or "")
    assert not SMALL_REGISTERED.check("stable-audio", "x", old).allowed
    current = ModelCard(path="/cache/README.md", license="other", license_name="stable-audio-community")
    same = REG.license_for("stable-audio", "stabilityai/stable-audio-open-1.0", card=current)
    assert same.commercial_use is CommercialUse.CONDITIONAL and "as the record does" in (same.card_note or "")
    # A card naming a licence soundforge has no record of makes an allowed record unknown.
    odd = REG.license_for("encodec", "facebook/encodec_48khz", card=ModelCard(path="/c/README.md", license="wtfpl"))
    assert odd.commercial_use is CommercialUse.UNKNOWN and "no record" in (odd.card_note or "")
    # A looser card changes nothing.
    mit = REG.license_for("demucs", "htdemucs", card=ModelCard(path="/c/README.md", license="mit"))
    assert mit.commercial_use is CommercialUse.NOT_ALLOWED


def test_the_card_is_read_from_the_cache_snapshot_before_anything_loads(tmp_path, monkeypatch) -> None:
    from soundforge import Client
    from soundforge.config import Config
    from soundforge.licences.model_card import read_model_card
    from soundforge.testing.hub import install_in_hub_cache

    hub = tmp_path / "hub"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))  # read at each call
    card = "---\nlicense: other\nlicense_name: stable-audio-nc-community\npipeline_tag: text-to-audio\n---\n# SAO\n"
    snapshot = install_in_hub_cache(None, "stabilityai/stable-audio-open-1.0", hub, card=card)
    parsed = read_model_card(snapshot)
    assert parsed is not None and parsed.tag == "stable-audio-nc-community"
    client = Client(
        Config.load(user_file=False, providers={"stable-audio": {"model": "stabilityai/stable-audio-open-1.0"}}),
        policy=SMALL_REGISTERED,
    )
    status = next(p for p in client.providers() if p.name == "stable-audio")
    assert status.license is not None and status.license.id == "LicenseRef-Stability-AI-NC-Research"
    assert not status.policy_allows and "non-commercial" in status.policy_clause.lower()


def test_model_cards_are_read_without_surprises(tmp_path) -> None:
    from soundforge.licences.model_card import read_model_card

    (tmp_path / "README.md").write_text("---\nlicense: 'MIT'\n---\n", "utf-8")
    assert read_model_card(tmp_path).license == "mit"
    (tmp_path / "README.md").write_text("# no front matter\nlicense: mit\n", "utf-8")
    assert read_model_card(tmp_path) is None
    (tmp_path / "README.md").write_bytes(b"---\ntags: [a]\n---\n\xff\xfe")
    assert read_model_card(tmp_path) is None
    assert read_model_card(tmp_path / "missing") is None


def test_the_registry_file_is_the_hand_edited_source_with_a_schema() -> None:
    import json
    from importlib import resources

    from soundforge.licences._doc import registry_schema

    data = resources.files("soundforge").joinpath("data")
    text = data.joinpath("licenses.json").read_text("utf-8")
    assert text == json.dumps(json.loads(text), indent=1) + "\n", "keep licenses.json in its canonical layout"
    assert data.joinpath("licenses.schema.json").read_text("utf-8") == registry_schema(), (
        "regenerate with: python -m soundforge.licences._doc --write"
    )
    # The schema rejects what the loader rejects: an unknown field anywhere.
    broken = json.loads(text)
    broken["models"][0]["licence"] = "typo"
    from soundforge import ConfigurationError

    with pytest.raises((ConfigurationError, ValueError)):
        LicenseRegistry(broken)
