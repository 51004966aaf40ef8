"""k3s config.yaml, registries.yaml, /etc/default/k3s, manifests and the enabled unit.
The HTTP server on 127.0.0.1 stands in for the sites manifests are downloaded from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.appliers import k3s
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig, parse
from tests.helpers.shipped_units import UNITS_DIR, unit_keys
from tests.unit.test_apply_fs import mode, serve

FACTS = Facts(macs=(), wireless=(), serial=None, hostname=None)
WANTS = "etc/systemd/system/multi-user.target.wants"
DEPLOY = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n"


def applied(tmp_path: Path, block: dict[str, Any]) -> dict[str, Any]:
    k3s.apply(parse({"k3os": block}), FACTS, tmp_path)
    data: dict[str, Any] = yaml.safe_load((tmp_path / k3s.CONFIG).read_text())
    return data


def test_server_config(tmp_path: Path) -> None:
    c = applied(tmp_path, {
        "token": "K10secret", "cluster_init": True, "tls_san": ["k8s.example.com", "10.0.0.5"],
        "disable": ["traefik", "servicelb"], "labels": {"zone": "a", "gpu": True},
        "taints": ["dedicated=edge:NoSchedule"], "node_ip": "10.0.0.5",
        "flannel_backend": "wireguard-native"})
    assert c == {
        "token": "K10secret", "cluster-init": True, "tls-san": ["k8s.example.com", "10.0.0.5"],
        "disable": ["traefik", "servicelb"], "node-label": ["gpu=true", "zone=a"],
        "node-taint": ["dedicated=edge:NoSchedule"], "node-ip": "10.0.0.5",
        "flannel-backend": "wireguard-native"}
    assert mode(tmp_path / k3s.CONFIG) == 0o600
    assert (tmp_path / k3s.CONFIG).read_text().startswith("#")


def test_server_without_settings_and_external_datastore(tmp_path: Path) -> None:
    assert applied(tmp_path, {}) == {}
    c = applied(tmp_path, {"datastore_endpoint": "postgres://db:5432/k3s"})
    assert c == {"datastore-endpoint": "postgres://db:5432/k3s"}  # no cluster-init: unset


def test_agent_config_leaves_out_server_only_keys(tmp_path: Path) -> None:
    c = applied(tmp_path, {"server_url": "https://10.0.0.5:6443", "token": "K10secret",
                           "tls_san": ["x"], "disable": ["traefik"], "cluster_init": True,
                           "labels": {"role": "edge"}})
    assert c == {"server": "https://10.0.0.5:6443", "token": "K10secret",
                 "node-label": ["role=edge"]}


def test_k3s_args_become_config_keys(tmp_path: Path) -> None:
    c = applied(tmp_path, {"disable": ["traefik"], "k3s_args": [
        "server", "--disable=servicelb", "--write-kubeconfig-mode=0644", "--secrets-encryption",
        "--kubelet-arg=max-pods=200", "--kubelet-arg=image-gc-high-threshold=80"]})
    assert c == {"disable": ["traefik", "servicelb"], "write-kubeconfig-mode": "0644",
                 "secrets-encryption": True,
                 "kubelet-arg": ["max-pods=200", "image-gc-high-threshold=80"]}


def test_agent_role_from_k3s_args(tmp_path: Path) -> None:
    cfg = parse({"k3os": {"k3s_args": ["agent", "--server=https://s:6443", "-t", "tok"]}})
    assert k3s.unit_for(cfg) == "k3s-agent.service"
    k3s.apply(cfg, FACTS, tmp_path)
    assert yaml.safe_load((tmp_path / k3s.CONFIG).read_text()) == {
        "server": "https://s:6443", "token": "tok"}
    with pytest.raises(OsbError, match=r"k3os\.token: the agent role needs the cluster's"):
        k3s.apply(parse({"k3os": {"server_url": "https://s:6443"}}), FACTS, tmp_path)
    with pytest.raises(OsbError, match=r"k3os\.server_url: the agent role needs"):
        k3s.apply(parse({"k3os": {"k3s_args": ["agent"]}}), FACTS, tmp_path)


@pytest.mark.parametrize("args, error", [
    (["--node-name"], r"\[0\]: --node-name needs a value"),
    (["--node-name=a", "--colour"], r"\[1\]: '--colour' is not a flag of k3s server"),
    (["--cluster-cidr 10.0.0.0/16"], r"\[0\]: .*a flag and its value are two items"),
    (["server", "oops"], r"\[1\]: 'oops' is not a flag"),
    (["agent", "--cluster-init"], r"\[1\]: --cluster-init is a flag of k3s server, not"),
    (["--cluster-init=maybe"], r"\[0\]: --cluster-init is on or off"),
])
def test_bad_k3s_arg_names_the_key(tmp_path: Path, args: list[str], error: str) -> None:
    cfg: dict[str, Any] = {"k3s_args": args}
    if args[0] == "agent":
        cfg["server_url"], cfg["token"] = "https://s:6443", "t"
    with pytest.raises(OsbError, match=r"k3os\.k3s_args" + error):
        k3s.apply(parse({"k3os": cfg}), FACTS, tmp_path)
    assert not (tmp_path / k3s.CONFIG).exists()


def test_registries_and_environment_written_then_removed(tmp_path: Path) -> None:
    registries = {"mirrors": {"docker.io": {"endpoint": ["https://mirror.local:5000"]}},
                  "configs": {"mirror.local:5000": {"auth": {"username": "u",
                                                              "password": "p"}}}}
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8,.local",
           "QUOTED": "it's $HOME \"x\""}
    k3s.apply(parse({"k3os": {"registries": registries, "environment": env}}), FACTS, tmp_path)
    assert yaml.safe_load((tmp_path / k3s.REGISTRIES).read_text()) == registries
    assert mode(tmp_path / k3s.REGISTRIES) == 0o600
    lines = [line for line in (tmp_path / k3s.ENVIRONMENT).read_text().splitlines()
             if not line.startswith("#")]
    assert lines == ["HTTPS_PROXY='http://proxy:3128'", "NO_PROXY='10.0.0.0/8,.local'",
                     'QUOTED="it\'s \\$HOME \\"x\\""']
    k3s.apply(parse({}), FACTS, tmp_path)
    assert not (tmp_path / k3s.REGISTRIES).exists()
    assert not (tmp_path / k3s.ENVIRONMENT).exists()


def test_environment_must_be_one_line_per_valid_name(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r"k3os\.environment\.A: must be a single line"):
        k3s.apply(parse({"k3os": {"environment": {"A": "1\nB=2"}}}), FACTS, tmp_path)
    with pytest.raises(OsbError, match=r"k3os\.environment\.1A: not a valid"):
        k3s.apply(parse({"k3os": {"environment": {"1A": "x"}}}), FACTS, tmp_path)


def manifests_cfg(url: str = "https://example.test/m.yaml", **block: Any) -> NodeConfig:
    return parse({"k3os": {"manifests": [{"name": "demo.yaml", "content": DEPLOY},
                                         {"name": "remote.yaml", "url": url,
                                          "allow_http": True}], **block}})


def test_manifests_only_on_servers(tmp_path: Path) -> None:
    server, agent = tmp_path / "server", tmp_path / "agent"
    k3s.apply(manifests_cfg(), FACTS, server)
    assert (server / k3s.MANIFESTS / "demo.yaml").read_text() == DEPLOY
    assert not (server / k3s.MANIFESTS / "remote.yaml").exists()  # fetched separately
    k3s.apply(manifests_cfg(server_url="https://s:6443", token="t"), FACTS, agent)
    assert not (agent / k3s.MANIFESTS).exists()


def test_image_manifests_deployed_on_servers_only(tmp_path: Path) -> None:
    """The OSUpgrade CRD from the image lands in k3s's auto-deploy folder on servers."""
    overlay = Path(__file__).resolve().parents[2] / "osbuilder/host/overlays/common"
    crd = overlay / k3s.IMAGE_MANIFESTS
    for role in ("server", "agent"):
        root = tmp_path / role
        (root / k3s.IMAGE_MANIFESTS).mkdir(parents=True)
        src = crd / "osupgrade-crd.yaml"
        (root / k3s.IMAGE_MANIFESTS / src.name).write_bytes(src.read_bytes())
        k3s.apply(manifests_cfg(**({} if role == "server" else
                                   {"server_url": "https://s:6443", "token": "t"})), FACTS, root)
    deployed = tmp_path / "server" / k3s.MANIFESTS / "osbuilder-osupgrade-crd.yaml"
    assert yaml.safe_load(deployed.read_text())["metadata"]["name"] == "osupgrades.osbuilder.io"
    assert mode(deployed) == 0o600
    assert not (tmp_path / "agent" / k3s.MANIFESTS).exists()


