"""Is this node Ready? Asked of the Kubernetes API with the kubelet's own credential."""

from __future__ import annotations

from pathlib import Path

from osbuilder.node.kubeapi import Kube, load_kubeconfig, name_path
from osbuilder.shared.errors import OsbError

KUBELET_KUBECONFIG = Path("/var/lib/rancher/k3s/agent/kubelet.kubeconfig")


def node_ready(node: str, kubeconfig: Path = KUBELET_KUBECONFIG, timeout: float = 10.0
               ) -> tuple[bool, str]:
    """(ready, why) from the Node's Ready condition."""
    if not kubeconfig.is_file():
        return False, f"no kubelet credential yet ({kubeconfig})"
    try:
        obj = Kube(load_kubeconfig(kubeconfig), "osbuilder-health-gate", timeout).get(
            name_path("/api/v1/nodes", node))
    except OsbError as exc:
        return False, str(exc)
    for cond in obj.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            ok = cond.get("status") == "True"
            return ok, f"node {node} Ready={cond.get('status')}" + (
                "" if ok else f" ({cond.get('reason', '')}: {cond.get('message', '')})")
    return False, f"node {node} has no Ready condition yet"
