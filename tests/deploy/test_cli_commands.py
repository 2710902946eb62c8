"""What is deployed must exist: every workload that the examples, the chart (each values
file) and the kustomize overlays make the operator create runs a `novacron` subcommand the
CLI (`novacron_core.cli.main`) has, with arguments that subcommand's own click parser
accepts (every option exists, every value has a valid type; files named need not exist
here), and the operator's own container runs a console script the package installs. A
DaemonSet running `novacron agent`, or a flag its command does not take, is a crash loop in
every region, so this fails on it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from novacron_operator.render import KINDS, render

from novacron_core import cli

from .tools import (
    CHART,
    ENVIRONMENTS,
    KUBE_VERSION,
    MANIFESTS,
    ROOT,
    VALUES_FILES,
    helm_template,
    load_all,
    require_tool,
    run,
)

WORKLOADS = ("StatefulSet", "Deployment", "DaemonSet", "Job", "CronJob", "Pod")
OPERATOR_IMAGE = "novacron-operator"
EXTRA_VALUES = sorted((ROOT / "argocd" / "multicluster" / "clusters").glob("*.yaml"))


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def expand(argv: list[str], env: list[dict[str, Any]]) -> list[str]:
    """The arguments as the kubelet hands them over: ``$(VAR)`` replaced by the container's
    environment (a value from the downward API or a Secret stands in as ``<VAR>``)."""
    values = {e["name"]: e.get("value", f"<{e['name']}>") for e in env}
    return [re.sub(r"\$\((\w+)\)", lambda m: values.get(m[1], m[0]), a) for a in argv]


def commands(objs: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    """(workload, image, command line) of every container and init container."""
    out = []
    for o in objs:
        if o.get("kind") not in WORKLOADS:
            continue
        spec = pod_spec(o)
        for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
            argv = expand([*(c.get("command") or []), *(c.get("args") or [])], c.get("env") or [])
            out.append((f"{o['kind']}/{o['metadata']['name']}", c["image"], argv))
    return out


def without_file_checks(cmd: click.Command) -> click.Command:
    """The command with its path options' existence checks off: the files are in the
    pod's mounts, not here. Every other type is converted as the pod's start would."""
    params = []
    for p in cmd.params:
        if isinstance(p.type, click.Path) and p.type.exists:
            p = type(p)(p.opts, type=click.Path(dir_okay=p.type.dir_okay), multiple=p.multiple)
        params.append(p)
    return click.Command(cmd.name, params=params, callback=cmd.callback)


def parse_error(sub: str, args: list[str]) -> str | None:
    """What the subcommand's own parser says about ``args`` (None: it accepts them)."""
    try:
        without_file_checks(cli.commands()[sub]).make_context(sub, list(args))
    except click.ClickException as e:
        return e.format_message()
    return None


def scripts() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["scripts"])


def missing(objs: list[dict[str, Any]]) -> list[str]:
    """Workloads whose command does not exist."""
    subcommands = set(cli.commands())
    bad = []
    for where, image, argv in commands(objs):
        repo = image.rsplit("@", 1)[0].rsplit(":", 1)[0]
        if repo.endswith(OPERATOR_IMAGE):
            if not argv or argv[0] not in scripts():
                bad.append(f"{where}: {argv[:1]} is no console script of the package")
        elif repo.endswith("/novacron"):
            # the core image's entrypoint is `novacron`: its first argument is the subcommand
            args = argv[2:] if argv[:1] == ["novacron"] else argv[1:]
            sub = argv[1] if argv[:1] == ["novacron"] else (argv[0] if argv else None)
            if sub not in subcommands:
                bad.append(f"{where}: `novacron {sub}` does not exist ({image})")
            elif (err := parse_error(sub, args)) is not None:
                bad.append(f"{where}: `novacron {sub} {' '.join(args)}`: {err}")
        else:
            bad.append(f"{where}: unknown image {image}")
    return bad