def test_fetch_manifests(tmp_path: Path) -> None:
    routes = {"/m.yaml": (200, DEPLOY.encode()), "/bad.yaml": (200, b"a: [unclosed\n")}
    with serve(routes) as (url, asked):
        assert k3s.fetch_manifests(manifests_cfg(f"{url}/m.yaml"), tmp_path) == []
        assert (tmp_path / k3s.MANIFESTS / "remote.yaml").read_text() == DEPLOY
        for broken in ("/missing.yaml", "/bad.yaml"):
            warnings = k3s.fetch_manifests(manifests_cfg(url + broken), tmp_path)
            assert len(warnings) == 1
            assert warnings[0].startswith("k3os.manifests[1] (remote.yaml): keeping the old")
        assert k3s.fetch_manifests(manifests_cfg(f"{url}/m.yaml",
                                                 server_url="https://s:6443", token="t"),
                                   tmp_path) == []
    assert asked == ["/m.yaml", "/missing.yaml", "/bad.yaml"]  # agents fetch nothing
    assert (tmp_path / k3s.MANIFESTS / "remote.yaml").read_text() == DEPLOY  # old copy kept


def test_exactly_one_unit_enabled_when_switching_roles(tmp_path: Path) -> None:
    wants = tmp_path / WANTS
    k3s.apply(parse({}), FACTS, tmp_path)
    assert os.readlink(wants / "k3s.service") == "/usr/lib/systemd/system/k3s.service"
    assert not (wants / "k3s-agent.service").is_symlink()
    k3s.apply(parse({"k3os": {"server_url": "https://s:6443", "token": "t"}}), FACTS, tmp_path)
    assert os.readlink(wants / "k3s-agent.service") == "/usr/lib/systemd/system/k3s-agent.service"
    assert not (wants / "k3s.service").is_symlink()
    k3s.apply(parse({}), FACTS, tmp_path)
    assert sorted(p.name for p in wants.iterdir()) == ["k3s.service"]


