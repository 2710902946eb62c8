"""Node settings: the peer list in every form the operator and people write it, and which
nodes start as joiners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from novacron_core.runtime.settings import load_settings

PEERS = ["a-0=h0:7000/h0:8080", "a-1=h1:7000/h1:8080"]
COMMA = ",".join(PEERS)
WANT = {"a-0": (("h0", 7000), ("h0", 8080)), "a-1": (("h1", 7000), ("h1", 8080))}


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_peers_as_a_list_in_a_config_file(tmp_path: Path, suffix: str) -> None:
    f = tmp_path / f"node{suffix}"
    f.write_text(json.dumps({"node_id": "a-0", "data_dir": "/d", "peers": PEERS}))
    assert load_settings(str(f)).peer_map() == WANT  # JSON is valid YAML too


def test_peers_as_a_comma_string_a_list_or_a_json_array_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(node_id="a-0", data_dir="/d", peers=COMMA).peer_map() == WANT
    assert load_settings(node_id="a-0", data_dir="/d", peers=PEERS).peer_map() == WANT
    monkeypatch.setenv("NOVACRON_PEERS", json.dumps(PEERS))
    assert load_settings(node_id="a-0", data_dir="/d").peer_map() == WANT
    monkeypatch.setenv("NOVACRON_PEERS", COMMA)
    assert load_settings(node_id="a-0", data_dir="/d").peer_map() == WANT


def test_a_list_of_non_strings_is_refused() -> None:
    with pytest.raises(ValueError, match="peers"):
        load_settings(node_id="a-0", data_dir="/d", peers=[{"a-0": "h0:7000"}])


def test_a_node_not_among_its_peers_is_a_joiner(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the operator gives a scaled-up pod: the bootstrap list and its own name.
    monkeypatch.setenv("NOVACRON_NODE_ID", "a-3")
    monkeypatch.setenv("NOVACRON_PEER_LISTEN", "0.0.0.0:7000")
    monkeypatch.setenv("NOVACRON_HTTP_LISTEN", "0.0.0.0:8080")
    s = load_settings(data_dir="/d", peers=PEERS)
    assert (s.node_id, s.joiner, s.peer_listen) == ("a-3", True, "0.0.0.0:7000")
    assert not load_settings(node_id="a-1", data_dir="/d", peers=PEERS).joiner
    assert load_settings(node_id="a-1", data_dir="/d", peers=PEERS, join=True).joiner


def test_initial_cluster_state_from_flag_environment_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {"node_id": "a-0", "data_dir": "/d", "peers": COMMA}
    assert load_settings(**base).cluster_state() == "new"  # the default: today's behaviour
    assert load_settings(**base, initial_cluster_state="existing").cluster_state() == "existing"
    monkeypatch.setenv("NOVACRON_INITIAL_CLUSTER_STATE", "existing")
    assert load_settings(**base).cluster_state() == "existing"
    with pytest.raises(ValueError, match="initial_cluster_state"):
        load_settings(**base, initial_cluster_state="maybe")
    # the operator's ConfigMap key: wins when present, falls back when absent
    f = tmp_path / "cluster-state"
    s = load_settings(**base, initial_cluster_state="new", initial_cluster_state_file=str(f))
    assert s.cluster_state() == "new"
    f.write_text("existing\n")
    assert s.cluster_state() == "existing"
    f.write_text("bogus")
    with pytest.raises(ValueError, match="'new' or 'existing'"):
        s.cluster_state()


def test_the_federation_file_comes_from_node_json_the_environment_or_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "node.json"
    f.write_text(json.dumps({"node_id": "a-0", "data_dir": "/d", "federation_file": "/f/a"}))
    assert load_settings(str(f)).federation_file == "/f/a"
    monkeypatch.setenv("NOVACRON_FEDERATION_FILE", "/f/env")
    assert load_settings(str(f)).federation_file == "/f/env"  # the environment beats the file
    assert load_settings(str(f), federation_file="/f/flag").federation_file == "/f/flag"
    monkeypatch.delenv("NOVACRON_FEDERATION_FILE")
    assert load_settings(node_id="a-0", data_dir="/d").federation_file is None  # single region


def test_protocol_and_quorum_are_checked_naming_the_field() -> None:
    s = load_settings(node_id="a-0", data_dir="/d", protocol="multi-paxos", quorum="flexible:q2=2")
    assert (s.protocol, s.quorum) == ("multi-paxos", "flexible:q2=2")
    with pytest.raises(ValueError, match=r"protocol[\s\S]*'paxos' is not implemented.*multi-paxos"):
        load_settings(node_id="a-0", data_dir="/d", protocol="paxos")
    with pytest.raises(ValueError, match=r"quorum[\s\S]*flexible needs q2"):
        load_settings(node_id="a-0", data_dir="/d", quorum="flexible")


def test_lease_reads_are_refused_for_leaderless_epaxos_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"read_mode: 'lease'.*use read_index"):
        load_settings(
            node_id="a-0", data_dir="/d", peers=COMMA, protocol="epaxos", read_mode="lease"
        )
    s = load_settings(node_id="a-0", data_dir="/d", peers=COMMA, protocol="epaxos")
    assert s.read_mode != "lease"
