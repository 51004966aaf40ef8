"""The one loader: every reproducer of issue 15 as a plain regression test. Each input is
refused (or accepted) with one clear line naming the place, never a traceback, and
quickly; secrets are never shown."""

from __future__ import annotations

import base64
import gzip
import time
from pathlib import Path

import pytest

from osbuilder.shared.nodeconfig.limits import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_SOURCE_BYTES,
    MAX_WRITE_FILE_BYTES,
)
from osbuilder.shared.nodeconfig.loader import Verdict, load_bytes


def verdict(data: bytes | str) -> Verdict:
    t0 = time.monotonic()
    v = load_bytes(data, "config.yaml")
    assert time.monotonic() - t0 < 2, "every input is judged within 2 s"
    return v


def refused(data: bytes | str) -> str:
    v = verdict(data)
    assert v.config is None and v.problems, f"accepted: {data[:80]!r}"
    return "\n".join(map(str, v.problems))


@pytest.mark.parametrize("data, expected", [
    # text that is not UTF-8 names the byte offset
    (b"hostname: n\xfc\n", "config.yaml: not UTF-8 text at byte offset 11"),
    (b"\xff\xfe" + "hostname: n1\n".encode("utf-16-le")[:-1], "not UTF-16 text at byte"),
    # the wrong shape where a mapping or list is expected
    ("k3os: [a]", "k3os: expected object, got list"),
    ("nodes: 5", "nodes: expected array, got int"),
    ("nodes: [{match: {mac: '52:54:00:12:34:56'}, k3os: {labels: [a]}}]",
     "nodes[0].k3os.labels: expected object"),
    # a date stays text, so it meets the schema's own check
    ("k3os: {flannel_backend: 2024-01-01}", "k3os.flannel_backend: \"2024-01-01\" is not one"),
    ("hostname: {2024-01-01: x}", "hostname: expected string, got dict"),
    ("k3os: {sysctl: {~: 1}}", "config.yaml: k3os.sysctl: a key must be text, found null"),
    ("k3os: {labels: {1: a, b: c}}", "k3os.labels: a key must be text, found int 1"),
    ("k3os: {labels: !!set {a, b}}", "k3os.labels: a YAML set is not a config value"),
    ("hostname: !!timestamp 2024-01-01", "hostname: a YAML timestamp is not a config value"),
    ("hostname: !!binary aGk=", "hostname: a YAML !!binary value is only allowed as"),
    # write_files contents that cannot be decoded
    ("write_files: [{path: /x, content: abc, encoding: gz}]",
     "write_files[0].encoding: gz: gzip data cannot be YAML text"),
    ("write_files: [{path: /x, content: abc, encoding: gzip}]",
     "write_files[0].encoding: gzip: gzip data cannot be YAML text"),
    ("write_files: [{path: /x, content: '@@not base64@@', encoding: b64}]",
     "write_files[0].content: not valid base64"),
    ("write_files: [{path: /x, content: aGVsbG8=, encoding: gz+b64}]",
     "write_files[0].content: not gzip data"),
    # commands that are not commands
    ("init_cmd: [[/etc/passwd, [x]]]", "init_cmd[0]"),
    ('init_cmd: ["echo \\0 x"]', "init_cmd[0]: a command cannot contain a NUL"),
    ("boot_cmd: [[]]", "boot_cmd[0]"),
    # nesting and expansion limits
    ("[" * 500, f"nested deeper than {MAX_DEPTH} levels"),
    ("a: " + "{b: " * 40 + "1" + "}" * 40, f"nested deeper than {MAX_DEPTH} levels"),
    ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
     + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n"
               for i in range(8)), f"expands to more than {MAX_NODES} values"),
    ("a: &a [*a]", "nested deeper than"),
    ("x: " + "9" * 5000, "an integer of 5000 digits"),
    ("x: " + "y" * (MAX_SOURCE_BYTES + 1), f"larger than {MAX_SOURCE_BYTES} bytes: refused"),
    ("{[a]: b}", "config.yaml: not"),
    ("a: b: c", "not valid YAML (line 1, column 5)"),
    ("\x00", "not valid YAML"),
])
def test_reproducers_are_refused_with_one_clear_line(data: bytes | str, expected: str) -> None:
    assert expected in refused(data)


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (MAX_WRITE_FILE_BYTES * 4))
    text = (f"write_files: [{{path: /x, encoding: gz+b64, "
            f"content: {base64.b64encode(bomb).decode()}}}]")
    assert f"inflates to more than {MAX_WRITE_FILE_BYTES} bytes" in refused(text)


