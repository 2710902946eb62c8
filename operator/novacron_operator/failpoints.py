"""Named crash points for tests (the etcd-operator way): NOVACRON_FAILPOINT=name makes the
process die abruptly, as under SIGKILL, the first time it reaches that point."""

from __future__ import annotations

import os
import sys

_fired: set[str] = set()


def failpoint(name: str) -> None:
    if os.environ.get("NOVACRON_FAILPOINT") == name and name not in _fired:
        _fired.add(name)
        sys.stderr.write(f"failpoint {name}: crashing\n")
        sys.stderr.flush()
        os._exit(137)
