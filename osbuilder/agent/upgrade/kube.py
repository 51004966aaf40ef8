"""Is this node Ready? Asked of the Kubernetes API with the kubelet's own credential."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

KUBELET_KUBECONFIG = Path("/var/lib/rancher/k3s/agent/kubelet.kubeconfig")


def _first(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return dict(items[0][key]) if items else {}


def node_ready(node: str, kubeconfig: Path = KUBELET_KUBECONFIG, timeout: float = 10.0
               ) -> tuple[bool, str]:
    """(ready, why) from the Node's Ready condition."""
    import yaml

    try:
        cfg = yaml.safe_load(kubeconfig.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return False, f"no kubelet credential yet ({kubeconfig}: {exc.__class__.__name__})"
    cluster = _first(cfg.get("clusters") or [], "cluster")
    user = _first(cfg.get("users") or [], "user")
    base = kubeconfig.parent
    ctx = ssl.create_default_context(cafile=str(base / cluster["certificate-authority"]))
    ctx.load_cert_chain(str(base / user["client-certificate"]), str(base / user["client-key"]))
    url = f"{cluster['server'].rstrip('/')}/api/v1/nodes/{node}"
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            obj = json.load(resp)
    except (OSError, ValueError) as exc:
        return False, f"API {url}: {exc}"
    for cond in obj.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            ok = cond.get("status") == "True"
            return ok, f"node {node} Ready={cond.get('status')}" + (
                "" if ok else f" ({cond.get('reason', '')}: {cond.get('message', '')})")
    return False, f"node {node} has no Ready condition yet"