def test_binary_gzip_content_as_cloud_init_writes_it() -> None:
    """cloud-init's form: gzip data as !!binary with encoding gzip."""
    data = base64.b64encode(gzip.compress(b"hello\n")).decode()
    v = verdict(f"write_files:\n- path: /etc/x\n  encoding: gzip\n  content: !!binary |\n"
                f"    {data}\n")
    assert v.config is not None, v.problems
    assert v.config.write_files[0].content == b"hello\n"


def test_utf8_bom_and_utf16_with_bom_are_text() -> None:
    assert verdict(b"\xef\xbb\xbfhostname: n1\n").config is not None
    v = verdict("hostname: n2\n".encode("utf-16"))
    assert v.config is not None and v.config.hostname == "n2"


def test_secret_values_are_never_shown() -> None:
    for text in ("k3os: {password: 12345678}", "k3os: {token: [s3cr3t-t0ken]}",
                 "k3os: {wifi: [{name: home, passphrase: 1234567890}]}",
                 "k3os: {environment: {HTTP_PROXY: {u: 'http://u:pw@proxy'}}}",
                 "k3os: {datastore_endpoint: 77777777}"):
        shown = refused(text)
        for secret in ("12345678", "s3cr3t", "1234567890", "u:pw", "77777777"):
            assert secret not in shown, shown
        assert "(value hidden)" in shown


def test_a_secret_inside_a_misplaced_block_is_not_shown() -> None:
    """Found by the 20,000-example fuzz run: the type error quoted the whole block."""
    for text in ("nodes: {passphrase: S3KR1T}", "k3os: [{token: S3KR1T}]",
                 "hostname: {k3os: {password: S3KR1T}}"):
        shown = refused(text)
        assert "S3KR1T" not in shown and "(hidden)" in shown, shown


def test_wifi_passphrase_checked_on_the_workstation_too() -> None:
    """The applier's own check runs in the loader: the same verdict as on the node."""
    problems = refused("k3os: {wifi: [{name: home, passphrase: short}]}")
    assert "k3os.wifi[0].passphrase: expected 8..63 printable ASCII characters" in problems


def test_unknown_owner_is_refused_with_the_image_accounts() -> None:
    assert "write_files[0].owner: owner 'alice': no user 'alice'" in refused(
        "write_files: [{path: /x, owner: alice}]")
    assert verdict("write_files: [{path: /x, owner: 'osb:sudo'}]").config is not None


def test_plain_http_only_where_the_entry_allows_it() -> None:
    assert "k3os.config_url: plain http is refused" in refused(
        "k3os: {config_url: 'http://10.0.0.1/c.yaml'}")
    assert verdict("k3os: {config_url: {url: 'http://10.0.0.1/c.yaml', allow_http: true}}"
                   ).config is not None
    assert "k3os.airgap_images[0]" in refused("k3os: {airgap_images: ['https://x/i.tar']}")
    sha = "0" * 64
    assert verdict(f"k3os: {{airgap_images: [{{url: 'https://x/i.tar', sha256: '{sha}'}}]}}"
                   ).config is not None


def test_every_problem_at_once() -> None:
    problems = refused("hostname: 'bad name'\nk3os: {labels: [a], taints: [x]}\n")
    assert "hostname" in problems and "k3os.labels" in problems and "k3os.taints" in problems


def test_a_good_file(tmp_path: Path) -> None:
    v = verdict("hostname: n1\nk3os: {server_url: 'https://s:6443', token: t}\n")
    assert v.ok and v.config is not None and v.config.k3s.role == "agent"
