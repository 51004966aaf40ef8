"""Cordon and drain one node, one step at a time, the way `kubectl drain` does: through the
Eviction API, so PodDisruptionBudgets are respected (an eviction they forbid answers 429
and is tried again on the next step; the rollout planner owns the timeout)."""

from __future__ import annotations

from dataclasses import dataclass

from osbuilder.node.fleet import protocol as p
from osbuilder.node.fleet.crd import Drain
from osbuilder.node.kubeapi import ApiError, Kube, Obj, name_path

MIRROR = "kubernetes.io/config.mirror"


@dataclass(frozen=True)
class Step:
    drained: bool
    left: tuple[str, ...]  # namespace/name of pods still on the node
    note: str  # why they are still there
    node: Obj | None  # the node as the cordon left it (None: no write was needed)


def cordon(kube: Kube, node: Obj) -> Obj | None:
    """Mark the node unschedulable, and remember that we did (an admin's cordon stays)."""
    if node.get("spec", {}).get("unschedulable"):
        return None
    return kube.patch(name_path(p.NODES, node["metadata"]["name"]),
                      {"spec": {"unschedulable": True},
                       "metadata": {"annotations": {p.CORDONED: "true"}}})


def uncordon(kube: Kube, name: str) -> Obj:
    return kube.patch(name_path(p.NODES, name), {"spec": {"unschedulable": None},
                                                 "metadata": {"annotations": {p.CORDONED: None}}})


def _kind(pod: Obj) -> str:
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    ctrl = [r for r in refs if r.get("controller")]
    return str(ctrl[0].get("kind")) if ctrl else ""


def _pid(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace', 'default')}/{pod['metadata']['name']}"


def blocker(pod: Obj, opts: Drain) -> str:
    """Why drain options forbid evicting this pod at all ('' when it may be evicted)."""
    vols = pod.get("spec", {}).get("volumes") or []
    if not opts.delete_emptydir_data and any("emptyDir" in v for v in vols):
        return f"pod {_pid(pod)} has emptyDir data (set drain.deleteEmptyDirData: true)"
    if not _kind(pod) and not opts.force:
        return (f"pod {_pid(pod)} is not managed by a controller and would be lost "
                "(set drain.force: true)")
    return ""


def step(kube: Kube, node: Obj, opts: Drain) -> Step:
    name = node["metadata"]["name"]
    cordoned = cordon(kube, node)
    pods = kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={name}").get("items", [])
    left, notes = [], []
    for pod in pods:
        meta = pod["metadata"]
        if MIRROR in (meta.get("annotations") or {}):
            continue  # static pods: the kubelet's, not the API's
        if _kind(pod) == "DaemonSet" and opts.ignore_daemonsets:
            continue
        left.append(_pid(pod))
        if meta.get("deletionTimestamp"):
            notes.append(f"pod {_pid(pod)} terminating")
            continue
        why = blocker(pod, opts) or (f"DaemonSet pod {_pid(pod)} (set drain.ignoreDaemonSets:"
                                     " true)" if _kind(pod) == "DaemonSet" else "")
        if why:
            notes.append(why)
            continue
        ns = meta.get("namespace", "default")
        try:
            kube.post(f"/api/v1/namespaces/{ns}/pods/{meta['name']}/eviction",
                      {"apiVersion": "policy/v1", "kind": "Eviction",
                       "metadata": {"name": meta["name"], "namespace": ns}})
        except ApiError as exc:
            if exc.status == 404:
                left.pop()
                continue
            if exc.status != 429:
                raise
            notes.append(f"eviction of {_pid(pod)} refused: {exc.message}")
    return Step(not left, tuple(left), "; ".join(notes), cordoned)