def test_units_run_only_where_the_applier_enabled_them(tmp_path: Path) -> None:
    """osbuilder-boot.service queues both k3s units at every boot (and the fleet controller
    with k3s.service); each runs only where the agent enabled its role: its conditions
    (systemd.unit(5): all must hold, checked when the job runs, which is after the agent)
    name files the applier writes for that role."""
    boot_wants = [v.split() for v in unit_keys("osbuilder-boot.service")["Wants"]]
    assert ["k3s.service", "k3s-agent.service"] in boot_wants
    for block, runs in (({}, "k3s.service"),
                        ({"server_url": "https://s:6443", "token": "t"}, "k3s-agent.service")):
        root = tmp_path / runs
        k3s.apply(parse({"k3os": block}), FACTS, root)
        # the fleet controller, wanted by k3s.service, runs with the server only
        for unit, runs_with in (("k3s.service", "k3s.service"),
                                ("k3s-agent.service", "k3s-agent.service"),
                                ("osbuilder-controller.service", "k3s.service")):
            conditions = unit_keys(unit).get("ConditionPathExists", [])
            held = all(exists_on_node(root, c) for c in conditions)
            assert conditions and held == (runs_with == runs), (runs, unit, conditions)


def exists_on_node(root: Path, path: str) -> bool:
    """access(F_OK) on the node (systemd's ConditionPathExists=): a symlink counts when its
    target does, and the image's units are the overlay's."""
    p = root / path.lstrip("/")
    if p.is_symlink():
        target = os.readlink(p)
        return (target.startswith("/usr/lib/systemd/system/")
                and (UNITS_DIR / Path(target).name).is_file())
    return p.exists()
