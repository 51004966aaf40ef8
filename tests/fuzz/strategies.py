"""Hostile inputs for the config and board loaders (hypothesis strategies): documents shaped
by a JSON Schema with wrong types mixed in, mutations of real files, binary junk, other text
encodings, deep nesting, YAML aliases and tags, long strings. Secrets carry MARKER, so a
test can tell when one is shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from osbuilder.shared.schema import load_schema

MARKER = "S3KR1T"
ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests/data/k3os-corpus").glob("*.yaml"))
BOARDS = sorted((ROOT / "osbuilder/host/boards").glob("*.yaml"))
SECRET_KEYS = ("password", "token", "passphrase", "datastore_endpoint")
TRICKY = ["2024-01-01", "~", "null", "yes", "off", "0644", "0o644", "1e999", "-.inf", ".nan",
          "http://10.0.0.1/x", "https://10.0.0.1/x", "$6$salt$hash", "--flag=x", "server",
          "a\nb", "\x00", "\u2028", "en*", "52:54:00:12:34:56", "../../etc/passwd", "/etc/x",
          "root:root", "nobody:nogroup", "K10" + "a" * 60, "😀", ""]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(TRICKY),
)
plain = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        merged = dict(schema["$defs"][ref[8:]])
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        merged.setdefault("properties", {}).update(node.get("properties", {}))
        return merged
    return node


@st.composite
def shaped(draw: st.DrawFn, schema: dict[str, Any], node: dict[str, Any],
           depth: int = 0) -> Any:
    """A value for `node`: mostly what it asks for, sometimes anything at all."""
    if depth > 6 or draw(st.integers(0, 9)) == 0:
        return draw(plain)
    node = _resolve(schema, node)
    for key in ("oneOf", "anyOf"):
        if key in node:
            return draw(shaped(schema, draw(st.sampled_from(node[key])), depth + 1))
    if "enum" in node:
        return draw(st.sampled_from(node["enum"]))
    kind = node.get("type")
    kind = draw(st.sampled_from(kind)) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in node:
        props = node.get("properties", {})
        names = draw(st.lists(st.sampled_from(sorted(props)), unique=True,
                              max_size=min(len(props), 8))) if props else []
        out = {n: draw(shaped(schema, props[n], depth + 1)) for n in names}
        if isinstance(node.get("additionalProperties"), dict) or draw(st.integers(0, 7)) == 0:
            extra = node.get("additionalProperties")
            for _ in range(draw(st.integers(0, 3))):
                key = draw(st.one_of(st.text(max_size=10), st.sampled_from(TRICKY)))
                out[key] = draw(shaped(schema, extra, depth + 1)) if isinstance(extra, dict) \
                    else draw(plain)
        return out
    if kind == "array":
        items = node.get("items", {})
        return [draw(shaped(schema, items, depth + 1)) for _ in range(draw(st.integers(0, 3)))]
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "integer":
        return draw(st.integers(-10, 5000))
    if kind == "string":
        return draw(st.one_of(st.sampled_from(TRICKY), st.text(max_size=40)))
    return draw(plain)


def with_secrets(doc: Any) -> Any:
    """Every secret-named key in the document gets a value holding MARKER."""
    if isinstance(doc, dict):
        return {k: (f"{MARKER}{v!s}"[:40] if k in SECRET_KEYS else with_secrets(v))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [with_secrets(v) for v in doc]
    return doc


def dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return json.dumps(doc, default=str)


@st.composite
def mutated(draw: st.DrawFn, files: list[Path]) -> bytes:
    data = bytearray(draw(st.sampled_from(files)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 40))]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from([b": ", b"\n  - ", b"{", b"[", b"&a ", b"*a",
                                                b"!!binary ", b"!!set ", b"~", b"\t", b"\xff",
                                                b"0644", b"2024-01-01", b"<<: *a\n"]))
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 200))]
    return bytes(data)


def crafted() -> st.SearchStrategy[bytes]:
    bombs = [("a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]\n"
        for i in range(n))).encode() for n in range(1, 9)]
    return st.one_of(
        st.sampled_from(bombs),
        st.integers(1, 2000).map(lambda n: ("[" * n).encode()),
        st.integers(1, 200).map(lambda n: ("a: " + "{b: " * n + "1" + "}" * n).encode()),
        st.integers(1, 3).map(lambda n: ("hostname: " + "x" * (n << 20)).encode()),
        st.sampled_from([b"a: &a [*a]", b"x: " + b"9" * 5000, b"{[a]: b}", b"? [a]\n: b",
                         b"a: !!python/object:os.system x", b"a: !!binary ====",
                         b"k3os: {labels: !!omap [a: b]}", b"%YAML 1.1\n---\na: 1\n...\n---\nb",
                         b"\xef\xbb\xbf\xef\xbb\xbfa: 1", b"a: b\x85c", b"a: 'b\x00c'"]),
    )


def encodings(text_docs: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return st.tuples(text_docs, st.sampled_from(
        ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"])).map(
        lambda t: t[0].encode(t[1], errors="replace"))


def config_bytes() -> st.SearchStrategy[bytes]:
    schema = load_schema("config.schema.json")
    docs = shaped(schema, schema).map(with_secrets).map(dump)
    return st.one_of(
        docs.map(str.encode), docs.map(str.encode), encodings(docs),
        mutated(CORPUS), st.binary(max_size=300), crafted(),
    )


def board_bytes() -> st.SearchStrategy[bytes]:
    schema = load_schema("board.schema.json")
    docs = shaped(schema, schema).map(dump)
    return st.one_of(docs.map(str.encode), docs.map(str.encode), encodings(docs),
                     mutated(BOARDS), st.binary(max_size=300), crafted())
