"""The licence a model's own card names, read from the weights on disk before anything is loaded.

A Hugging Face model card (`README.md`) opens with YAML front matter whose `license:` field is how the hub licenses a
repository (`license: other` plus `license_name:` for licences without an SPDX id). The card that travels with a cached
snapshot is the card of *that revision*: Stable Audio Open 1.0's first revisions said `stable-audio-nc-community`,
later ones `stable-audio-community`. soundforge reads it to hold the registry to the weights actually in use
(`LicenseRegistry.license_for(..., card=...)`): a card naming a stricter licence than the record wins. Only the
front matter's two licence fields are read, with no YAML library, so nothing in a card can run code or pull a
dependency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: A card larger than this is not a model card anyone wrote by hand; its front matter is read from the first bytes.
_HEAD_BYTES = 64 * 1024
_FIELD = re.compile(r"^(license|license_name)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class ModelCard:
    """The licence fields of one model card, and where it was read.

    Attributes:
        path: the card file (a snapshot's or a folder's `README.md`).
        license: the `license:` field, lower-cased (`mit`, `apache-2.0`, `other`).
        license_name: the `license_name:` field (set when `license` is `other`), lower-cased.
    """

    path: str
    license: str | None
    license_name: str | None = None

    @property
    def tag(self) -> str | None:
        """The name that identifies the licence: `license_name` for `license: other`, else `license`."""
        if self.license == "other" and self.license_name:
            return self.license_name
        return self.license or self.license_name

    def describe(self) -> str:
        """The card's licence fields as written, for quotes: `license: other; license_name: x`."""
        parts = [f"license: {self.license}"] if self.license else []
        if self.license_name:
            parts.append(f"license_name: {self.license_name}")
        return "; ".join(parts) or "no licence field"


def read_model_card(path: str | Path) -> ModelCard | None:
    """The licence fields of the card at `path` (a `README.md`, or a folder holding one); None when there is no
    card or its front matter names no licence. Never raises for a malformed card: it is treated as no card."""
    card = Path(path)
    if card.is_dir():
        card = card / "README.md"
    try:
        with card.open("rb") as handle:
            head = handle.read(_HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = head.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() in ("---", "..."):
            break
        match = _FIELD.match(line)
        if match and match.group(2):
            fields[match.group(1)] = match.group(2).strip("'\"").strip().lower()
    if not fields:
        return None
    return ModelCard(path=str(card), license=fields.get("license"), license_name=fields.get("license_name"))
