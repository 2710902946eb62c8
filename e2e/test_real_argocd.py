"""Argo CD for real: the application controller, repo server and ApplicationSet controller
sync the repository's argocd/ ApplicationSets (served by git on loopback) into the local
control plane with a real node. Argo CD itself reports the Applications Synced and their
health, computed by our Lua checks; a pushed replica change is rolled out; a broken region
is reported Degraded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from argocdlocal import NS, ArgoCD, GitServer, argocd_dir, argocd_objects
from conftest import ROOT, wait_for
from realcluster import Real

pytestmark = pytest.mark.e2e
DEV_NS = "novacron-dev"
AGENT_NS = "novacron-agents"
APPS = {c: f"novacron-dev-in-cluster-{c}" for c in ("crds", "operator", "resources")}
HEALTH_LUA = (ROOT / "argocd" / "health" / "novacron.lua").read_text()


@dataclass
class Env:
    real: Real
    argo: ArgoCD
    git: GitServer
    synced_in: float  # ApplicationSets applied -> every Application Synced


def lua_health(obj: dict[str, Any]) -> dict[str, str]:
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA)
    return {"status": result["status"], "message": result["message"]}


def app_state(env: Env, component: str) -> tuple[str, str, str] | None:
    """(sync status, health status, synced revision) as Argo CD reports them."""
    app = env.argo.app(APPS[component])
    if app is None:
        return None
    st = app.get("status") or {}
    return (
        (st.get("sync") or {}).get("status", ""),
        (st.get("health") or {}).get("status", ""),
        (st.get("sync") or {}).get("revision", ""),
    )


def refresh(env: Env) -> None:
    for name in APPS.values():
        env.real.run(
            "annotate",
            "application",
            name,
            "-n",
            NS,
            "argocd.argoproj.io/refresh=normal",
            "--overwrite",
            check=False,
        )


def region_resource(env: Env) -> dict[str, Any] | None:
    app = env.argo.app(APPS["resources"]) or {}
    for r in (app.get("status") or {}).get("resources") or []:
        if r.get("kind") == "NovaCronRegion" and r.get("name") == "us-east":
            return dict(r)
    return None


def dev_values(env: Env) -> tuple[dict[str, Any], Any]:
    path = env.git.work / "charts" / "novacron" / "values-dev.yaml"
    return yaml.safe_load(path.read_text()), path


@pytest.fixture(scope="module")
def env(real: Real, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    bin_dir = argocd_dir()
    work = tmp_path_factory.mktemp("argocd")
    (work / "git").mkdir()
    git = GitServer(work / "git").start()
    # The DWCP agents use the host's network, which the dev namespace's PodSecurity level
    # (restricted) refuses: as README's install says, the admin makes them a privileged
    # namespace and the operator is told to put them there (the AppProject admits it).
    real.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": AGENT_NS,
                 "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}])  # fmt: skip
    path = git.work / "charts" / "novacron" / "values-dev.yaml"
    values = yaml.safe_load(path.read_text())
    values["operator"]["agentNamespace"] = AGENT_NS
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    git.commit(f"dev: the DWCP agents in their privileged namespace {AGENT_NS}")
    argo = ArgoCD(real, bin_dir, work)
    try:
        argo.install()
        argo.start()
        start = time.monotonic()
        real.apply(argocd_objects(str(real.bins / "kubectl"), git.url))
        env = Env(real, argo, git, 0.0)

        def all_synced() -> bool:
            argo.check_alive()
            return all((s := app_state(env, c)) and s[0] == "Synced" for c in APPS)

        wait_for("Argo CD to generate and sync the dev Applications", all_synced, 300, every=2)
        env.synced_in = time.monotonic() - start
        print(
            f"\nArgo CD: ApplicationSets applied -> 3 Applications Synced in {env.synced_in:.1f}s"
        )
        yield env
    finally:
        print(real.run("get", "applications", "-n", NS, check=False).stdout)
        real.run("delete", "applicationsets", "--all", "-n", NS, "--wait=false", check=False)
        real.run("delete", "applications", "--all", "-n", NS, "--wait=false", check=False)
        argo.stop()
        git.stop()
        # the NovaCron objects first, while their operator runs (it removes agents elsewhere)
        real.run("delete", "novacron", "--all", "-n", DEV_NS, "--timeout=90s", check=False)
        real.run("delete", "namespace", DEV_NS, AGENT_NS, "--timeout=120s", check=False)
        real.run(
            "delete",
            "clusterrole,clusterrolebinding",
            "-l",
            "app.kubernetes.io/instance=novacron,novacron.io/environment=dev",
            check=False,
        )
        for name in ("crds", "operator", "resources"):
            log = work / f"argocd-{name}.log"
            if log.exists():
                print(log.read_text(errors="replace")[-2000:])


def test_crds_and_operator_applications_synced_and_healthy(env: Env) -> None:
    for c in ("crds", "operator"):
        state = wait_for(
            f"{APPS[c]} Synced and Healthy",
            lambda c=c: (s := app_state(env, c)) and s[:2] == ("Synced", "Healthy") and s,
            timeout=240,
            every=2,
        )
        assert state[2], "Argo CD names the git revision it synced"
    # the operator the operator Application deployed runs as a real pod
    pods = env.real.json("get", "pods", "-n", DEV_NS, "-l", "app.kubernetes.io/component=operator")[
        "items"
    ]
    assert [p["status"]["phase"] for p in pods] == ["Running"]


def test_region_health_is_what_our_lua_check_says(env: Env) -> None:
    """Argo CD computes the NovaCronRegion's health with argocd/health/novacron.lua (from
    argocd-cm): what it reports equals the script's verdict on the live object."""
    wait_for(
        "us-east node pod Ready",
        lambda: (
            env.real.run(
                "wait",
                "-n",
                DEV_NS,
                "--for=condition=Ready",
                "--timeout=5s",
                "pod/us-east-0",
                check=False,
            ).returncode
            == 0
        ),
        timeout=240,
        every=2,
    )

    def agree() -> tuple[dict[str, Any], dict[str, str]] | None:
        live = env.real.json("get", "novacronregion", "us-east", "-n", DEV_NS)
        want = lua_health(live)
        got = (region_resource(env) or {}).get("health") or {}
        return (got, want) if got.get("status") == want["status"] else None

    got, want = wait_for("Argo CD's region health to match our Lua's", agree, 120, every=2)
    print(f"\nArgo CD reports us-east {got}; our Lua says {want}")
    assert got.get("message", "") == want["message"]


