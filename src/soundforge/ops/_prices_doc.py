"""Render the price registry as Markdown (docs/prices.md is generated from this): every record with its basis,
amount, source and date, and whether the source is the vendor's own, so a reader can check each price."""

from __future__ import annotations

from .pricing import PriceRegistry

BEGIN, END = "<!-- prices:begin -->", "<!-- prices:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def price_table(registry: PriceRegistry | None = None) -> str:
    """One row per price record; models without a record have an unknown price and are not listed."""
    reg = registry or PriceRegistry.default()
    lines = [
        "| provider: models | plan | basis | price | source (checked) | vendor's own |",
        "|---|---|---|---|---|---|",
    ]
    for r in reg.records:
        ids = ", ".join(f"`{i}`" for i in r.ids)
        if r.credits is not None and r.credit_price is not None:
            price = f"{r.credits:g} credits × {r.credit_price:g} = {r.amount:g} {r.currency}"
        else:
            price = f"{r.amount:g} {r.currency}"
        quote = f" “{_cell(r.quote)}”" if r.quote else ""
        note = f" {_cell(r.notes)}" if r.notes else ""
        lines.append(
            f"| **{r.provider}**: {ids} | {r.plan or 'any'} | {r.basis.replace('_', ' ')} | {price} "
            f"| {_cell(r.source)} ({r.checked_on}){quote}{note} | {'yes' if r.confirmed else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(price_table())
