from pathlib import Path

from soundforge.licences._doc import render_page

ROOT = Path(__file__).resolve().parents[1]


def test_licence_doc_matches_registry() -> None:
    # Both generated tables: the records with their quotes, and what the two documented policies decide.
    text = (ROOT / "docs" / "licenses.md").read_text("utf-8")
    assert text == render_page(text), "regenerate with: python -m soundforge.licences._doc --write"


def test_price_doc_matches_registry() -> None:
    from soundforge.ops._prices_doc import BEGIN as PRICES_BEGIN
    from soundforge.ops._prices_doc import END as PRICES_END
    from soundforge.ops._prices_doc import price_table

    text = (ROOT / "docs" / "prices.md").read_text("utf-8")
    body = text.split(PRICES_BEGIN, 1)[1].split(PRICES_END, 1)[0].strip()
    assert body == price_table(), "regenerate with: python -m soundforge.ops._prices_doc"


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert "bash scripts/test" in readme and "bash scripts/test" in ci
    assert "bash scripts/soundforge generate" in readme


def test_docs_and_data_cite_public_sources_not_files_outside_the_repository() -> None:
    """A reader of the docs (or of a price's or licence's source) can follow every citation: none points at the
    project's private research folder, which is not in the repository."""
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.json")]
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if "shared/research" in line
    ]
    assert not cited, f"cite the public source instead of the research notes: {cited}"
