"""The controller's own credential: a token of the ServiceAccount
kube-system/osbuilder-controller from the TokenRequest API, asked with k3s's admin
kubeconfig by a privileged step (`osbuilder-agent controller --fetch-token`, systemd's
ExecStartPre=+) and written as a kubeconfig for the unprivileged controller process.

Why this design:
- The controller process never holds the admin credential. systemd runs it as a dynamic
  user that cannot read /etc/rancher/k3s/k3s.yaml (root, 0600); all it has is this
  kubeconfig, 0600 and owned by that user, on /run (a tmpfs: gone at power-off). Its every
  request is checked against the ClusterRole shipped beside the CRD.
- TokenRequest rather than a Secret of type kubernetes.io/service-account-token: its
  tokens expire and are stored nowhere in the API, whereas a Secret's token lives forever
  in etcd for anyone allowed to read Secrets in kube-system
  (https://kubernetes.io/docs/concepts/configuration/secret/#serviceaccount-token-secrets).
- A day's lifetime; the controller stops itself at 80 % of it (Controller.credential_until)
  or at the first 401, and systemd's restart runs this step again: one restart a day,
  its Lease released first, so another server or its own restart takes over at once.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from osbuilder.node.kubeapi import ApiError, Kube, load_kubeconfig
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import write_atomic

NAMESPACE, NAME = "kube-system", "osbuilder-controller"
TOKEN_PATH = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{NAME}/token"
LIFETIME_S = 86400
RENEW_AT = 0.8  # of the token's lifetime


def request_token(admin: Kube, seconds: int = LIFETIME_S) -> str:
    got = admin.post(TOKEN_PATH, {"apiVersion": "authentication.k8s.io/v1",
                                  "kind": "TokenRequest",
                                  "spec": {"expirationSeconds": seconds}})
    token = (got.get("status") or {}).get("token")
    if not isinstance(token, str) or not token:
        raise OsbError(f"TokenRequest for {NAMESPACE}/{NAME}: the answer has no token")
    return token


def claims(token: str) -> dict[str, Any]:
    """A service account token is a JWT: its middle part, unverified (we only read the
    times of a token the API server just gave us)."""
    try:
        part = token.split(".")[1]
        out = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def renew_at(token: str, now: float) -> float | None:
    """When to fetch a new token (epoch seconds): at RENEW_AT of its lifetime, counted from
    its issue (iat) or, without one, from `now`; None if the token carries no expiry."""
    c = claims(token)
    exp, iat = c.get("exp"), c.get("iat")
    if not isinstance(exp, int | float):
        return None
    start = iat if isinstance(iat, int | float) and iat < exp else min(now, exp)
    return float(start + RENEW_AT * (exp - start))


def cluster_of(admin_kubeconfig: Path) -> dict[str, Any]:
    """The admin kubeconfig's cluster (server and CA), self-contained: the controller's
    user cannot read a CA file under /var/lib/rancher."""
    try:
        cfg = yaml.safe_load(admin_kubeconfig.read_text()) or {}
    except yaml.YAMLError as exc:
        raise OsbError(f"{admin_kubeconfig}: not a kubeconfig: {exc}") from exc
    ctx_name = cfg.get("current-context")
    ctx = next((c.get("context") or {} for c in cfg.get("contexts") or []
                if c.get("name") == ctx_name), {})
    cluster = next((dict(c.get("cluster") or {}) for c in cfg.get("clusters") or []
                    if not ctx or c.get("name") == ctx.get("cluster")), None)
    if not cluster or not cluster.get("server"):
        raise OsbError(f"{admin_kubeconfig}: no cluster server in the current context")
    ca = cluster.pop("certificate-authority", None)
    if ca:
        try:
            cluster["certificate-authority-data"] = base64.b64encode(
                (admin_kubeconfig.parent / ca).read_bytes()).decode()
        except OSError as exc:
            raise OsbError(f"{admin_kubeconfig}: cannot read its CA {ca}: {exc}") from exc
    return cluster


def write_kubeconfig(path: Path, cluster: dict[str, Any], token: str) -> None:
    """0600, atomically (temp file, fsync, rename, fsync of the folder), owned by whoever
    owns the folder: systemd's RuntimeDirectory= belongs to the controller's user."""
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": NAME,
           "clusters": [{"name": "k3s", "cluster": cluster}],
           "users": [{"name": NAME, "user": {"token": token}}],
           "contexts": [{"name": NAME, "context": {"cluster": "k3s", "user": NAME}}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    st = path.parent.stat()
    write_atomic(path, yaml.safe_dump(cfg, sort_keys=False), 0o600, st.st_uid, st.st_gid)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def obtain(admin_kubeconfig: Path, out: Path, wait_s: float = 120.0, retry_s: float = 5.0,
           seconds: int = LIFETIME_S, stop: threading.Event | None = None) -> None:
    """Write `out` with a fresh token. Waits while k3s starts and its deploy controller
    has not yet created the ServiceAccount from the manifests folder; then fails, and
    systemd tries again (Restart=)."""
    stop = stop or threading.Event()
    end = time.monotonic() + wait_s
    why = ""
    while not stop.is_set():
        try:
            admin = Kube(load_kubeconfig(admin_kubeconfig), "osbuilder-controller-credential")
            write_kubeconfig(out, cluster_of(admin_kubeconfig), request_token(admin, seconds))
            print(f"osbuilder-controller: ServiceAccount {NAMESPACE}/{NAME} token written to "
                  f"{out}", flush=True)
            return
        except ApiError as exc:
            if exc.status not in (404, 500, 503):  # 404: the ServiceAccount is not there yet
                raise
            why = str(exc)
        except (OsbError, OSError) as exc:
            why = str(exc)
        if time.monotonic() >= end:
            break
        stop.wait(retry_s)
    raise OsbError(f"no token for ServiceAccount {NAMESPACE}/{NAME} within {wait_s:.0f} s "
                   f"(is osbuilder-controller-rbac.yaml deployed?): {why}")