def workloads_of(docs: list[dict[str, Any]], namespace: str = "novacron") -> list[dict[str, Any]]:
    """The objects as deployed: the manifests themselves, plus what the operator creates
    for the NovaCron resources among them."""
    ours = [d for d in docs if d.get("kind") in KINDS]
    return [*docs, *(render(ours, namespace) if ours else [])]


def examples() -> list[Path]:
    return sorted((ROOT / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_runs_only_commands_that_exist(path: Path) -> None:
    objs = workloads_of([d for d in yaml.safe_load_all(path.read_text()) if d])
    assert commands(objs), f"{path} deploys no workload"
    assert missing(objs) == []


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_chart_rendering_runs_only_commands_that_exist(values: str) -> None:
    objs = workloads_of(helm_template(require_tool("helm"), values))
    assert commands(objs)
    assert missing(objs) == []


@pytest.mark.parametrize("cluster", EXTRA_VALUES, ids=lambda p: p.name)
def test_every_multicluster_rendering_runs_only_commands_that_exist(cluster: Path) -> None:
    """As argocd/multicluster renders it: production values, then the cluster's regions."""
    cmd = [require_tool("helm"), "template", "novacron", str(CHART), "-n", "novacron"]
    cmd += ["--kube-version", KUBE_VERSION, "-f", str(CHART / "values-production.yaml")]
    cmd += ["-f", str(ROOT / "argocd" / "multicluster" / "federation.yaml"), "-f", str(cluster)]
    objs = workloads_of(load_all(run(cmd).stdout))
    assert commands(objs)
    assert missing(objs) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_kustomize_overlay_runs_only_commands_that_exist(env: str) -> None:
    kubectl = require_tool("kubectl")
    objs = workloads_of(
        load_all(run([kubectl, "kustomize", str(MANIFESTS / "overlays" / env)]).stdout)
    )
    assert commands(objs)
    assert missing(objs) == []


def test_the_check_catches_a_command_the_cli_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """As it was: the region deployed `novacron agent` and `novacron gateway`."""
    from novacron_operator import capabilities

    monkeypatch.setattr(
        capabilities, "cli_commands", lambda: frozenset({"node", "agent", "gateway"})
    )
    monkeypatch.setattr(capabilities, "RENDERED", frozenset({"node", "agent", "gateway"}))
    # and a CLI without them, as it was
    lacking = {k: v for k, v in cli.commands().items() if k not in ("agent", "gateway")}
    monkeypatch.setattr(cli, "commands", lambda: lacking)
    objs = workloads_of([d for d in yaml.safe_load_all((examples()[-1]).read_text()) if d])
    bad = missing(objs)
    assert any("`novacron agent` does not exist" in b for b in bad), bad
    assert any("`novacron gateway` does not exist" in b for b in bad), bad
    assert CHART.is_dir()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--config", "/etc/novacron/gateway.json", "--no-such-flag"], "No such option"),
        (["--max-inflight", "many"], "'many' is not a valid integer"),
        (["--algorithm", "fastest"], "'fastest' is not one of"),
    ],
)
def test_the_check_catches_a_flag_or_value_the_command_refuses(
    args: list[str], complaint: str
) -> None:
    gateway = {
        "kind": "Deployment",
        "metadata": {"name": "g"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "g", "image": "ghcr.io/novacron/novacron:0.1.0",
                         "args": ["gateway", *args]}
                    ]
                }
            }
        },
    }  # fmt: skip
    (bad,) = missing([gateway])
    assert complaint in bad, bad


def test_kubelet_variables_are_expanded_before_parsing() -> None:
    argv = expand(
        ["agent", "--config", "/etc/novacron/$(NODE_NAME).json", "$(UNSET)"],
        [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
    )
    assert argv == ["agent", "--config", "/etc/novacron/<NODE_NAME>.json", "$(UNSET)"]
