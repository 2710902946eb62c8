"""Leader election on a coordination.k8s.io Lease: of N operator replicas only one acts.

kopf's peering is presence, not election (equal priorities freeze every replica), so we
hold a Lease the client-go way: acquire when absent or expired, renew well inside its
duration, and stop acting the moment a renewal fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from novacron_core.runtime.aio import wait_set
from novacron_operator.kube import ApiError, Kube

log = logging.getLogger("novacron.leader")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(s: str) -> dt.datetime:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


class LeaderElector:
    def __init__(
        self, kube: Kube, namespace: str, name: str, identity: str, duration: int = 15
    ) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.identity, self.duration = identity, duration
        self.is_leader = False
        self.on_elected: Callable[[], Awaitable[None]] | None = None

    async def try_acquire(self) -> bool:
        lease = await self.kube.get("Lease", self.namespace, self.name)
        now = _now()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": _fmt(now),
        }
        try:
            if lease is None:
                spec["acquireTime"] = _fmt(now)
                await self.kube.create(
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": spec,
                    }
                )
                return True
            cur = lease.get("spec") or {}
            holder = cur.get("holderIdentity")
            renewed = cur.get("renewTime")
            expired = (
                not holder
                or renewed is None
                or _parse(renewed) + dt.timedelta(seconds=cur.get("leaseDurationSeconds", 15)) < now
            )
            if holder != self.identity and not expired:
                return False
            if holder != self.identity:
                spec["acquireTime"] = _fmt(now)
                spec["leaseTransitions"] = cur.get("leaseTransitions", 0) + 1
            else:
                spec["acquireTime"] = cur.get("acquireTime", _fmt(now))
                spec["leaseTransitions"] = cur.get("leaseTransitions", 0)
            lease["spec"] = spec  # PUT carries resourceVersion: a racing writer gets 409
            await self.kube.replace(lease)
            return True
        except ApiError as e:
            if e.status == 409:
                return False
            raise

    async def run(self, stop: asyncio.Event) -> None:
        period = self.duration / 3
        while not stop.is_set():
            try:
                got = await self.try_acquire()
            except Exception as e:  # API hiccup: we cannot prove we still lead
                log.warning("lease renewal failed: %s", e)
                got = False
            if got and not self.is_leader:
                log.info("became leader", extra={"identity": self.identity})
                self.is_leader = True
                try:
                    if self.on_elected is not None:
                        await self.on_elected()
                except Exception as e:  # e.g. 429 while CRD storage initialises: retry
                    log.warning("startup after election failed, retrying: %s", e)
                    self.is_leader = False
            elif not got and self.is_leader:
                log.warning("lost leadership", extra={"identity": self.identity})
                self.is_leader = False
            await wait_set(stop, period)
        await self.release()

    async def release(self) -> None:
        """Hand the lease back on clean shutdown so the standby takes over at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = await self.kube.get("Lease", self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                await self.kube.replace(lease)
        except Exception as e:
            log.warning("lease release failed: %s", e)
