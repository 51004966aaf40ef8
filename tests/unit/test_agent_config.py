"""Node config: k3OS files validate unchanged; each kind of mistake names its key."""

from __future__ import annotations

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.model import parse
from osbuilder.shared.nodeconfig.source_text import parse_source

# The example config from k3OS's README, unchanged.
K3OS_SAMPLE = """
ssh_authorized_keys:
- ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC2TBZGjE+J8ag11dzkFT58J3XPONrDVmalCNrKxsfADfyy0eqdZrG8hcAxAR/5zuj90Gin2uBR4Sw6Cn4VHsPZcFpXyQCjK1QDADj+WcuhpXOIOY3AB0LZBly9NI0ll+8lo3QtEaoyRLtrMBhQ6Mooy2M3MTG4JNwU9o3yInuqZWf9PvtW6KxMl+ygg1xZkljhemGZ9k0wSrjqif+8usNbzVlCOVQmZwZA+BZxbdcLNwkg7zWJSXzDIXyqM6iWPGXQDEbWLq3+HR1qKucTCSxjbqoe0FD5xcW7NHIME5XKX84yH92n6yn+rlSsyUfU+2Wq+4uQuR3MF5/Aa6wrWnn
- github:ibuildthecloud
write_files:
- encoding: ""
  content: |-
    #!/bin/bash
    echo hello, local service start
  owner: root
  path: /etc/local.d/example.start
  permissions: '0755'
hostname: myhost
init_cmd:
- "echo hello, init command"
boot_cmd:
- "echo hello, boot command"
run_cmd:
- "echo hello, run command"
k3os:
  data_sources:
  - aws
  - cdrom
  modules:
  - kvm
  - nvme
  sysctl:
    kernel.printk: "4 4 1 7"
    kernel.kptr_restrict: "1"
  dns_nameservers:
  - 8.8.8.8
  - 1.1.1.1
  ntp_servers:
  - 0.us.pool.ntp.org
  - 1.us.pool.ntp.org
  wifi:
  - name: home
    passphrase: mypassword
  - name: nothome
    passphrase: somethingelse
  password: rancher
  server_url: https://someserver:6443
  token: TOKEN_VALUE
  labels:
    region: us-west-1
    somekey: somevalue
  k3s_args:
  - server
  - "--cluster-init"
  environment:
    http_proxy: http://myserver
    https_proxy: http://myserver
  taints:
  - key1=value1:NoSchedule
  - key1=value1:NoExecute
"""


def test_k3os_sample_parses_unchanged() -> None:
    cfg = parse(parse_source(K3OS_SAMPLE, "k3os.yaml").data)
    assert cfg.hostname == "myhost"
    assert cfg.ssh_authorized_keys[1] == "github:ibuildthecloud"
    assert cfg.write_files[0].permissions == 0o755
    assert cfg.write_files[0].content.startswith(b"#!/bin/bash")
    assert cfg.k3s.role == "server" and cfg.k3s.args == ("--cluster-init",)
    assert cfg.k3s.server_url == "https://someserver:6443"
    assert ("region", "us-west-1") in cfg.k3s.labels
    assert cfg.sysctl == (("kernel.kptr_restrict", "1"), ("kernel.printk", "4 4 1 7"))
    assert [w.name for w in cfg.wifi] == ["home", "nothome"]
    assert cfg.k3s.environment == (("http_proxy", "http://myserver"),
                                   ("https_proxy", "http://myserver"))


def test_osbuilder_spelling_is_the_same_block() -> None:
    a = parse(parse_source("k3os: {server_url: 'https://s:6443', token: t}", "a").data)
    b = parse(parse_source("osbuilder: {server_url: 'https://s:6443', token: t}", "b").data)
    assert a == b and a.k3s.role == "agent"


def test_empty_config_is_a_server_with_defaults() -> None:
    cfg = parse({})
    assert cfg.k3s.role == "server" and cfg.password is None and not cfg.root_login


def test_encodings() -> None:
    import base64
    import gzip
    raw = b"payload\n"
    files = [
        {"path": "/a", "content": base64.b64encode(raw).decode(), "encoding": "b64"},
        {"path": "/b", "content": gzip.compress(raw).decode("latin-1"), "encoding": "gz"},
        {"path": "/c", "content": base64.b64encode(gzip.compress(raw)).decode(),
         "encoding": "gz+b64"},
    ]
    cfg = parse({"write_files": files[::2]})
    assert [f.content for f in cfg.write_files] == [raw, raw]


@pytest.mark.parametrize("text, where, what", [
    ("k3os: {labels: [a]}", "k3os.labels", "expected object, got list"),
    ("hostname: 42", "hostname", "expected string, got int"),
    ("hostname: 'bad_name!'", "hostname", "does not match"),
    ("k3os: {server_url: 'http://x:6443'}", "k3os.server_url", "does not match"),
    ("write_files: [{content: x}]", "write_files[0]", "'path' is a required property"),
    ("write_files: [{path: /x, encoding: zip}]", "write_files[0].encoding", "is not one of"),
    ("k3os: {taints: [nodivider]}", "k3os.taints[0]", "does not match"),
    ("k3os: {wifi: [{passphrase: x}]}", "k3os.wifi[0]", "'name' is a required property"),
    ("nodes: [{match: {mac: nope}}]", "nodes[0].match.mac", "does not match"),
])
def test_each_mistake_names_its_key(text: str, where: str, what: str) -> None:
    with pytest.raises(OsbError) as info:
        parse(parse_source(text, "config.yaml").data, "config.yaml")
    assert f"config.yaml: at {where}: " in str(info.value)
    assert what in str(info.value)


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(OsbError, match=r"config.yaml: not valid YAML \(line 2, column 5\)"):
        parse_source("a: 1\nb: c: d\n", "config.yaml")
    with pytest.raises(OsbError, match="expected a mapping of keys at the top level, got list"):
        parse_source("- a\n", "config.yaml")
