"""The krew manifest of `kubectl novacron` and the archive it points at."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from .tools import ROOT

TEMPLATE = ROOT / "operator" / "krew" / "novacron.yaml"


def test_manifest_names_the_console_script_and_a_platform_per_archive() -> None:
    m = yaml.safe_load(TEMPLATE.read_text())
    assert m["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert m["kind"] == "Plugin"
    assert m["metadata"]["name"] == "novacron"  # -> `kubectl novacron`
    assert re.fullmatch(r"v\d+\.\d+\.\d+", m["spec"]["version"])
    assert len(m["spec"]["shortDescription"]) <= 50
    for platform in m["spec"]["platforms"]:
        assert platform["bin"] == "kubectl-novacron"
        assert platform["uri"].endswith(
            f"/{m['spec']['version']}/kubectl-novacron-{m['spec']['version']}-linux-amd64.tar.gz"
        )
        assert platform["sha256"] == "@SHA256@", "the template; build.sh fills in the digest"
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'kubectl-novacron = "novacron_operator.plugin.cli:main"' in scripts


@pytest.mark.slow
def test_release_archive_runs_with_a_bare_python_and_matches_its_manifest(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(ROOT / "operator" / "krew" / "build.sh"), str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    archive, manifest = (Path(p) for p in out.stdout.split())
    m = yaml.safe_load(manifest.read_text())
    platform = m["spec"]["platforms"][0]
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert platform["uri"].endswith(archive.name)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    names = {f["from"] for f in platform["files"]}
    assert all((tmp_path / "x" / n).exists() for n in names)
    # what krew would link into PATH, run with nothing from this venv around it
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    assert os.access(tmp_path / "x" / "kubectl-novacron", os.X_OK)
    run = subprocess.run(
        [str(tmp_path / "x" / "kubectl-novacron"), "status", "--kubeconfig", "/nonexistent"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 1
    assert "no usable kubeconfig" in run.stderr
    fence = subprocess.run(
        [str(tmp_path / "x" / "kubectl-novacron"), "fence", "r"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert fence.returncode == 2
    assert "not available yet" in fence.stderr
