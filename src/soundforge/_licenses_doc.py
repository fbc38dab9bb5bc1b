"""Render the licence registry as Markdown (docs/licenses.md is generated from this): the model records, then each
licence with the clause it relies on, quoted, so a reader (or a lawyer) can check every fact against its source."""

from __future__ import annotations

from .licensing import LicenseRegistry

BEGIN, END = "<!-- registry:begin -->", "<!-- registry:end -->"


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


if __name__ == "__main__":  # pragma: no cover
    print(registry_table())
