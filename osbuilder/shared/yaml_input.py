"""YAML bytes (node config, board files) -> plain data (dicts, lists, text, numbers,
booleans, null), or one clear error naming the source, the place and the limit. Never a
traceback, whatever the bytes.

- Text: UTF-8 (a UTF-8 byte-order mark is dropped); UTF-16 and UTF-32 only with a
  byte-order mark, as the YAML spec allows. Anything else names the byte offset.
- Size, nesting depth and alias expansion are capped (limits.py) before any value is
  built, so a "billion laughs" file or 500 nested brackets cost nothing.
- Dates stay text (`2024-01-01` is a string, as in k3OS's Go YAML decoding into string
  fields); explicit `!!timestamp`, `!!set`, `!!omap`, `!!pairs` are refused where they
  stand, `!!binary` is bytes (write_files content only, checked by the model).
- Keys must be text: a null, number or boolean key is an error naming its place.
"""

from __future__ import annotations

import codecs
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from osbuilder.shared.errors import ConfigError
from osbuilder.shared.nodeconfig.limits import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_NODES,
    MAX_SOURCE_BYTES,
)

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))
REFUSED_TAGS = {"tag:yaml.org,2002:timestamp": "a YAML timestamp",
                "tag:yaml.org,2002:set": "a YAML set", "tag:yaml.org,2002:omap": "a YAML omap",
                "tag:yaml.org,2002:pairs": "a YAML pairs list"}


class _DepthLimit(Exception):
    pass


class _Loader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader (its composer can be bounded; libyaml's cannot),
    without implicit timestamps, composing at most MAX_DEPTH levels deep."""

    depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # PyYAML's scanner keeps a possible key per open bracket and checks them all at
        # every token: stop before 1,000 brackets cost seconds
        if self.flow_level >= MAX_DEPTH:
            raise _DepthLimit
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _DepthLimit
            node = super().compose_node(parent, index)
            assert node is not None  # None only for an empty document, never in one
            return node
        finally:
            self.depth -= 1


# Without the implicit timestamp resolver dates are plain strings. The resolver table is
# copied, so yaml.safe_load elsewhere keeps PyYAML's defaults.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def decode(data: bytes, source: str) -> str:
    if len(data) > MAX_SOURCE_BYTES:
        raise ConfigError(source, f"larger than {MAX_SOURCE_BYTES} bytes: refused (a config "
                                  "source of this size is no config)")
    encoding = next((enc for bom, enc in BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        what = "UTF-8" if encoding == "utf-8" else encoding.upper().removesuffix("-SIG")
        raise ConfigError(source, f"not {what} text at byte offset {exc.start} "
                                  "(save the file as UTF-8)") from None


def _expanded_size(root: Node, source: str) -> int:
    """Values the document holds once aliases are expanded; refuses early past MAX_NODES
    and aliases that nest deeper than MAX_DEPTH (or contain themselves)."""
    sizes: dict[int, int] = {}
    total = 0

    def walk(node: Node, depth: int) -> int:
        nonlocal total
        if depth > MAX_DEPTH:
            raise ConfigError(source, f"nested deeper than {MAX_DEPTH} levels (aliases "
                                      "followed): flatten it")
        if id(node) in sizes:
            total += sizes[id(node)]
        else:
            before = total
            total += 1
            if isinstance(node, SequenceNode):
                for child in node.value:
                    walk(child, depth + 1)
            elif isinstance(node, MappingNode):
                for key, value in node.value:
                    walk(key, depth + 1)
                    walk(value, depth + 1)
            sizes[id(node)] = total - before
        if total > MAX_NODES:
            raise ConfigError(source, f"expands to more than {MAX_NODES} values (YAML "
                                      "aliases repeat what they point at): refused")
        return total

    return walk(root, 1)


def _check_node(node: Node, path: str, source: str) -> None:
    """Tags and numbers PyYAML would turn into something that is not plain data."""
    seen: set[int] = set()
    stack: list[tuple[Node, str]] = [(node, path)]
    while stack:
        n, where = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.tag in REFUSED_TAGS:
            raise ConfigError(f"{source}: {where or '(top level)'}",
                              f"{REFUSED_TAGS[n.tag]} is not a config value (quote it)")
        if isinstance(n, ScalarNode) and n.tag == "tag:yaml.org,2002:int" and \
                len(n.value) > MAX_INT_DIGITS:
            raise ConfigError(f"{source}: {where or '(top level)'}",
                              f"an integer of {len(n.value)} digits (quote it if it is text)")
        if isinstance(n, SequenceNode):
            stack += [(c, f"{where}[{i}]") for i, c in enumerate(n.value)]
        elif isinstance(n, MappingNode):
            for k, v in n.value:
                name = k.value if isinstance(k, ScalarNode) else "?"
                stack += [(k, where), (v, f"{where}.{name}" if where else str(name))]


def _check_keys(value: Any, path: str, source: str) -> None:
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, where = stack.pop()
        if isinstance(v, dict):
            for k, child in v.items():
                if not isinstance(k, str):
                    shown = "null" if k is None else f"{type(k).__name__} {k!r}"
                    raise ConfigError(f"{source}: {where or '(top level)'}",
                                      f"a key must be text, found {shown[:40]} (quote it)")
                stack.append((child, f"{where}.{k}" if where else k))
        elif isinstance(v, list):
            stack += [(c, f"{where}[{i}]") for i, c in enumerate(v)]


def load_data(data: bytes | str, source: str) -> Any:
    """The document's value (None for an empty one)."""
    text = decode(data.encode() if isinstance(data, str) else data, source)
    loader = None
    try:
        loader = _Loader(text)  # its reader refuses control characters right here
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, source)
        _check_node(node, "", source)
        value = loader.construct_document(node)
    except _DepthLimit:
        raise ConfigError(source, f"nested deeper than {MAX_DEPTH} levels: flatten it"
                          ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, f"not valid YAML{where}: {problem}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        # PyYAML's constructors: an unhashable key ({[a]: b}), a malformed !!binary, ...
        raise ConfigError(source, f"not a config YAML can express: {exc}"[:200]) from None
    finally:
        if loader is not None:
            loader.dispose()
    _check_keys(value, "", source)
    return value


def load_mapping(data: bytes | str, source: str) -> dict[str, Any]:
    """A config document: a mapping of keys at the top level (empty: {})."""
    value = load_data(data, source)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(source, "expected a mapping of keys at the top level, got "
                                  f"{type(value).__name__}")
    return value