def test_resources_application_healthy(env: Env) -> None:
    wait_for(
        "the resources Application Healthy",
        lambda: (s := app_state(env, "resources")) and s[:2] == ("Synced", "Healthy"),
        timeout=300,
        every=2,
    )


def test_pushed_replica_count_is_rolled_out(env: Env) -> None:
    values, path = dev_values(env)
    values["regionDefaults"]["replicas"] = 3
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    rev = env.git.commit("dev: three nodes per region")
    refresh(env)
    wait_for(
        f"Argo CD to sync revision {rev[:8]}",
        lambda: (s := app_state(env, "resources")) and s[0] == "Synced" and s[2] == rev,
        timeout=120,
        every=2,
    )
    wait_for(
        "3 us-east node pods Ready",
        lambda: (
            env.real.run(
                "wait",
                "-n",
                DEV_NS,
                "--for=condition=Ready",
                "--timeout=5s",
                *[f"pod/us-east-{i}" for i in range(3)],
                check=False,
            ).returncode
            == 0
        ),
        timeout=300,
        every=3,
    )
    region = env.real.json("get", "novacronregion", "us-east", "-n", DEV_NS)
    assert region["spec"]["replicas"] == 3
    sts = env.real.json("get", "statefulset", "us-east", "-n", DEV_NS)
    assert sts["spec"]["replicas"] == 3


def test_broken_region_is_reported_degraded(env: Env) -> None:
    """A region pointed at a NovaCronCluster that does not exist: the operator marks it
    Degraded (ClusterNotFound) and Argo CD, through our Lua check, says so."""
    values, path = dev_values(env)
    values["regions"][0]["spec"]["clusterRef"] = {"name": "no-such-cluster"}
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    rev = env.git.commit("dev: break us-east")
    refresh(env)
    # the message, not only the status: the scale-up of the test before can still show as
    # Degraded (QuorumAtRisk, "1 of 3 nodes ready") until its new nodes are ready
    res = wait_for(
        "Argo CD to report us-east Degraded for its missing cluster",
        lambda: (
            (r := region_resource(env))
            and (h := r.get("health") or {}).get("status") == "Degraded"
            and "no-such-cluster" in h.get("message", "")
            and r
        ),
        timeout=120,
        every=2,
    )
    print(f"\nArgo CD on the broken region (revision {rev[:8]}): {res['health']}")
    app = wait_for(
        "the resources Application Degraded",
        lambda: (s := app_state(env, "resources")) and s[1] == "Degraded" and s,
        timeout=60,
        every=2,
    )
    assert app[2] == rev
