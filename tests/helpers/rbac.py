"""Authorization as the Kubernetes API server decides it, for the API double
(tests/helpers/kube_double.py) and the tests that hold the controller to its ClusterRole.

- RBAC (https://kubernetes.io/docs/reference/access-authn-authz/rbac/): a rule allows a
  request when its verbs, apiGroups and resources ("pods/eviction" names a subresource)
  contain the request's, and its resourceNames, if any, the object's name; a ClusterRole
  bound by a ClusterRoleBinding counts everywhere, a Role (or a ClusterRole) bound by a
  RoleBinding only in the binding's namespace.
- Request verbs (https://kubernetes.io/docs/reference/access-authn-authz/authorization/
  #determine-the-request-verb): GET of one object `get`, of a collection `list`, with
  ?watch `watch`; POST `create`, PUT `update`, PATCH `patch`, DELETE `delete`.
- Node authorizer and NodeRestriction
  (https://kubernetes.io/docs/reference/access-authn-authz/node/): `system:node:<name>`
  may read Nodes and write its own Node only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SA_PREFIX = "system:serviceaccount:"
NODE_PREFIX = "system:node:"
VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Request:
    """The attributes an authorizer sees."""

    user: str
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def what(self) -> str:
        return self.resource + (f"/{self.subresource}" if self.subresource else "")


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]
    names: frozenset[str]
    namespace: str | None  # None: cluster-wide (a ClusterRoleBinding)
    source: str  # which role, for messages

    def allows(self, r: Request) -> bool:
        return ((self.namespace is None or self.namespace == r.namespace)
                and bool({r.verb, "*"} & self.verbs) and bool({r.group, "*"} & self.groups)
                and bool({r.what, "*"} & self.resources)
                and (not self.names or r.name in self.names))


def _rules(role: Mapping[str, Any], namespace: str | None) -> list[Rule]:
    src = f"{role['kind']} {role['metadata']['name']}"
    return [Rule(frozenset(r.get("verbs") or ()), frozenset(r.get("apiGroups") or ()),
                 frozenset(r.get("resources") or ()), frozenset(r.get("resourceNames") or ()),
                 namespace, src) for r in role.get("rules") or []]


def _subject(s: Mapping[str, Any]) -> str:
    if s.get("kind") == "ServiceAccount":
        return f"{SA_PREFIX}{s.get('namespace', '')}:{s['name']}"
    return str(s.get("name"))


def rules_for(user: str, docs: Iterable[Mapping[str, Any]]) -> list[Rule]:
    """Every rule bound to `user` by the RBAC objects in `docs` (manifest documents)."""
    docs = list(docs)
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
             for d in docs if d.get("kind") in ("Role", "ClusterRole")}
    out: list[Rule] = []
    for b in docs:
        if b.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if user not in {_subject(s) for s in b.get("subjects") or []}:
            continue
        ns = b["metadata"].get("namespace", "")
        ref = b["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else "", ref["name"]))
        if role is not None:
            out += _rules(role, None if b["kind"] == "ClusterRoleBinding" else ns)
    return out


def allowed(rules: Iterable[Rule], r: Request) -> bool:
    return any(rule.allows(r) for rule in rules)


def node_allows(r: Request) -> bool:
    """A kubelet credential: read any Node, write only its own (NodeRestriction)."""
    node = r.user.removeprefix(NODE_PREFIX)
    if r.group != "" or r.resource != "nodes":
        return False
    if r.verb in ("get", "list", "watch"):
        return True
    return r.verb in ("patch", "update") and r.name == node


def forbidden_message(r: Request) -> str:
    """The API server's wording, so clients see what a real 403 says."""
    scope = f'in the namespace "{r.namespace}"' if r.namespace else "at the cluster scope"
    return (f'{r.what} "{r.name}" is forbidden: User "{r.user}" cannot {r.verb} resource '
            f'"{r.what}" in API group "{r.group}" {scope}')
