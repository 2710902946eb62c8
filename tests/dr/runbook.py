"""The commands of a runbook (docs/runbooks/*.md), in order, as a test runs them: every
```sh block that starts with `novacron` or `curl`, backslash continuations joined."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commands(name: str) -> list[str]:
    text = (ROOT / "docs" / "runbooks" / name).read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        cmd = re.sub(r"\\\n\s*", "", block).strip()
        if cmd.split()[0] in ("novacron", "curl"):
            out.append(cmd)
    return out
