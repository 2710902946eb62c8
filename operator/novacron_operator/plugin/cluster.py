"""What the kubectl plugin reads and does through the API server: NovaCronRegions, their
node pods, and each node's admin API reached by exec inside its pod (exec goes through the
kubelet, not the pod network, so it works where NetworkPolicies keep the API server's
proxy and port-forwards out)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

GROUP, VERSION = "novacron.io", "v1alpha1"
API_PORT = 8080
NODE_CONTAINER = "node"

# Run inside the node container (the image has Python; nothing else is assumed). Prints
# one JSON document: {"status": http status, "body": parsed body or text}.
_HTTP = """
import json, sys, urllib.request, urllib.error
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request("http://127.0.0.1:%d" + path, method=method,
    data=body.encode() if body else None, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        status, raw = r.status, r.read()
except urllib.error.HTTPError as e:
    status, raw = e.code, e.read()
try:
    doc = json.loads(raw)
except ValueError:
    doc = raw.decode(errors="replace")
print(json.dumps({"status": status, "body": doc}))
""".replace("%d", str(API_PORT))


class PluginError(Exception):
    """A failure to report to the user as is (no traceback)."""


@dataclass(frozen=True)
class NodeView:
    """One node pod as its own admin API describes it (None fields: it did not answer)."""

    pod: str
    phase: str
    ready: bool
    restarts: int
    host: str
    role: str | None = None
    term: int | None = None
    leader: str | None = None
    commit: int | None = None
    applied: int | None = None
    error: str | None = None


class Cluster:
    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        load: Any = config.load_kube_config  # both untyped upstream
        contexts_of: Any = config.list_kube_config_contexts
        try:
            load(config_file=kubeconfig, context=context)
            contexts, active = contexts_of(config_file=kubeconfig)
        except config.ConfigException as e:
            raise PluginError(f"no usable kubeconfig: {e}") from None
        if context:
            active = next((c for c in contexts if c["name"] == context), active)
        self.namespace = (
            namespace or (active or {}).get("context", {}).get("namespace") or "default"
        )
        self.core = client.CoreV1Api()
        self.custom = client.CustomObjectsApi()

    # ------------------------------------------------------------------ reads

    def regions(self, all_namespaces: bool = False) -> list[dict[str, Any]]:
        doc: Any
        try:
            if all_namespaces:
                doc = self.custom.list_cluster_custom_object(GROUP, VERSION, "novacronregions")
            else:
                doc = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "novacronregions"
                )
        except ApiException as e:
            raise PluginError(_api_error("list NovaCronRegions", e)) from None
        return sorted(
            doc.get("items", []),
            key=lambda r: (r["metadata"]["namespace"], r["metadata"]["name"]),
        )

    def region(self, name: str) -> dict[str, Any]:
        obj: Any
        try:
            obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "novacronregions", name
            )
        except ApiException as e:
            if e.status == 404:
                names = [r["metadata"]["name"] for r in self.regions()]
                known = ", ".join(names) if names else "none"
                raise PluginError(
                    f"no NovaCronRegion {name!r} in namespace {self.namespace} "
                    f"(regions there: {known}; -n picks another namespace)"
                ) from None
            raise PluginError(_api_error(f"get NovaCronRegion {name}", e)) from None
        return dict(obj)

    def pods(self, region: str, namespace: str, component: str = "node") -> list[Any]:
        selector = f"app.kubernetes.io/instance={region},app.kubernetes.io/component={component}"
        try:
            items = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        except ApiException as e:
            raise PluginError(_api_error(f"list {component} pods of {region}", e)) from None
        return sorted(items, key=lambda p: p.metadata.name)

    def node_view(self, pod: Any) -> NodeView:
        statuses = pod.status.container_statuses or []
        base = {
            "pod": pod.metadata.name,
            "phase": pod.status.phase or "Unknown",
            "ready": bool(statuses) and all(s.ready for s in statuses),
            "restarts": sum(s.restart_count for s in statuses),
            "host": pod.spec.node_name or "",
        }
        if pod.status.phase != "Running":
            return NodeView(**base, error="not running")
        try:
            status, doc = self.node_http(
                pod.metadata.name, pod.metadata.namespace, "GET", "/v1/cluster"
            )
        except PluginError as e:
            return NodeView(**base, error=str(e))
        if status != 200 or not isinstance(doc, dict):
            return NodeView(**base, error=f"/v1/cluster answered {status}")
        return NodeView(
            **base,
            role=str(doc.get("role")),
            term=_int(doc.get("term")),
            leader=doc.get("leader"),
            commit=_int(doc.get("commit")),
            applied=_int(doc.get("applied")),
        )

    # ------------------------------------------------------------------ actions

    def node_http(
        self, pod: str, namespace: str, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        """Call a node's admin API from inside its pod; (HTTP status, body)."""
        command = [
            "python",
            "-c",
            _HTTP,
            method,
            path,
            json.dumps(body) if body is not None else "",
        ]
        try:
            resp = stream(
                self.core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                container=NODE_CONTAINER,
                command=command,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
            resp.run_forever(timeout=15)
            out, err = resp.read_stdout(), resp.read_stderr()
            resp.close()
        except ApiException as e:
            raise PluginError(_api_error(f"exec in {pod}", e)) from None
        except Exception as e:  # websocket errors: the pod went away, kubelet unreachable
            raise PluginError(f"exec in {pod}: {e}") from None
        try:
            doc = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            detail = (err or out).strip().splitlines()[-1:] or ["no output"]
            raise PluginError(f"{pod}: admin API unreachable ({detail[0]})") from None
        return int(doc["status"]), doc["body"]

    def delete_pod(self, pod: str, namespace: str) -> str:
        """Delete a pod; returns its uid so the caller can tell the replacement apart."""
        try:
            found: Any = self.core.read_namespaced_pod(pod, namespace)
            uid = found.metadata.uid
            self.core.delete_namespaced_pod(pod, namespace)
        except ApiException as e:
            raise PluginError(_api_error(f"delete pod {pod}", e)) from None
        return str(uid)

    def wait_replaced_ready(self, pod: str, namespace: str, old_uid: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                p: Any = self.core.read_namespaced_pod(pod, namespace)
            except ApiException as e:
                if e.status != 404:
                    raise PluginError(_api_error(f"get pod {pod}", e)) from None
                time.sleep(1)
                continue
            statuses = p.status.container_statuses or []
            if p.metadata.uid != old_uid and statuses and all(s.ready for s in statuses):
                return
            time.sleep(1)
        raise PluginError(f"{pod} was not back and Ready within {timeout:.0f}s")

    def logs(
        self,
        pod: str,
        namespace: str,
        container: str | None,
        tail: int | None,
        since: int | None,
        follow: bool,
    ) -> Iterator[str]:
        kwargs: dict[str, Any] = {"container": container, "follow": follow}
        if tail is not None:
            kwargs["tail_lines"] = tail
        if since is not None:
            kwargs["since_seconds"] = since
        try:
            if not follow:
                text = self.core.read_namespaced_pod_log(pod, namespace, **kwargs)
                yield from text.splitlines()
                return
            resp: Any = self.core.read_namespaced_pod_log(
                pod, namespace, _preload_content=False, **kwargs
            )
            buf = b""
            for chunk in resp.stream(1024):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
            if buf:
                yield buf.decode(errors="replace")
        except ApiException as e:
            raise PluginError(_api_error(f"logs of {pod}", e)) from None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float | str) and str(value).isdigit() else None


def _api_error(what: str, e: ApiException) -> str:
    try:
        message = json.loads(e.body or "{}").get("message") or e.reason
    except ValueError:
        message = e.reason
    return f"{what}: {e.status} {message}"
