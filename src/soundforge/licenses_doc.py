"""Render the licence registry as a Markdown table (docs/licenses.md is generated from this)."""

from __future__ import annotations

from .licensing import LicenseRegistry

BEGIN, END = "<!-- registry:begin -->", "<!-- registry:end -->"


def registry_table(registry: LicenseRegistry | None = None) -> str:
    """One row per provider/model record: components, effective licence, commercial use, attribution, source."""
    reg = registry or LicenseRegistry.default()
    lines = ["| provider / model | components | effective licence | commercial use | attribution | source |",
             "|---|---|---|---|---|---|"]
    for key, record in reg.models.items():
        provider, _, model = key.partition(":")
        lic = reg.license_for(provider, model.rstrip("*") or "default")
        comps = "; ".join(f"{c.role}: {c.license.id}" for c in lic.components)
        use = lic.commercial_use.value.replace("_", " ")
        if lic.condition:
            use += f" ({lic.condition})"
        if record.plans:
            use += " — by plan: " + ", ".join(
                f"{plan} {reg.license_for(provider, model, plan=plan).commercial_use.value}" for plan in record.plans)
        attribution = lic.attribution if lic.attribution_required else "none"
        lines.append(f"| `{key}` | {comps} | [{lic.id}]({lic.url}) | {use} | {attribution} | {lic.source} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(registry_table())
