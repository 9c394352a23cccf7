"""``make help``: the Makefile's documented targets, grouped, one line each, with the defaults.

    python3 -m tools.make_help [Makefile]

A target is documented by ``target: ... ## what it does``; its group comes from the Makefile's
``HELP_<group> := target ...`` lines (``daily``, ``local``, ``cloud``, ``checks``, ``bench``), so a
new target shows up under ``other`` until it is put in one. ``HELP_DEFAULTS`` is printed first.
Descriptions are cut at a word to fit one line; the README and ``docs/`` say the rest. Stdlib only:
runs before any virtualenv exists.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

TARGET = re.compile(r"^([a-z][a-z0-9-]*):[^=].*?## (.+)$")
GROUP = re.compile(r"^HELP_([a-z]+)\s*:?=\s*(.*)$")
DEFAULTS = re.compile(r"^HELP_DEFAULTS\s*:?=\s*(.*)$")
ORDER = ("daily", "local", "cloud", "checks", "bench")


def parse(makefile: Path) -> tuple[dict[str, str], dict[str, list[str]], str]:
    targets: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    defaults = ""
    for line in makefile.read_text().splitlines():
        if match := DEFAULTS.match(line):
            defaults = match.group(1).strip()
        elif (match := GROUP.match(line)) and match.group(1) != "defaults":
            groups[match.group(1)] = match.group(2).split()
        elif match := TARGET.match(line):
            targets[match.group(1)] = match.group(2).strip()
    return targets, groups, defaults


def fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: width - 1].rsplit(" ", 1)[0].rstrip(",;:(") + "…"


def render(makefile: Path, width: int = 100) -> list[str]:
    targets, groups, defaults = parse(makefile)
    column = max(map(len, targets)) + 2
    out = [f"defaults: {defaults}", ""] if defaults else []
    placed = {t for members in groups.values() for t in members}
    order = [g for g in ORDER if g in groups] + [g for g in groups if g not in ORDER]
    sections = [(g, groups[g]) for g in order] + [("other", sorted(set(targets) - placed))]
    for name, members in sections:
        documented = [t for t in members if t in targets]
        if not documented:
            continue
        out.append(f"{name}:")
        out += [f"  {t:<{column}}{fit(targets[t], width - column - 2)}" for t in documented]
        out.append("")
    return out[:-1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    makefile = Path(argv[0]) if argv else Path("Makefile")
    width = min(shutil.get_terminal_size((120, 24)).columns, 120)
    try:
        print("\n".join(render(makefile, width)), flush=True)
    except BrokenPipeError:
        # The reader left (`make help | head`): not an error. Point stdout at /dev/null so the
        # interpreter's own flush at exit does not raise again (Python's signal docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
