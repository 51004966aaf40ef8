"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does:
take the Lease when it is free or expired, renew it well before it expires, and stop acting
the moment a renewal is overdue. Writes carry the resourceVersion read, so of two
controllers racing for an expired Lease one gets 409 Conflict and stays a follower."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from osbuilder.node.fleet.api_objects import parse_time
from osbuilder.node.kubeapi import ApiError, Kube, Obj
from osbuilder.shared.errors import OsbError

NAMESPACE, NAME = "kube-system", "osbuilder-controller"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"


def micro_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    def __init__(self, kube: Kube, identity: str, duration_s: int = 15,
                 clock: Callable[[], float] = time.time) -> None:
        self.kube, self.identity, self.duration_s, self.clock = kube, identity, duration_s, clock
        self.renew_every = duration_s / 3
        self._valid_until = 0.0  # by our clock: we act only before this
        self._last_try = -1e18

    def held(self) -> bool:
        return self.clock() < self._valid_until

    def due(self) -> bool:
        return self.clock() - self._last_try >= self.renew_every

    def _spec(self, now: float, acquire: float, transitions: int) -> Obj:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration_s,
                "acquireTime": micro_time(acquire), "renewTime": micro_time(now),
                "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True while we hold the Lease."""
        now = self._last_try = self.clock()
        try:
            cur = self.kube.get(f"{PATH}/{NAME}")
        except ApiError as exc:
            if exc.status != 404:
                return self._failed()
            try:
                self.kube.post(PATH, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                      "metadata": {"name": NAME, "namespace": NAMESPACE},
                                      "spec": self._spec(now, now, 0)})
            except (ApiError, OsbError):
                return self._failed()
            return self._won(now)
        except OsbError:
            return self._failed()
        spec = cur.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        renewed = parse_time(spec.get("renewTime"), 0.0)
        expired = now > renewed + float(spec.get("leaseDurationSeconds") or self.duration_s)
        if holder and holder != self.identity and not expired:
            self._valid_until = 0.0
            return False
        mine = holder == self.identity
        acquire = parse_time(spec.get("acquireTime"), now) if mine else now
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        body = dict(cur, spec=self._spec(now, acquire, transitions))
        try:
            self.kube.put(f"{PATH}/{NAME}", body)
        except (ApiError, OsbError):
            return self._failed()
        return self._won(now)

    def _won(self, now: float) -> bool:
        # a margin under the duration: another controller may take over at renew + duration
        self._valid_until = now + self.duration_s * 2 / 3
        return True

    def _failed(self) -> bool:
        return self.held()  # keep acting only while the last renewal is still good

    def release(self) -> None:
        """On a clean stop: let another server take over at once instead of after expiry."""
        if not self.held():
            return
        try:
            cur = self.kube.get(f"{PATH}/{NAME}")
            if (cur.get("spec") or {}).get("holderIdentity") == self.identity:
                cur["spec"]["holderIdentity"] = ""
                self.kube.put(f"{PATH}/{NAME}", cur)
        except OsbError:
            pass
        self._valid_until = 0.0
