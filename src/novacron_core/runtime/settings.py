"""Node configuration: flags > environment (NOVACRON_*) > config file > defaults.

The operator sets the same names as environment variables in the StatefulSet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOVACRON_", extra="ignore")

    node_id: str
    data_dir: Path
    region: str = "local"
    # The bootstrap members, "n1=127.0.0.1:7001/127.0.0.1:8001,n2=..." (peer address / HTTP
    # address); also accepted as a list of "id=peer/http" strings (YAML/JSON config files,
    # or a JSON array in NOVACRON_PEERS). Members added later are learned from the log.
    peers: str = ""
    peer_listen: str = ""  # default: this node's peer address from ``peers``
    http_listen: str = ""  # default: this node's HTTP address from ``peers``
    # A new member: starts empty and waits to be added by the leader. Implied when this
    # node's id is not among ``peers`` (then peer_listen and http_listen are required).
    join: bool = False
    # "existing": the group has already formed (the operator says so once it has). A
    # bootstrap member that then finds its data dir empty (a lost volume) does not bootstrap
    # again as a voter: it waits, abstaining from elections, to be removed and re-added as a
    # learner (member replace). "new" (the default): bootstrap from ``peers`` as always.
    initial_cluster_state: Literal["new", "existing"] = "new"
    # A file holding "new" or "existing" (the operator's ConfigMap key ``cluster-state``,
    # outside the config hash, so it flips without rolling pods); read at start, it wins
    # over ``initial_cluster_state`` when it exists.
    initial_cluster_state_file: str | None = None
    # The region's consensus protocol (``consensus/registry.py``: "raft", "multi-paxos",
    # "eventual"; the CRD's ``protocol``); one this build lacks stops the node with a
    # message naming it.
    protocol: str = "raft"
    # Which voter sets decide (``consensus/quorum.py``): "majority", or for multi-paxos
    # "flexible:q2=N", "weighted:NODE=W,...", "grid:cols=C", "hierarchical:NODE=REGION,...".
    quorum: str = "majority"
    election_timeout_ms: int = 200  # failover p99 target < 500 ms: detection takes T..2T
    heartbeat_ms: int = 50
    snapshot_entries: int = 10_000
    read_mode: Literal["read_index", "lease"] = "read_index"
    fsync: bool = True
    max_inflight_requests: int = 4096
    # The wire API (runtime/wire_api.py: pipelined msgpack frames over TCP) listens on the
    # HTTP host at the HTTP port plus this offset (8080 -> 8081); 0 turns it off. One offset
    # for the whole group: a follower tells a client where the leader's wire API is from
    # the leader's replicated HTTP address.
    wire_port_offset: int = Field(default=1, ge=0, le=1000)
    request_timeout_s: float = 5.0
    # The federation this node's region belongs to: the JSON file the operator renders from
    # a DWCPFederation (federation/config.py says what it holds). Absent: a single-region
    # node. Re-read every ``federation_poll_s`` and applied without a restart.
    federation_file: str | None = None
    federation_poll_s: float = 2.0
    # The demo's stand-in for a WAN: hold each federation message RTT/2 (the demo's matrix)
    # and drop it across a partition set through POST /v1/federation/netem. Never in
    # production (the network delays there).
    demo_link_rules: bool = False
    # Prometheus metrics (observe.metrics conventions); off, every update is a no-op.
    metrics: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, v: str) -> str:
        from novacron_core.consensus.registry import available

        if v not in available():
            raise ValueError(
                f"{v!r} is not implemented by this node (available: {', '.join(available())})"
            )
        return v

    @field_validator("quorum")
    @classmethod
    def _valid_quorum(cls, v: str) -> str:
        from novacron_core.consensus.quorum import parse_strategy

        parse_strategy(v)  # a QuorumError (a ValueError) names what is wrong
        return v

    @model_validator(mode="after")
    def _leaderless_reads(self) -> NodeSettings:
        if self.protocol == "epaxos" and self.read_mode == "lease":
            raise ValueError(
                "read_mode: 'lease' is a leader's lease and epaxos has no leader (its reads "
                "are ordered like writes): use read_index"
            )
        return self

    @field_validator("peers", mode="before")
    @classmethod
    def _peers_as_string(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lstrip().startswith("["):
            try:
                v = json.loads(v)
            except ValueError:
                raise ValueError("peers: not a valid JSON list") from None
        if isinstance(v, list | tuple):
            if not all(isinstance(x, str) for x in v):
                raise ValueError('peers: a list of "id=peerhost:port/httphost:port" strings')
            return ",".join(x.strip() for x in v)
        return v

    def cluster_state(self) -> str:
        """``initial_cluster_state``, or what ``initial_cluster_state_file`` says."""
        if self.initial_cluster_state_file:
            path = Path(self.initial_cluster_state_file)
            if path.exists():
                value = path.read_text().strip()
                if value not in ("new", "existing"):
                    raise ValueError(f"{path}: 'new' or 'existing' expected, not {value!r}")
                return value
        return self.initial_cluster_state

    @property
    def joiner(self) -> bool:
        """Starts without a configuration and waits to be added (see ``join``)."""
        return self.join or self.node_id not in self.peer_map()

    def peer_map(self) -> dict[str, tuple[tuple[str, int], tuple[str, int]]]:
        out = {}
        for item in filter(None, (p.strip() for p in self.peers.split(","))):
            node, addrs = item.split("=", 1)
            peer, _, http = addrs.partition("/")
            out[node] = (split_addr(peer), split_addr(http or peer))
        return out


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def load_settings(config_file: str | None = None, **flags: Any) -> NodeSettings:
    values: dict[str, Any] = {}
    if config_file:
        text = Path(config_file).read_text()
        if config_file.endswith((".yaml", ".yml")):
            import yaml

            values = dict(yaml.safe_load(text) or {})
        else:
            values = dict(json.loads(text))
        # The environment beats the file: drop file values the environment also sets.
        values = {k: v for k, v in values.items() if f"NOVACRON_{k.upper()}" not in os.environ}
    values.update({k: v for k, v in flags.items() if v is not None})
    return NodeSettings(**values)
