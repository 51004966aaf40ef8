"""`k3os.data_sources`: the clouds' metadata sources k3OS read with linuxkit's metadata tool
(rancher/k3os overlay/etc/init.d/cloud-config, pkg/cc/funcs.go ApplyDataSource), read here
by cloud-init's datasources: the agent writes cloud-init's datasource_list and turns it on
(the data-sources package set ships it off); cloud-init stores the user-data, which the
agent reads as one of its config sources (`online` applies what arrives with the network).

Each k3OS name maps to cloud-init 25.1's datasources (Debian trixie's cloud-init):
openstack reads the metadata service and config drives, cdrom NoCloud seeds (label cidata)
and config drives (label config-2). k3OS's `packet` has no cloud-init datasource: refused.
cloud-init's own names (Ec2, NoCloud, ...) are taken as they are.
"""

from __future__ import annotations

from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import HEADER, remove, write_or_remove
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig

K3OS_NAMES = {
    "aws": ("Ec2",), "gcp": ("GCE",), "openstack": ("OpenStack", "ConfigDrive"),
    "hetzner": ("Hetzner",), "digitalocean": ("DigitalOcean",), "vultr": ("Vultr",),
    "scaleway": ("Scaleway",), "cdrom": ("NoCloud", "ConfigDrive"),
}
# cloud-init 25.1.4's datasources (cloudinit/settings.py CFG_BUILTIN datasource_list)
CLOUD_INIT_NAMES = (
    "NoCloud", "ConfigDrive", "LXD", "OpenNebula", "DigitalOcean", "Azure", "AltCloud",
    "VMware", "OVF", "MAAS", "GCE", "OpenStack", "AliYun", "Vultr", "Ec2", "CloudSigma",
    "CloudStack", "SmartOS", "Bigstep", "Scaleway", "Hetzner", "IBMCloud", "Oracle",
    "Exoscale", "RbxCloud", "UpCloud", "NWCS", "Akamai", "WSL", "CloudCIX",
)
CONFIG = "etc/cloud/cloud.cfg.d/91-osbuilder-datasources.cfg"
DISABLED = "etc/cloud/cloud-init.disabled"
CLOUD_INIT = "usr/bin/cloud-init"


def datasources(cfg: NodeConfig) -> list[str]:
    """cloud-init's datasource_list for the config (empty: none configured)."""
    out: list[str] = []
    for i, name in enumerate(cfg.data_sources):
        if name == "packet":
            raise OsbError(f"k3os.data_sources[{i}]: 'packet' (Equinix Metal) has no "
                           "cloud-init datasource; give its user-data another way "
                           "(config_url, a config.yaml on the boot partition)")
        found = K3OS_NAMES.get(name) or ((name,) if name in CLOUD_INIT_NAMES else None)
        if found is None:
            raise OsbError(f"k3os.data_sources[{i}]: {name!r} is not a data source (k3OS: "
                           f"{', '.join(K3OS_NAMES)}; or a cloud-init datasource name)")
        out += [d for d in found if d not in out]
    return out


def render(cfg: NodeConfig) -> str | None:
    names = datasources(cfg)
    if not names:
        return None
    return (HEADER + f"datasource_list: [{', '.join([*names, 'None'])}]\n"
            # off its cloud, a metadata service is not waited for for minutes
            "datasource:\n  Ec2: {max_wait: 30, timeout: 5}\n"
            "  OpenStack: {max_wait: 30, timeout: 5}\n")


def active(cfg: NodeConfig, root: Path) -> bool:
    """Whether cloud-init runs this boot: the image has it, and it is on (the EC2 boards)
    or the config names data sources."""
    return (root / CLOUD_INIT).exists() and (bool(cfg.data_sources)
                                             or not (root / DISABLED).exists())


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """Every name is one k3OS knew (or cloud-init's own)."""
    datasources(cfg)


def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    text = render(cfg)
    if text is not None and not (root / CLOUD_INIT).exists():
        raise OsbError("k3os.data_sources: this image has no cloud-init (build it with the "
                       "cloud-init package set)")
    write_or_remove(root / CONFIG, text)
    if text is not None:
        remove(root / DISABLED)  # /etc is rebuilt each boot: the image's file is back then
