"""``novacron render FILE.yaml``: the Kubernetes objects the operator would create, offline.

The same pure builders the operator reconciles with; nothing talks to a cluster. Owner UIDs
are derived from kind/namespace/name (the API server assigns real ones on apply), and the
cluster's CA Secret is left out unless asked for, since it holds a freshly generated key.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import click
import yaml
from pydantic import ValidationError

from novacron_operator.builders import (
    Owner,
    build_ca_secret,
    build_cluster,
    build_federation,
    build_region,
)
from novacron_operator.builders.federation import federation_of
from novacron_operator.builders.region import RegionContext
from novacron_operator.federated import local_regions, view
from novacron_operator.models import (
    NO_ADAPTIVE,
    DWCPFederationSpec,
    NovaCronClusterSpec,
    NovaCronRegionSpec,
)

KINDS = ("NovaCronCluster", "NovaCronRegion", "DWCPFederation")


class RenderError(click.ClickException):
    pass


def _owner(doc: dict[str, Any], namespace: str) -> Owner:
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise RenderError(f"a {doc.get('kind')} has no metadata.name")
    ns = meta.get("namespace") or namespace
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"novacron.io/{doc['kind']}/{ns}/{name}"))
    return Owner(doc["kind"], name, ns, uid)


def _spec(model: Any, doc: dict[str, Any], owner: Owner) -> Any:
    try:
        return model.model_validate(doc.get("spec") or {})
    except ValidationError as e:
        where = f"{owner.kind} {owner.namespace}/{owner.name}"
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise RenderError(f"{where}: {problems}") from None


def render(
    docs: list[dict[str, Any]], namespace: str, with_ca: bool = False
) -> list[dict[str, Any]]:
    ours = [d for d in docs if isinstance(d, dict) and d.get("kind") in KINDS]
    if not ours:
        raise RenderError(f"no {', '.join(KINDS)} in the input")
    clusters: dict[tuple[str, str], NovaCronClusterSpec] = {}
    out: list[dict[str, Any]] = []
    for doc in ours:
        if doc["kind"] == "NovaCronCluster":
            owner = _owner(doc, namespace)
            spec = _spec(NovaCronClusterSpec, doc, owner)
            clusters[(owner.namespace, owner.name)] = spec
            out += build_cluster(owner, spec)
            if with_ca:
                out.append(build_ca_secret(owner, spec))
    regions: list[tuple[Owner, NovaCronRegionSpec, NovaCronClusterSpec]] = []
    feds: dict[str, dict[str, tuple[Owner, DWCPFederationSpec]]] = {}  # namespace -> name
    by_ns: dict[str, dict[str, list[dict[str, Any]]]] = {}  # namespace -> kind -> docs
    for doc in ours:
        owner = _owner(doc, namespace)
        by_ns.setdefault(owner.namespace, {}).setdefault(doc["kind"], []).append(
            {**doc, "metadata": {**(doc.get("metadata") or {}), "name": owner.name}}
        )
        if doc["kind"] == "NovaCronRegion":
            rspec = _spec(NovaCronRegionSpec, doc, owner)
            cluster = clusters.get((owner.namespace, rspec.cluster_ref.name))
            if cluster is None:
                raise RenderError(
                    f"NovaCronRegion {owner.name} refers to NovaCronCluster "
                    f"{rspec.cluster_ref.name!r}, which is not in the input: add it to the file"
                )
            if (rspec.protocol or cluster.region_defaults.protocol) == "adaptive":
                # the API server refuses it (the CRD's rule): so does the offline render
                raise RenderError(f"NovaCronRegion {owner.name}: protocol: {NO_ADAPTIVE[1]}")
            regions.append((owner, rspec, cluster))
        elif doc["kind"] == "DWCPFederation":
            fspec = _spec(DWCPFederationSpec, doc, owner)
            feds.setdefault(owner.namespace, {})[owner.name] = (owner, fspec)
    # offline, no Kubernetes node is known: the agents' ConfigMaps name no node, and
    # topology.json lists no agent
    members = {
        ns: local_regions(kinds.get("NovaCronRegion", []), kinds.get("NovaCronCluster", []), [])
        for ns, kinds in by_ns.items()
    }
    for owner, rspec, cluster in regions:
        ns_feds = feds.get(owner.namespace, {})
        fed = federation_of(owner.name, {n: s for n, (_, s) in ns_feds.items()})
        seen = view(
            owner.name,
            owner.namespace,
            rspec,
            ns_feds[fed] if fed else None,
            members.get(owner.namespace, {}),
        )
        ctx = RegionContext(
            cluster,
            rspec.cluster_ref.name,
            federation=fed,
            topology=seen.topology,
            gateway_peers=seen.gateway_peers,
            agents=seen.agents,
            probe_hosts=seen.probe_hosts,
        )
        out += build_region(owner, rspec, ctx)
    for ns, by_name in feds.items():
        local = {n: m.local for n, m in members.get(ns, {}).items()}
        for owner, fspec in by_name.values():
            out += build_federation(owner, fspec, local)
    return out


@click.command("render")
@click.argument("files", nargs=-1, required=True, type=click.File("r"))
@click.option("-n", "--namespace", default="default", show_default=True,
              help="Namespace for resources that do not name one.")  # fmt: skip
@click.option("--with-ca", is_flag=True, help="Also render the cluster CA Secret (a new key).")
def render_command(files: tuple[Any, ...], namespace: str, with_ca: bool) -> None:
    """Print the Kubernetes objects the operator would create for FILES (offline).

    FILES hold NovaCronCluster, NovaCronRegion and DWCPFederation resources ('-' reads
    stdin), e.g. `novacron render examples/three-region.yaml | kubectl apply --dry-run=server -f -`.
    """
    docs: list[dict[str, Any]] = []
    for f in files:
        try:
            docs += [d for d in yaml.safe_load_all(f) if d]
        except yaml.YAMLError as e:
            raise RenderError(f"{f.name}: not valid YAML: {e}") from None
    objs = render(docs, namespace, with_ca)
    sys.stdout.write(yaml.safe_dump_all(objs, sort_keys=False))
