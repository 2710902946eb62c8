"""The files the operator renders for agents and gateways load in the real commands' config
loaders (``novacron agent``'s and ``novacron gateway``'s own ``load_config``), with the
peers, tunnels and regions the federation asks for: a config a command refuses, or one it
reads differently from what the operator meant, is a crash loop or a wrong mesh in every
region. Two local regions on three Kubernetes nodes and one remote region."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from novacron_operator.builders import Owner, build_federation, build_region
from novacron_operator.builders.region import RegionContext
from novacron_operator.federated import keys_secret, local_regions, rotation_due, view
from novacron_operator.models import DWCPFederationSpec, NovaCronClusterSpec

from novacron_core.runtime.agent.config import load_config as load_agent
from novacron_core.runtime.gateway.config import load_config as load_gateway

NS = "prod"
CLUSTER = {"metadata": {"name": "fleet"}, "spec": {"version": "0.1.0"}}


def region_obj(name: str, region: str, lat: float, lon: float) -> dict[str, Any]:
    spec = {
        "clusterRef": {"name": "fleet"},
        "regionName": region,
        "zones": [f"{region}-a"],
        "location": {"latitude": lat, "longitude": lon},
    }
    return {"metadata": {"name": name, "namespace": NS, "uid": f"u-{name}"}, "spec": spec}


def node(name: str, region: str, ip: str, taint: str | None = None) -> dict[str, Any]:
    spec = {"taints": [{"key": taint, "effect": "NoSchedule"}]} if taint else {}
    return {
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/region": region}},
        "spec": spec,
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


REGIONS = [region_obj("east", "us-east", 40.7, -74.0), region_obj("west", "us-west", 37.8, -122.4)]
NODES = [
    node("k-east-1", "us-east", "10.0.0.1"),
    node("k-east-2", "us-east", "10.0.0.2"),
    node("k-west-1", "us-west", "10.0.1.1"),
    node("k-west-2", "us-west", "10.0.1.2", taint="dedicated"),  # repels the agents
    node("k-other", "eu-north", "10.0.2.1"),  # another region's node
]
FED_OWNER = Owner("DWCPFederation", "global", NS, "u-fed")


def federation(tunnels: str = "wireguard") -> DWCPFederationSpec:
    return DWCPFederationSpec.model_validate(
        {
            "clusterRef": {"name": "fleet"},
            "members": [
                {"name": "us-east", "regionRef": {"name": "east"}},
                {"name": "us-west", "regionRef": {"name": "west"}},
                {
                    "name": "eu-west",
                    "endpoints": [{"host": "eu.example.net", "port": 7000}],
                    "agentEndpoints": [{"host": "192.0.2.10", "port": 7946}],
                },
            ],
            "tunnels": {"kind": tunnels, "overlayCidr": "198.19.0.0/24"},
        }
    )


def rendered(fed: DWCPFederationSpec) -> dict[str, list[dict[str, Any]]]:
    """Each region's children as the region pass builds them."""
    members = local_regions(REGIONS, [CLUSTER], NODES)
    out = {}
    for name, m in members.items():
        seen = view(name, NS, m.spec, (FED_OWNER, fed), members)
        ctx = RegionContext(
            NovaCronClusterSpec.model_validate(CLUSTER["spec"]),
            "fleet",
            federation="global",
            topology=seen.topology,
            gateway_peers=seen.gateway_peers,
            agents=seen.agents,
            probe_hosts=seen.probe_hosts,
        )
        owner = Owner("NovaCronRegion", name, NS, f"u-{name}")
        out[name] = build_region(owner, m.spec, ctx)
    return out


