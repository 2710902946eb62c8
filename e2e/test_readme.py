"""The README's operator quickstart, run verbatim on the local control plane: every line of
its `<!-- quickstart -->` block, in one bash, with kubectl and novacron-operator on PATH."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, Kubectl

pytestmark = pytest.mark.e2e
NAMESPACE = "novacron"  # the README's
AGENTS = "novacron-agents"  # its agents' namespace


def quickstart() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- quickstart -->\n```bash\n(.*?)```\n<!-- /quickstart -->", text, re.S)
    assert found, "README.md has no <!-- quickstart --> bash block"
    return found.group(1)


def test_readme_quickstart_runs_verbatim(kubectl: Kubectl, tmp_path: Path) -> None:
    for ns in (NAMESPACE, AGENTS):
        if kubectl.run("get", "namespace", ns, check=False).returncode == 0:
            kubectl.run("delete", "namespace", ns, "--timeout=90s")
    script = quickstart()
    assert "novacron-operator -n novacron --agent-namespace novacron-agents" in script
    env = {
        **os.environ,
        "KUBECONFIG": str(kubectl.kubeconfig),
        "PATH": os.pathsep.join(
            [str(Path(kubectl.binary).parent), str(Path(sys.executable).parent), os.environ["PATH"]]
        ),
    }
    # the README's lines run from the repository root, as a reader's shell would (the
    # operator's log goes to a scratch copy of the tree's root: only crds/ and examples/
    # are read, by relative path)
    for d in ("crds", "examples"):
        (tmp_path / d).symlink_to(ROOT / d)
    start = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the backgrounded operator is in its process group
    )
    try:
        out, _ = proc.communicate(timeout=240)
        log = (tmp_path / "operator.log").read_text(errors="replace")
        assert proc.returncode == 0, f"quickstart failed:\n{out}\noperator log:\n{log[-3000:]}"
        print(f"\nREADME quickstart done in {time.monotonic() - start:.1f}s:\n{out}")
        for name in ("global", "fleet", "us-east", "eu-west", "ap-south"):
            assert re.search(rf"\b{name}\s+True\b", out), out
    finally:
        # deleted while the operator runs (kopf's finalizer waits for it), then the operator
        # the README backgrounded is stopped as Ctrl-C / kill would
        kubectl.run("delete", "novacron", "--all", "-n", NAMESPACE, "--timeout=60s", check=False)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        kubectl.run("delete", "namespace", NAMESPACE, AGENTS, "--wait=false", check=False)
