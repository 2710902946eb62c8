"""The region ConfigMap and StatefulSet env are what a node process actually loads: the
rendered ``node.json`` goes through the node's own settings loader and NodeServer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from novacron_operator.builders import Owner, build_region
from novacron_operator.builders.region import RegionContext
from novacron_operator.models import NovaCronClusterSpec, NovaCronRegionSpec

from novacron_core.runtime.node import NodeServer
from novacron_core.runtime.settings import load_settings

CLUSTER = NovaCronClusterSpec.model_validate({"version": "0.1.0"})
OWNER = Owner("NovaCronRegion", "us-east", "prod", "u-1")
SPEC = NovaCronRegionSpec.model_validate(
    {"clusterRef": {"name": "fleet"}, "regionName": "us-east", "zones": ["a", "b"]}
)


def rendered(replicas: int = 3, bootstrap: int | None = None) -> tuple[dict[str, str], Any]:
    spec = SPEC.model_copy(update={"replicas": replicas})
    objs = build_region(OWNER, spec, RegionContext(CLUSTER, "fleet", bootstrap_replicas=bootstrap))
    (cm,) = [o for o in objs if o["metadata"]["name"] == "us-east-config"]
    (sts,) = [o for o in objs if o["kind"] == "StatefulSet"]
    return cm["data"], sts


def pod_env(sts: Any, pod_name: str) -> dict[str, str]:
    """The container env as the kubelet would resolve it for one pod."""
    (node,) = sts["spec"]["template"]["spec"]["containers"]
    out = {}
    for e in node["env"]:
        if "value" in e:
            out[e["name"]] = e["value"]
        elif e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name":
            out[e["name"]] = pod_name
        else:
            out[e["name"]] = "prod"
    return out


def load_as_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, str], sts: Any, pod: str
) -> Any:
    (node,) = sts["spec"]["template"]["spec"]["containers"]
    mount = next(m for m in node["volumeMounts"] if m["name"] == "config")["mountPath"]
    args = node["args"]
    config_path = args[args.index("--config") + 1]
    assert config_path.startswith(mount + "/")
    cfg = tmp_path / Path(config_path).name
    cfg.write_text(data[Path(config_path).name])
    for k, v in pod_env(sts, pod).items():
        monkeypatch.setenv(k, v)
    # the PVC mount point: /var/lib/novacron in the pod, a temp dir here
    settings = load_settings(str(cfg))
    assert (
        str(settings.data_dir)
        == next(m for m in node["volumeMounts"] if m["name"] == "data")["mountPath"]
    )
    return settings.model_copy(update={"data_dir": tmp_path / "data"})


def test_node_json_loads_with_the_pod_name_as_node_id_and_bootstrap_peers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sts = rendered()
    assert sts["spec"]["template"]["spec"]["containers"][0]["args"][0] == "node"
    settings = load_as_pod(tmp_path, monkeypatch, data, sts, "us-east-1")
    assert settings.node_id == "us-east-1"
    assert settings.region == "us-east"
    assert (settings.peer_listen, settings.http_listen) == ("0.0.0.0:7000", "0.0.0.0:8080")
    peers = settings.peer_map()
    assert sorted(peers) == ["us-east-0", "us-east-1", "us-east-2"]
    assert peers["us-east-2"] == (
        ("us-east-2.us-east-peers.prod.svc", 7000),
        ("us-east-2.us-east-peers.prod.svc", 8080),
    )
    server = NodeServer(settings)  # would start: storage opened, Raft configured
    try:
        assert server.raft.conf.voters == ("us-east-0", "us-east-1", "us-east-2")
        assert server.id == "us-east-1"
    finally:
        server.storage.close()


def test_scaling_keeps_the_bootstrap_config_so_no_pod_rolls() -> None:
    first, sts3 = rendered(3)
    scaled, sts5 = rendered(5, bootstrap=3)
    assert scaled == first
    hash_of = lambda s: s["spec"]["template"]["metadata"]["annotations"]  # noqa: E731
    assert hash_of(sts5) == hash_of(sts3)
    assert sts5["spec"]["replicas"] == 5
    assert sts3["metadata"]["annotations"] == sts5["metadata"]["annotations"]


def test_a_pod_beyond_the_bootstrap_members_is_not_among_its_peers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sts = rendered(5, bootstrap=3)
    settings = load_as_pod(tmp_path, monkeypatch, data, sts, "us-east-4")
    assert settings.node_id == "us-east-4"
    assert "us-east-4" not in settings.peer_map()  # a joiner: the operator adds it


def test_region_json_keeps_topology_for_agents_and_gateways() -> None:
    data, _ = rendered()
    info = json.loads(data["region.json"])
    assert info["zones"] == ["a", "b"]
    assert info["protocol"] == "raft"
    assert set(json.loads(data["node.json"])) == {
        "region",
        "peers",
        "peer_listen",
        "http_listen",
        "data_dir",
    }


def test_a_pod_beyond_the_bootstrap_members_starts_as_an_empty_joiner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sts = rendered(5, bootstrap=3)
    settings = load_as_pod(tmp_path, monkeypatch, data, sts, "us-east-3")
    server = NodeServer(settings)
    try:
        assert server.raft.conf.voters == ()
        assert server.raft.conf.learners == ()
    finally:
        server.storage.close()