def agent_configs(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("agent")
    ]
    return dict(cm["data"])


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def test_each_agent_config_loads_with_the_peers_and_tunnels_of_the_federation(
    tmp_path: Path,
) -> None:
    loaded = {}
    for objs in rendered(federation()).values():
        data = agent_configs(objs)
        topo = write(tmp_path, "topology.json", data.pop("topology.json"))
        (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
        args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--topology") + 1].endswith("/topology.json")
        for file, text in data.items():
            cfg = load_agent(write(tmp_path, file, text), topo)
            loaded[file.removesuffix(".json")] = cfg
    # one agent per Kubernetes node its DaemonSet runs on: not the tainted one, not the
    # other region's
    assert sorted(loaded) == ["k-east-1", "k-east-2", "k-west-1"]
    east1, east2, west = loaded["k-east-1"], loaded["k-east-2"], loaded["k-west-1"]
    # named as topology.json makes their peers name them
    assert (east1.name, east2.name, west.name) == ("us-east-0", "us-east-1", "us-west")
    assert (east1.listen, east1.http) == ("10.0.0.1:7946", "10.0.0.1:7947")
    assert (east1.latitude, east1.longitude) == (40.7, -74.0)
    # peers: the other members' agents over UDP (never the own region's)
    assert {(p.name, p.address, p.mode) for p in west.peers} == {
        ("us-east-0", "10.0.0.1:7946", "agent"),
        ("us-east-1", "10.0.0.2:7946", "agent"),
        ("eu-west", "192.0.2.10:7946", "agent"),
    }
    assert {p.name for p in east1.peers} == {"us-west", "eu-west"}
    # a WireGuard tunnel between each pair of agents of different local members (the
    # remote member is not tunnelled); both ends agree on the /30, the key and the ports
    assert east1.tunnels.kind == "wireguard"
    assert east1.tunnels.keys_dir
    ends = {(cfg.name, link.peer): link for cfg in loaded.values() for link in cfg.tunnels.links}
    assert set(ends) == {
        ("us-east-0", "us-west"),
        ("us-west", "us-east-0"),
        ("us-east-1", "us-west"),
        ("us-west", "us-east-1"),
    }
    subnets = set()
    for (me, peer), link in ends.items():
        back = ends[(peer, me)]
        assert (link.local, link.remote) == (back.remote, back.local)
        assert link.key == back.key
        assert (link.port, link.remote_port) == (back.remote_port, back.port)
        net = ipaddress.IPv4Interface(link.address).network
        assert net == ipaddress.IPv4Interface(back.address).network
        assert net.prefixlen == 30
        assert link.address != back.address
        subnets.add(net)
    assert len(subnets) == 2  # one /30 per tunnel
    assert all(n.subnet_of(ipaddress.IPv4Network("198.19.0.0/24")) for n in subnets)
    # the west agent keeps two WireGuard interfaces: one listen port each
    assert sorted(link.port for link in west.tunnels.links) == [51820, 51821]


def test_agents_without_tunnels_measure_only_and_run_unprivileged(tmp_path: Path) -> None:
    objs = rendered(federation("none"))["east"]
    data = agent_configs(objs)
    topo = write(tmp_path, "topology.json", data.pop("topology.json"))
    cfg = load_agent(write(tmp_path, "k-east-1.json", data["k-east-1.json"]), topo)
    assert cfg.tunnels.kind == "none"
    assert not cfg.tunnels.links
    (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize(
    ("kind", "caps", "tun"),
    [("vxlan", ["NET_ADMIN"], False), ("gre", ["NET_ADMIN", "NET_RAW"], True)],
)
def test_tunnel_kind_sets_what_the_agent_may_do(kind: str, caps: list[str], tun: bool) -> None:
    (ds,) = [o for o in rendered(federation(kind))["east"] if o["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": caps}
    paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert ("/dev/net/tun" in paths) is tun
    assert "/run/novacron/tunnels" in paths  # outlives the pod: the next agent adopts


def test_each_gateway_config_loads_with_every_region_of_the_federation(tmp_path: Path) -> None:
    fed = federation()
    out = rendered(fed)
    members = local_regions(REGIONS, [CLUSTER], NODES)
    (topo_cm,) = build_federation(FED_OWNER, fed, {n: m.local for n, m in members.items()})
    topo = write(tmp_path, "topology.json", topo_cm["data"]["topology.json"])
    for name, region in (("east", "us-east"), ("west", "us-west")):
        objs = out[name]
        (cm,) = [o for o in objs if o["metadata"]["name"] == f"{name}-config"]
        (dep,) = [o for o in objs if o["kind"] == "Deployment"]
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:3] == ["gateway", "--config", "/etc/novacron/gateway.json"]
        cfg = load_gateway(write(tmp_path, "gateway.json", cm["data"]["gateway.json"]), topo)
        assert cfg.region == region
        regions = {r.name: r for r in cfg.regions}
        assert set(regions) == {"us-east", "us-west", "eu-west"}
        # local regions through their nodes' client Service, placed where they are
        assert list(regions["us-east"].seeds) == ["east.prod.svc:8080"]
        assert list(regions["us-west"].location or ()) == [37.8, -122.4]
        # the remote member from topology.json, on the client port of its endpoints
        assert list(regions["eu-west"].seeds) == ["eu.example.net:8080"]
        assert (cfg.listen, cfg.admin_listen) == ("0.0.0.0:8443", "0.0.0.0:9090")


def test_wireguard_keys_are_kept_until_rotation_is_due() -> None:
    owner = Owner("NovaCronRegion", "east", NS, "u-east")
    members = local_regions(REGIONS, [CLUSTER], NODES)
    seen = view("east", NS, members["east"].spec, (FED_OWNER, federation()), members)
    assert seen.agents is not None
    seats = list(seen.agents.seats)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    first, changed = keys_secret(owner, NS, "east-agent", seats, None, {"us-west": "PUB"}, 30, t0)
    assert changed
    data = set(first["data"])
    assert data == {
        "us-east-0.key",
        "us-east-1.key",
        "us-east-0.pub",
        "us-east-1.pub",
        "us-west.pub",
    }
    # a later pass keeps the pairs
    again, changed = keys_secret(
        owner, NS, "east-agent", seats, first, {"us-west": "PUB"}, 30, t0 + dt.timedelta(days=29)
    )
    assert not changed
    assert again["data"] == first["data"]
    assert not rotation_due(first, 30, t0 + dt.timedelta(days=29))
    assert not rotation_due(first, 0, t0 + dt.timedelta(days=3000))  # 0: never
    assert rotation_due(first, 30, t0 + dt.timedelta(days=30))
    rotated, changed = keys_secret(
        owner, NS, "east-agent", seats, first, {"us-west": "PUB"}, 30, t0 + dt.timedelta(days=30)
    )
    assert changed
    for agent in ("us-east-0", "us-east-1"):
        assert rotated["data"][f"{agent}.key"] != first["data"][f"{agent}.key"]
    stamp = rotated["metadata"]["annotations"]["novacron.io/keys-created-at"]
    assert stamp == "2026-01-31T00:00:00Z"
    assert json.loads(rotated["metadata"]["annotations"]["novacron.io/public-keys"]).keys() == {
        "us-east-0",
        "us-east-1",
    }


def image_dirs() -> dict[str, tuple[int, int, int]]:
    """The directories images/core.Dockerfile makes with ``install -d -o U -g G -m MODE``:
    path -> (mode, uid, gid). Every other directory of the image is root's, 0755."""
    text = (Path(__file__).parents[2] / "images" / "core.Dockerfile").read_text()
    out = {}
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split()
        while "install" in words:
            words = words[words.index("install") + 1 :]
            if words[:1] != ["-d"]:
                continue
            opts = dict(zip(words[1:7:2], words[2:7:2], strict=True))
            paths = [w for w in words[7:] if w.startswith("/")]
            for p in paths:
                out[p] = (int(opts["-m"], 8), int(opts["-o"]), int(opts["-g"]))
    assert "/etc/novacron" in out, "the Dockerfile's install -d line changed: update this parser"
    return out


def may_traverse(mode: int, owner: int, group: int, uid: int, gids: set[int]) -> bool:
    # no CAP_DAC_OVERRIDE/DAC_READ_SEARCH in any rendered container (capabilities drop ALL),
    # so root is held to the mode bits like anyone else
    if uid == owner:
        return bool(mode & 0o100)
    if group in gids:
        return bool(mode & 0o010)
    return bool(mode & 0o001)


@pytest.mark.parametrize("tunnels", ["none", "wireguard"])
def test_every_mounted_config_is_reachable_for_the_pods_user(tunnels: str) -> None:
    """A ConfigMap or Secret mounted below a directory of the image that the pod's user
    cannot enter is a crash loop on a real node ("cannot read: Permission denied") that
    kwok's process-less pods never show: the agent's config below the image's
    /etc/novacron (0750, uid 10001) did exactly that for uid 65532."""
    dirs = image_dirs()
    seen = 0
    for objs in rendered(federation(tunnels)).values():
        for o in objs:
            if o["kind"] not in ("StatefulSet", "Deployment", "DaemonSet"):
                continue
            pod = o["spec"]["template"]["spec"]
            psc = pod.get("securityContext", {})
            volumes = {v["name"]: v for v in pod["volumes"]}
            for c in pod["containers"]:
                csc = c.get("securityContext", {})
                uid = csc.get("runAsUser", psc.get("runAsUser"))
                gid = csc.get("runAsGroup", psc.get("runAsGroup", uid))
                gids = {gid, psc.get("fsGroup"), *psc.get("supplementalGroups", [])}
                assert "DAC_OVERRIDE" not in csc.get("capabilities", {}).get("add", [])
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                for m in c["volumeMounts"]:
                    v = volumes.get(m["name"], {})  # (a volumeClaimTemplate: not here)
                    if not ({"configMap", "secret", "projected"} & set(v)):
                        continue
                    seen += 1
                    parent = Path(m["mountPath"]).parent
                    for d in (parent, *parent.parents):
                        if str(d) in mounts:
                            continue  # a volume replaces the image's directory there
                        mode, owner, group = dirs.get(str(d), (0o755, 0, 0))
                        assert may_traverse(mode, owner, group, uid, gids), (
                            f"{o['kind']} {o['metadata']['name']}: {m['mountPath']} lies below "
                            f"the image's {d} ({oct(mode)}, {owner}:{group}), which uid {uid} "
                            f"(groups {sorted(g for g in gids if g is not None)}) cannot enter"
                        )
    assert seen >= 6  # node, gateway and agent configs of both regions at least
