"""Render the licence registry as Markdown (docs/licenses.md is generated from this): the model records, then each
licence with the clause it relies on, quoted, so a reader (or a lawyer) can check every fact against its source."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .licensing import License, LicenseRegistry, ModelLicenseRecord, RegistryFile
from .model_card import ModelCard
from .policy import LicensePolicy

BEGIN, END = "<!-- registry:begin -->", "<!-- registry:end -->"
POLICIES_BEGIN, POLICIES_END = "<!-- policies:begin -->", "<!-- policies:end -->"
#: The two policies the table shows: a strict commercial product, and a small registered company.
POLICIES = (
    ("LicensePolicy.commercial()", LicensePolicy.commercial()),
    (
        'commercial(annual_revenue_usd=500_000, attestations={"stability_registered"})',
        LicensePolicy.commercial(annual_revenue_usd=500_000, attestations=frozenset({"stability_registered"})),
    ),
)
#: A folder's path, standing for every model a pattern record covers.
_ANY_FOLDER = "/path/to/a/folder"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def registry_table(registry: LicenseRegistry | None = None) -> str:
    """The model records (ids, components with the quote that applies each licence, effective licence, commercial
    use), then one section per licence (terms, source, the quoted clause, the date it was checked)."""
    reg = registry or LicenseRegistry.default()
    lines = [
        "| provider: model ids | components (licence: quoted source) | effective licence | commercial use |",
        "|---|---|---|---|",
    ]
    for record in reg.models:
        model = record.ids[0] if record.ids else "any-model"
        lic = reg.license_for(record.provider, model)
        comps = (
            "<br>".join(
                f"{c.role}: `{c.license}` — “{_cell(c.quote)}” ([source]({c.source}), {c.checked_on})"
                for c in record.components
            )
            or "by plan"
        )
        use = lic.commercial_use.value.replace("_", " ")
        if record.plans:
            use += " — by plan: " + ", ".join(
                f"{plan} {reg.license_for(record.provider, model, plan=plan).commercial_use.value}"
                for plan in record.plans
            )
        ids = (
            ", ".join(f"`{i}`" for i in record.ids)
            if record.ids
            else f"`{record.pattern}` ({_cell(record.pattern_reason or '')})"
        )
        history = "".join(f"<br>until {h.until}: `{h.license}` ({_cell(h.note)})" for h in record.history)
        lines.append(f"| **{record.provider}**: {ids} | {comps}{history} | `{lic.id}` | {_cell(use)} |")
    lines += ["", "### The licences", ""]
    for terms in reg.licenses.values():
        use = terms.commercial_use.value.replace("_", " ") + (f" ({terms.condition})" if terms.condition else "")
        lines.append(f"#### `{terms.id}`: {terms.name}")
        lines.append(f"- commercial use: {use}")
        if terms.attribution_required:
            lines.append(f"- attribution: {terms.attribution}")
        lines.append(f"- output ownership: {terms.output_ownership}")
        for restriction in terms.restrictions:
            lines.append(f"- restriction: {restriction}")
        quote = f"“{terms.quote}”" if terms.quote else "no clause quoted: nothing is allowed on its strength"
        lines.append(f"- source: {terms.source} (checked {terms.checked_on}): {quote}")
        if terms.notes:
            lines.append(f"- note: {terms.notes}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _decision(policy: LicensePolicy, provider: str, model: str, license: License) -> str:
    """One cell: `allowed`, or `refused` with the kind of clause that decided it, in a few words."""
    decided = policy.check(provider, model, license)
    if decided.allowed:
        return "allowed"
    clause = decided.clause
    if clause.startswith("the licence's grants terminate"):
        return "refused: the licence has ended"
    if clause.startswith("commercial use is not allowed"):
        return "refused: not for commercial use"
    if "is unknown" in clause:
        return "refused: unknown"
    if "not declared met" in clause:
        facts = [c.fact for c in policy.unmet_conditions(license) if c.fact]
        return f"refused: declare {', '.join(f'`{f}`' for f in facts)}" if facts else "refused: conditions unmet"
    return f"refused: {_cell(clause.split(' [')[0])}"


def _rows(record: ModelLicenseRecord) -> list[tuple[str, str, ModelCard | None]]:
    """The (label, model, card) rows of one record: each id (or a folder for a pattern), and for a record that waits
    on the model's card, the same id with a card that confirms it."""
    models = record.ids or [_ANY_FOLDER if record.provider.startswith("stable-audio") else "any-model"]
    rows: list[tuple[str, str, ModelCard | None]] = []
    for model in models:
        label = f"`{record.provider}:{model}`" if record.ids else f"`{record.provider}:{record.pattern}` ({model})"
        rows.append((label, model, None))
        confirms = {c.card_confirms for c in record.components if c.card_confirms}
        for tag in sorted(confirms):
            card = ModelCard(path=f"{model}/README.md", license=tag.lower())
            rows.append((f"{label}, its card saying `license: {card.license}`", model, card))
    return rows


def policy_table(registry: LicenseRegistry | None = None) -> str:
    """What `LicensePolicy.commercial()` and a small registered company's policy decide for every record (the
    strictest plan where terms depend on the plan), from the registry: the answer to "may my product use it?"."""
    reg = registry or LicenseRegistry.default()
    header = " | ".join(f"`{name}`" for name, _ in POLICIES)
    lines = [f"| provider: model | effective licence | {header} |", "|---|---|" + "---|" * len(POLICIES)]
    for record in reg.models:
        for label, model, card in _rows(record):
            lic = reg.license_for(record.provider, model, card=card)
            cells = " | ".join(_decision(policy, record.provider, model, lic) for _, policy in POLICIES)
            lines.append(f"| {label} | `{lic.id}` ({lic.commercial_use.value.replace('_', ' ')}) | {cells} |")
    return "\n".join(lines)


def registry_schema() -> str:
    """The JSON Schema of `data/licenses.json` (committed as `data/licenses.schema.json` for editors)."""
    return json.dumps(RegistryFile.model_json_schema(by_alias=True), indent=1) + "\n"


def render_page(page: str) -> str:
    """`page` (docs/licenses.md) with its generated blocks replaced by the registry's current tables."""
    for begin, end, body in ((BEGIN, END, registry_table()), (POLICIES_BEGIN, POLICIES_END, policy_table())):
        head, rest = page.split(begin, 1)
        _, tail = rest.split(end, 1)
        page = f"{head}{begin}\n{body}\n{end}{tail}"
    return page


def main(argv: list[str]) -> None:  # pragma: no cover
    """`--write`: rewrite docs/licenses.md's tables and data/licenses.schema.json in this checkout; `--schema`:
    print the schema; nothing: print the registry's Markdown."""
    if "--write" in argv:
        package = Path(__file__).resolve().parents[1]  # src/soundforge
        root = package.parents[1]
        page = root / "docs" / "licenses.md"
        page.write_text(render_page(page.read_text("utf-8")), "utf-8")
        (package / "data" / "licenses.schema.json").write_text(registry_schema(), "utf-8")
    elif "--schema" in argv:
        print(registry_schema(), end="")
    else:
        print(registry_table())


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
