"""Batch manifests: JSONL or CSV, one `GenerationRequest` per row plus an output name, validated up front."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from ..output.files import output_paths
from ..request import GenerationRequest
from ..run.plan import check_one_output

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


@dataclass(frozen=True)
class BatchRow:
    """One manifest row: where it came from, its output name, provider and request."""

    line: int
    name: str
    provider: str | None
    request: GenerationRequest

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of what the row asks for: a changed row is not mistaken for a finished one."""
        text = json.dumps({"p": self.provider, "r": self.request.model_dump(mode="json")}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def file_name(self) -> str:
        """The output file's name: `<name>.<format>` (the mix, when the row asks for stems)."""
        return f"{self.name}.{self.request.output_format or 'wav'}"

    @property
    def roles(self) -> list[str | None]:
        """What each delivered file holds: the track (None), then each stem the row asks for."""
        return [None, *(self.request.stems or ())]

    @functools.cached_property
    def file_names(self) -> list[str]:
        """Every file the row delivers, in the order of `roles`: `<name>.<format>`, then `<name>.<stem>.<format>`
        (the names `Generation.save` gives a mix and its stems)."""
        return [path.name for path in output_paths(self.file_name, len(self.roles), self.roles)]


def _collisions(rows: list[BatchRow]) -> list[str]:
    """Every file a run will write, stems included, known before any row runs: two rows that would write the same
    file (compared ignoring case, as case-insensitive file systems do) are refused, naming both."""
    owners: dict[str, BatchRow] = {}
    found = []
    for row in rows:
        for file in row.file_names:
            other = owners.setdefault(file.casefold(), row)
            if other is not row:
                found.append(
                    f"row {row.line} ({row.name!r}) would write {file}, which row {other.line} ({other.name!r}) "
                    "writes too (file names are compared ignoring case); rename one of them"
                )
    return found


#: CSV columns that are text whatever they look like: a name `1e3` stays "1e3", a prompt "true" stays "true".
_TEXT_COLUMNS = frozenset(
    {"name", "provider", "prompt", "negative_prompt", "lyrics", "output_format", "audio_prompt_mode"}
)


def _cell(column: str, value: str) -> Any:
    text = value.strip()
    if text == "":
        return None
    if column in _TEXT_COLUMNS:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def load_manifest(path: str | Path) -> list[BatchRow]:
    """Read and validate a JSONL or CSV manifest; InvalidRequestError lists every bad row and field."""
    source = Path(path)
    if not source.is_file():
        raise InvalidRequestError(f"manifest {source} does not exist", field="manifest")
    raw: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8" export starts with one) is not part of the first name.
        text = source.read_text("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"manifest {source.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8", field="manifest"
        ) from None
    if source.suffix.lower() == ".csv":
        raw, problems = _csv_rows(source.name, text)
    else:
        # Only \n ends a JSON Lines row: str.splitlines would also split on U+2028 inside a prompt.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"row {number}: not valid JSON ({exc.msg})")
                continue
            except RecursionError:  # nested deeper than the JSON parser reads
                problems.append(f"row {number}: nested too deep to read")
                continue
            if not isinstance(value, dict):
                problems.append(f"row {number}: must be a JSON object")
                continue
            raw.append((number, value))
    return _rows(source, raw, problems)


def _csv_rows(name: str, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """The rows of a CSV manifest as (line number, fields), and the problems found reading it. A row is numbered
    by the line it starts on, as an editor shows it: a quoted cell may span lines, and blank lines are skipped."""
    raw: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        reader.fieldnames  # noqa: B018 - reads the header, so that line_num is where the first row may start
        ended = reader.line_num
        for row in reader:
            number = next((n for n in range(ended + 1, reader.line_num + 1) if lines[n - 1].strip()), ended + 1)
            ended = reader.line_num
            if None in row:  # more cells than the header has columns: nothing is dropped silently
                problems.append(
                    f"row {number}: {len(row[None])} cell(s) more than the header's columns "
                    f"({row[None]!r}); quote cells that contain commas"
                )
                continue
            fields = {k.strip(): _cell(k.strip(), v) for k, v in row.items() if k and v is not None and v.strip()}
            raw.append((number, fields))
    except csv.Error as exc:  # a cell over the csv module's field limit (128 KiB), an unclosed quote
        raise InvalidRequestError(f"manifest {name} cannot be read as CSV: {exc}", field="manifest") from None
    return raw, problems


def _rows(source: Path, raw: list[tuple[int, dict[str, Any]]], problems: list[str]) -> list[BatchRow]:
    """The manifest's rows as requests, every problem found reported together."""
    rows: list[BatchRow] = []
    names: dict[str, int] = {}
    for number, data in raw:
        name = str(data.pop("name", "") or "")
        provider = data.pop("provider", None)
        if not _NAME.fullmatch(name):
            problems.append(f"row {number}, field 'name': {name!r} is not a safe file name (letters, digits, . _ -)")
        elif name in names:
            problems.append(f"row {number}, field 'name': {name!r} is already used by row {names[name]}")
        else:
            names[name] = number
        try:
            request = GenerationRequest(**data)
        except InvalidRequestError as exc:
            problems.extend(f"row {number}, field {field or '-'!r}: {message}" for field, message in exc.details)
            continue
        try:
            check_one_output(request)
        except InvalidRequestError as exc:
            problems.append(f"row {number}, field 'num_outputs': {exc.message}")
            continue
        rows.append(BatchRow(number, name, str(provider) if provider else None, request))
    problems.extend(_collisions(rows))
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise InvalidRequestError(f"manifest {source.name} has {len(problems)} problem(s): {shown}", field="manifest")
    if not rows:
        raise InvalidRequestError(f"manifest {source.name} has no rows", field="manifest")
    return rows
