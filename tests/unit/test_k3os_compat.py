"""k3OS config files unchanged (issue 16), each behaviour from k3OS's source
(rancher/k3os@8cdfdf2): pkg/config/rename.go (spellings), coerce.go (coercions),
read.go (sources, command line), pkg/cc/funcs.go (k3s role and K3S_URL, environment),
pkg/cc/apply.go (files before commands), pkg/command (a list stops at its first failure),
libexec/k3os/bootstrap (user rancher)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from osbuilder.node.config_dump import dump
from osbuilder.node.configure import boot
from osbuilder.node.user_commands import run_commands
from osbuilder.shared.nodeconfig.k3os_compat import Normalizer
from osbuilder.shared.nodeconfig.loader import load_bytes
from osbuilder.shared.nodeconfig.source_text import cmdline
from tests.unit.test_agent_boot import FACTS, node

# FuzzyNames' table for k3OS's fields (computed from rename.go in the research notes)
SPELLINGS = {
    "ssh_authorized_keys": ["ssh_authorized_key", "sshauthorizedkeys", "sshAuthorizedKeys"],
    "write_files": ["write_file", "writefiles", "writeFiles"],
    "run_cmd": ["runcmd", "runCmd"], "boot_cmd": ["bootcmd", "bootCmd"],
    "init_cmd": ["initcmd", "initCmd"],
}
BLOCK_SPELLINGS = {
    "data_sources": ["data_source", "datasources", "datasource", "dataSources"],
    "modules": ["module"], "sysctl": ["sysctls"],
    "ntp_servers": ["ntp_server", "ntpservers", "ntpServers"],
    "dns_nameservers": ["dns_nameserver", "dnsnameservers", "dnsNameservers"],
    "server_url": ["serverurl", "serverUrl", "SERVERURL"], "labels": ["label"],
    "k3s_args": ["k3s_arg", "k3sargs", "k3sArgs"], "taints": ["taint"],
}


def normalized(doc: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    return Normalizer().source(doc)


@pytest.mark.parametrize("key, spelling", [(k, s) for k, ss in SPELLINGS.items() for s in ss])
def test_top_level_spellings(key: str, spelling: str) -> None:
    value = ["x"]
    assert normalized({spelling: value}) == ({key: value}, [])


@pytest.mark.parametrize("key, spelling",
                         [(k, s) for k, ss in BLOCK_SPELLINGS.items() for s in ss])
def test_block_spellings(key: str, spelling: str) -> None:
    value = {"a": "b"} if key in ("sysctl", "labels") else "x"
    out, warnings = normalized({"k3os": {spelling: value}})
    assert key in out["k3os"] and warnings == []  # type: ignore[operator]


def test_wifi_pass_and_password_and_install_camel_case() -> None:
    out, _ = normalized({"k3os": {"wifi": [{"name": "a", "pass": "12345678"},
                                            {"name": "b", "password": "87654321"}],
                                  "install": {"forceEfi": "true", "powerOff": True,
                                              "noFormat": "yes", "configUrl": "https://c"}}})
    block = out["k3os"]
    assert block["wifi"] == [{"name": "a", "passphrase": "12345678"},  # type: ignore[index]
                             {"name": "b", "passphrase": "87654321"}]
    # coerce.go: a string is true only when it is exactly "true"
    assert block["install"] == {"force_efi": True, "power_off": True,  # type: ignore[index]
                                "no_format": False, "config_url": "https://c"}


def test_coercions_and_nulls() -> None:
    out, _ = normalized({"k3os": {"datasource": "aws", "k3s_args": "server",
                                  "sysctls": {"vm.swappiness": 10, "big": 1048576,
                                              "on": True, "list": ["a", "b"], "none": None},
                                  "data_sources": None, "environment": None},
                         "ssh_authorized_keys": "ssh-ed25519 AAAA x"})
    assert out == {"ssh_authorized_keys": ["ssh-ed25519 AAAA x"], "k3os": {
        "data_sources": ["aws"], "k3s_args": ["server"],
        # k3OS printed 1048576 as "1.048576e+06" and the sysctl failed: here it is digits
        "sysctl": {"vm.swappiness": "10", "big": "1048576", "on": "true", "list": "a",
                   "none": ""}}}


def test_unknown_keys_are_warnings_and_strict_makes_them_errors() -> None:
    text = "hostname: n1\nenconding: x\nk3os: {k3_args: [server], token: t}\n"
    v = load_bytes(text, "config.yaml")
    assert v.ok and v.config is not None and v.config.hostname == "n1"
    assert v.warnings == ("config.yaml: enconding: unknown key",
                          "config.yaml: k3os.k3_args: unknown key")
    strict = load_bytes(text, "config.yaml", strict=True)
    assert not strict.ok
    assert [str(p) for p in strict.problems] == ["config.yaml: enconding: unknown key",
                                                 "config.yaml: k3os.k3_args: unknown key"]


def k3s_config(text: str) -> dict[str, object]:
    from osbuilder.shared.nodeconfig.appliers.k3s import k3s_config as render

    v = load_bytes(text, "config.yaml")
    assert v.config is not None, v.problems
    return render(v.config.k3s)


def test_a_server_joins_with_server_url_and_the_server_role_word() -> None:
    """k3OS exports K3S_URL whenever server_url is set (pkg/cc/funcs.go ApplyK3S): with
    `k3s_args: [server]` the node is a second server of the same cluster."""
    cfg = k3s_config("k3os:\n  server_url: https://10.0.0.1:6443\n  token: K10abc\n"
                     "  k3s_args: [server]\n")
    assert cfg == {"server": "https://10.0.0.1:6443", "token": "K10abc"}
    agent = k3s_config("k3os: {server_url: 'https://10.0.0.1:6443', token: t}\n")
    assert agent["server"] == "https://10.0.0.1:6443"


def test_k3s_args_split_form_short_flags_and_role_word() -> None:
    cfg = k3s_config("k3os:\n  k3s_args:\n  - server\n  - --node-label\n  - a=b\n"
                     "  - --node-label=c=d\n  - -t\n  - secret\n  - --cluster-init\n"
                     "  - --disable=traefik\n  - --write-kubeconfig-mode\n  - '0644'\n")
    assert cfg == {"node-label": ["a=b", "c=d"], "token": "secret", "cluster-init": True,
                   "disable": ["traefik"], "write-kubeconfig-mode": "0644"}


def test_k3os_command_line_repeats_make_a_list_and_quotes_hold_blanks() -> None:
    src, control = cmdline('ro k3os.k3s_args=server k3os.k3s_args="--node-label=a b" '
                           "k3os.server_url=https://s:6443 osb.dns_nameservers=1.1.1.1,9.9.9.9")
    assert src is not None and control == {}
    assert src.data == {"k3os": {"k3s_args": ["server", "--node-label=a b"],
                                 "server_url": "https://s:6443",
                                 "dns_nameservers": ["1.1.1.1", "9.9.9.9"]}}


def test_rancher_gets_the_password_and_keys_and_environment_is_written(
        tmp_path: Path) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK3OSuserKeyForTheTest000000000000 k3os@test"
    paths = node(tmp_path, {"ssh_authorized_keys": [key], "k3os": {
        "password": "rancher-pw", "environment": {"HTTPS_PROXY": "http://proxy:3128"}}})
    out = boot(paths, FACTS)
    assert out.errors == []
    root = paths.root
    for user in ("osb", "rancher"):
        assert key in (root / f"home/{user}/.ssh/authorized_keys").read_text()
    shadow = {f[0]: f[1] for f in (line.split(":") for line in
                                   (root / "etc/shadow").read_text().splitlines())}
    assert shadow["rancher"] == shadow["osb"] and shadow["osb"].startswith("$6$")
    env = root / "etc/environment"
    assert "HTTPS_PROXY='http://proxy:3128'" in env.read_text()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600  # a proxy URL may carry credentials


def test_k3os_local_config_sources_and_their_order(tmp_path: Path) -> None:
    """/var/lib/rancher/k3os/config.yaml after the boot partition, its config.d (any
    file name) after cloud user-data (rancher/k3os pkg/config/read.go)."""
    paths = node(tmp_path, {"hostname": "from-boot", "k3os": {"labels": {"a": "boot"}}})
    local = paths.root / "var/lib/rancher/k3os"
    (local / "config.d").mkdir(parents=True)
    (local / "config.yaml").write_text("hostname: from-local\nk3os: {token: local}\n")
    paths.user_data.write_text("hostname: from-user-data\n")
    (local / "config.d/zz-last").write_text("k3os: {token: config-d}\n")
    out = boot(paths, FACTS)
    assert out.sources == [str(paths.boot_dir / "config.yaml"),
                           "/var/lib/rancher/k3os/config.yaml", str(paths.user_data),
                           "/var/lib/rancher/k3os/config.d/zz-last"]
    assert (paths.root / "etc/hostname").read_text().strip() == "from-user-data"
    k3s = yaml.safe_load((paths.root / "etc/rancher/k3s/config.yaml").read_text())
    assert k3s["token"] == "config-d"


def test_files_first_then_commands_which_stop_at_the_first_failure(tmp_path: Path) -> None:
    paths = node(tmp_path, {
        "write_files": [{"path": "/tmp-k3os-order/marker", "content": "x"}],
        "init_cmd": ["echo init"], "boot_cmd": ["echo one", "false", "echo never"],
        "k3os": {"environment": {"GREETING": "hi"}}})
    seen: list[tuple[str, bool, dict[str, str]]] = []

    def record(stage: str, commands: tuple[object, ...], env: dict[str, str]) -> list[str]:
        seen.append((stage, (paths.root / "tmp-k3os-order/marker").exists(), env))
        return []

    boot(paths, FACTS, record)
    assert [(s, f) for s, f, _ in seen] == [("init_cmd", True), ("boot_cmd", True)]
    assert seen[0][2] == {"GREETING": "hi"}
    warnings = run_commands("boot_cmd", ("echo one", "false", "echo never"))
    assert warnings == ["boot_cmd[1]: exit 1", "boot_cmd[2:]: not run: boot_cmd[1] failed, "
                        "and a list stops at its first failure (as on k3OS)"]


def test_config_dump_names_each_source_and_masks_secrets(tmp_path: Path) -> None:
    paths = node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw-S3CR3T",
                                                       "labels": {"a": "b"}, "colour": 1}},
                 cmdline="ro k3os.token=T0K3N-S3CR3T")
    text = dump(paths, FACTS)
    assert "S3CR3T" not in text
    boot_file = str(paths.boot_dir / "config.yaml")
    lines = [line.rstrip() for line in text.splitlines()]
    assert f"# warning: {boot_file}: k3os.colour: unknown key, ignored" in lines
    assert any(line.startswith("hostname: n1 ") and line.endswith(f"# {boot_file}")
               for line in lines)
    assert any(line.startswith("  token: (secret)") and line.endswith("# cmdline")
               for line in lines)
    assert yaml.safe_load(text)["k3os"]["labels"] == {"a": "b"}  # still YAML


def test_data_sources_turn_cloud_init_on_with_k3os_names(tmp_path: Path) -> None:
    """k3OS's names (rancher/k3os README "k3os.data_sources") map to cloud-init's
    datasources; the image ships cloud-init off (package set data-sources)."""
    from osbuilder.shared.nodeconfig.appliers import data_sources as ds

    paths = node(tmp_path, {"k3os": {"data_sources": ["aws", "cdrom", "openstack"]}})
    root = paths.root
    assert (root / ds.CLOUD_INIT).exists() and (root / ds.DISABLED).exists()  # the image's
    assert boot(paths, FACTS).errors == []
    assert "datasource_list: [Ec2, NoCloud, ConfigDrive, OpenStack, None]" in (
        root / ds.CONFIG).read_text()
    assert not (root / ds.DISABLED).exists()
    assert "cloud-init user-data" in paths.online_marker.read_text()
    # no data sources: cloud-init stays off and `online` has nothing to wait for
    (paths.boot_dir / "config.yaml").write_text("hostname: n1\n")
    (root / ds.DISABLED).write_text("off\n")
    boot(paths, FACTS)
    assert not (root / ds.CONFIG).exists() and not paths.online_marker.exists()


@pytest.mark.parametrize("name, error", [
    ("packet", "'packet' (Equinix Metal) has no cloud-init datasource"),
    ("azure-ish", "'azure-ish' is not a data source"),
])
def test_data_sources_k3os_knew_but_cloud_init_lacks_are_refused(name: str, error: str) -> None:
    v = load_bytes(f"k3os: {{data_sources: [{name}]}}", "config.yaml")
    assert not v.ok and error in str(v.problems[0]), v.problems
    assert load_bytes("k3os: {data_sources: [Ec2, gcp]}", "config.yaml").ok
