"""The region ConfigMap and StatefulSet env are what a node process actually loads: the
rendered ``node.json`` goes through the node's own settings loader and NodeServer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from novacron_operator.admin import ClusterInfo
from novacron_operator.builders import Owner, build_region
from novacron_operator.builders.region import RegionContext
from novacron_operator.members import cluster_state
from novacron_operator.models import NovaCronClusterSpec, NovaCronRegionSpec
from novacron_operator.sequencer import Step

from novacron_core.consensus.interface import UnsupportedSetting
from novacron_core.consensus.raft import HardState
from novacron_core.runtime.node import REJOINING_MARKER, NodeServer
from novacron_core.runtime.settings import load_settings

CLUSTER = NovaCronClusterSpec.model_validate({"version": "0.1.0"})
OWNER = Owner("NovaCronRegion", "us-east", "prod", "u-1")
SPEC = NovaCronRegionSpec.model_validate(
    {"clusterRef": {"name": "fleet"}, "regionName": "us-east", "zones": ["a", "b"]}
)


def rendered(
    replicas: int = 3,
    bootstrap: int | None = None,
    state: Literal["new", "existing"] = "new",
    protocol: str | None = None,
    running: str | None = None,
) -> tuple[dict[str, str], Any]:
    spec = SPEC.model_copy(update={"replicas": replicas, "protocol": protocol})
    ctx = RegionContext(
        CLUSTER, "fleet", bootstrap_replicas=bootstrap, cluster_state=state, protocol=running
    )
    objs = build_region(OWNER, spec, ctx)
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
        assert server.soft.config.voters == ("us-east-0", "us-east-1", "us-east-2")
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


def test_node_json_holds_only_node_settings_and_region_json_waits_for_agents() -> None:
    data, _ = rendered()
    assert "region.json" not in data  # for agents and gateways, which are not deployed yet
    assert set(json.loads(data["node.json"])) == {
        "region",
        "peers",
        "peer_listen",
        "http_listen",
        "data_dir",
        "protocol",
        "initial_cluster_state_file",
    }


def test_a_pod_beyond_the_bootstrap_members_starts_as_an_empty_joiner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sts = rendered(5, bootstrap=3)
    settings = load_as_pod(tmp_path, monkeypatch, data, sts, "us-east-3")
    server = NodeServer(settings)
    try:
        assert server.soft.config.voters == ()
        assert server.soft.config.learners == ()
    finally:
        server.storage.close()


def test_cluster_state_flips_in_the_config_map_without_rolling_pods() -> None:
    new, sts_new = rendered()
    existing, sts_existing = rendered(state="existing")
    assert (new["cluster-state"], existing["cluster-state"]) == ("new", "existing")
    assert {k: v for k, v in new.items() if k != "cluster-state"} == {
        k: v for k, v in existing.items() if k != "cluster-state"
    }
    assert sts_new == sts_existing  # same template, same config hash: nothing rolls


@pytest.mark.parametrize(("state", "rejoining"), [("new", False), ("existing", True)])
def test_a_bootstrap_pod_on_an_empty_volume_rejoins_once_the_group_formed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    state: Literal["new", "existing"],
    rejoining: bool,
) -> None:
    data, sts = rendered(state=state)
    settings = load_as_pod(tmp_path, monkeypatch, data, sts, "us-east-1")
    (node,) = sts["spec"]["template"]["spec"]["containers"]
    mount = next(m for m in node["volumeMounts"] if m["name"] == "config")["mountPath"]
    assert settings.initial_cluster_state_file == f"{mount}/cluster-state"
    state_file = tmp_path / "cluster-state"  # the ConfigMap key, as mounted
    state_file.write_text(data["cluster-state"])
    settings = settings.model_copy(update={"initial_cluster_state_file": str(state_file)})
    server = NodeServer(settings)
    try:
        assert server.rejoining is rejoining
        assert server.member.abstain is rejoining
        assert (settings.data_dir / REJOINING_MARKER).exists() is rejoining
        voters = () if rejoining else ("us-east-0", "us-east-1", "us-east-2")
        assert server.soft.config.voters == voters
    finally:
        server.storage.close()


def test_the_group_counts_as_formed_once_a_leader_answered_and_stays_so() -> None:
    body: dict[str, Any] = {"metadata": {"name": "us-east"}}
    lead = ClusterInfo("us-east-0", "leader", 2, "us-east-0", 9, 9, ("us-east-0",), ())
    assert cluster_state(body, Step(3, 0)) == ("new", False)
    assert cluster_state(body, Step(3, 0, leader=lead)) == ("existing", True)
    body["metadata"]["annotations"] = {"novacron.io/group-formed": "true"}
    assert cluster_state(body, Step(3, 0)) == ("existing", False)  # no leader now: still


@pytest.mark.parametrize("protocol", ["raft", "multi-paxos", "epaxos", "eventual"])
def test_the_spec_protocol_is_what_the_node_process_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    data, sts = rendered(protocol=protocol)
    assert sts["metadata"]["annotations"]["novacron.io/bootstrap-protocol"] == protocol
    settings = load_as_pod(tmp_path, monkeypatch, data, sts, "us-east-0")
    assert settings.protocol == protocol
    server = NodeServer(settings)
    try:
        assert server.protocol.name == protocol
        assert (tmp_path / "data" / protocol).is_dir()  # its log, in its own format
    finally:
        server.storage.close()


def test_the_bootstrap_protocol_wins_over_a_later_spec_so_no_pod_restarts_on_another() -> None:
    first, sts = rendered(protocol="raft")
    edited, sts2 = rendered(protocol="epaxos", running="raft")
    assert json.loads(edited["node.json"])["protocol"] == "raft"
    assert edited == first
    assert sts2["spec"]["template"] == sts["spec"]["template"]  # nothing rolls


def test_a_node_refuses_to_start_with_another_protocol_over_its_groups_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line of defence: a region recreated with another protocol over retained
    volumes, or a hand edit of node.json, must not start an empty group beside the log."""
    data, sts = rendered(protocol="raft")
    settings = load_as_pod(tmp_path, monkeypatch, data, sts, "us-east-0")
    raft = NodeServer(settings).storage
    raft.group.apply([HardState(1, "us-east-0")])  # a raft member wrote its log (a vote)
    raft.close()
    assert any(f.stat().st_size for f in (tmp_path / "data" / "raft").iterdir())
    other = settings.model_copy(update={"protocol": "epaxos"})
    with pytest.raises(UnsupportedSetting) as e:
        NodeServer(other)
    assert "holds the group log of raft" in str(e.value)
    assert "start it with protocol 'raft'" in str(e.value)
    assert not (tmp_path / "data" / "epaxos").exists()  # nothing was created beside it
    NodeServer(settings).storage.close()  # the right protocol still starts
