"""JSON Schema loading, validation with readable errors, and schema defaults.

Schemas live beside this module (schemas/), in the checkout, an installed wheel and the
image alike; defaults are declared there once and filled in here, so code never repeats them.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from osbuilder.shared.errors import OsbError
from osbuilder.shared.package_data import read_beside


def schema_text(name: str) -> str:
    """A schema file as shipped (`osbuilder schema`), through the module's loader: on a
    node this module is imported from the agent's zip."""
    try:
        return read_beside(__spec__, f"schemas/{name}").decode()
    except OSError:
        raise OsbError(f"schema {name} not found beside {__name__} (a broken installation)"
                       ) from None


@cache
def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text(name))
    return schema


def key_path(parts: list[str | int] | Any) -> str:
    """Render a JSON path like k3os.labels[0] (what users see in their YAML)."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


SECRET = "x-osb-secret"  # a schema keyword of ours: this value is never shown


@cache
def secret_keys(schema_name: str) -> frozenset[str]:
    """Property names the schema marks secret; a value at or under one is never shown."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and sub.get(SECRET):
                    found.add(name)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(load_schema(schema_name))
    return frozenset(found)


def _redacted(value: Any, secrets: frozenset[str]) -> Any:
    """The value with whatever sits under a secret key replaced, at any depth: a
    misplaced block (``nodes: {passphrase: ...}``) must not show its secret either."""
    if isinstance(value, dict):
        return {k: "(hidden)" if k in secrets else _redacted(v, secrets)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, secrets) for v in value]
    return value


def _shown(value: Any, secret: bool, secrets: frozenset[str]) -> str:
    if secret:
        return "(value hidden)"
    return json.dumps(_redacted(value, secrets), default=str)[:60]


def _describe(err: Any, secrets: frozenset[str], root: dict[str, Any]) -> tuple[str, str]:
    path = list(err.absolute_path)  # err: a jsonschema.ValidationError
    secret = any(p in secrets for p in path if isinstance(p, str))
    schema: dict[str, Any] = err.schema if isinstance(err.schema, dict) else {}
    instance: Any = err.instance
    if err.validator in ("additionalProperties", "unevaluatedProperties"):
        props = set(schema.get("properties", {}))
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):  # properties that come with the $ref count as known
            props |= set(root.get("$defs", {}).get(ref[8:], {})
                         .get("properties", {}))
        extra = sorted(k for k in instance if k not in props) if isinstance(instance, dict) \
            else []
        where = key_path([*path, extra[0]]) if extra else key_path(path)
        return where, f"unknown key (known keys here: {', '.join(sorted(props))})"
    if err.validator == "type":
        return key_path(path), (
            f"expected {err.validator_value}, got {type(err.instance).__name__} "
            f"{_shown(err.instance, secret, secrets)}"
        )
    if err.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in err.validator_value)
        return key_path(path), f"{_shown(err.instance, secret, secrets)} is not one of {allowed}"
    if err.validator == "required":
        return key_path(path), err.message
    # jsonschema's own messages quote the value: hide them when it holds a secret anywhere
    if secret or _redacted(err.instance, secrets) != err.instance:
        return key_path(path), f"not valid here ({err.validator} {err.validator_value!r})"
    return key_path(path), err.message[:200]


def validation_errors(instance: Any, schema_name: str) -> list[tuple[str, str]]:
    """All problems as (key path, message), most specific first, in document order."""
    import jsonschema  # costly to import; the node agent skips it for an unchanged config

    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    return [_describe(e, secret_keys(schema_name), schema) for e in errors]


def validate(instance: Any, schema_name: str, source: str) -> None:
    """Raise OsbError naming the file and every bad key."""
    errors = validation_errors(instance, schema_name)
    if errors:
        lines = [f"  {source}: at {where}: {msg}" for where, msg in errors]
        raise OsbError(f"invalid {source}:\n" + "\n".join(lines))


def with_defaults(instance: Any, schema: dict[str, Any]) -> Any:
    """Return a copy of a validated instance with every schema `default` filled in."""
    if not isinstance(instance, dict) or "properties" not in schema:
        return copy.deepcopy(instance)
    out = copy.deepcopy(instance)
    for key, sub in schema["properties"].items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = with_defaults(out[key], sub)
    return out
