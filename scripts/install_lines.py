"""The install lines of a docs page, as scripts/check-installs runs them, and the check of the result.

    python scripts/install_lines.py PAGE HEADING ROOT    the first ```bash block of PAGE (after HEADING, when given):
                                                        one command per line, comments dropped, "soundforge[X]"
                                                        replaced by this clone, `-e ROOT[X]`
    python scripts/install_lines.py --check SOUNDFORGE ROW...
                                                        `SOUNDFORGE providers --json` shows every ROW available,
                                                        its weights aside; exit 1, with each reason, when one is not
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def install_lines(page: Path, heading: str, root: str) -> list[str]:
    """The commands of the page's install block, each as it would be pasted, with the package from `root`."""
    text = page.read_text("utf-8")
    if heading:
        start = text.find(heading)
        if start < 0:
            raise SystemExit(f"{page}: no heading {heading!r}")
        text = text[start:]
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    if block is None:
        raise SystemExit(f"{page}: no ```bash block")
    lines = []
    for raw in block.group(1).splitlines():
        line = raw.split("#", 1)[0].strip()  # a comment-only line (an alternative for other machines) is dropped
        if not line:
            continue
        line = re.sub(r'"soundforge\[([^\]]+)\]"', lambda m: f'-e "{root}[{m.group(1)}]"', line)
        if not line.startswith("pip install "):
            raise SystemExit(f"{page}: an install line that is not `pip install`: {line!r}")
        lines.append("python -m pip install --no-compile " + line.removeprefix("pip install "))
    if not lines:
        raise SystemExit(f"{page}: the install block has no command")
    return lines


def check(soundforge: str, rows: list[str]) -> int:
    """0 when `soundforge providers` lists every row available, else 1 with the reasons."""
    answer = subprocess.run([soundforge, "providers", "--json"], capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        print(answer.stdout[-2000:], answer.stderr[-4000:], file=sys.stderr)
        return 1
    listed = {row["name"]: row for row in json.loads(answer.stdout)}
    failed = 0
    for name in rows:
        row = listed.get(name, {"available": False, "reason": "not listed"})
        reason = str(row.get("reason") or "")
        if row.get("available"):
            print(f"   {name}: available", file=sys.stderr)
        elif _only_weights(reason):
            print(f"   {name}: installed; its weights are not here yet ({reason})", file=sys.stderr)
        else:
            print(f"   {name}: not available: {reason} (fix: {row.get('fix')})", file=sys.stderr)
            failed = 1
    return failed


def _only_weights(reason: str) -> bool:
    """Whether all that is missing is the model's weights (downloaded on first use or by `soundforge pull`)."""
    missing_files = "weights" in reason or "not in the Hugging Face cache" in reason
    return missing_files and "not installed" not in reason


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        raise SystemExit(check(sys.argv[2], sys.argv[3:]))
    print("\n".join(install_lines(Path(sys.argv[1]), sys.argv[2], sys.argv[3])))
