"""`osbuilder-agent boot` and `online`: gather config, validate it whole, apply it.

boot   runs early (before sysinit.target, network, sshd, k3s) from local sources and the
       cached config_url copy. An invalid config is never applied: the error is printed
       with its key path and the last good config is applied instead, so the node stays
       reachable. Idempotent: every boot rewrites the tmpfs /etc from config.
online runs once the network is up (after cloud-init, before k3s): fetches config_url
       (with retries), SSH keys from github:/gitlab:/URLs, manifest and image URLs; applies
       the config again if it changed since boot (a new config_url copy, or user-data that
       cloud-init fetched from the network).
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from osbuilder.node.paths import AgentPaths
from osbuilder.node.user_commands import run_commands
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import read_json, write_atomic, write_json, write_or_remove
from osbuilder.shared.nodeconfig import appliers
from osbuilder.shared.nodeconfig.appliers import hostname as hostname_applier
from osbuilder.shared.nodeconfig.appliers import k3s as k3s_applier
from osbuilder.shared.nodeconfig.appliers import ssh_keys
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import SCHEMA, NodeConfig, block_of, parse
from osbuilder.shared.nodeconfig.sources import (
    Source,
    boot_partition,
    cloud_key_pair,
    cloud_user_data,
    from_cmdline,
    load_yaml_mapping,
    merge_all,
)
from osbuilder.shared.run import run
from osbuilder.shared.schema import load_schema, validation_errors

URL_TRIES = 5


@dataclass
class Outcome:
    sources: list[str]
    config: NodeConfig
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def say(msg: str) -> None:
    print(f"osbuilder-agent: {msg}", flush=True)


def collect(paths: AgentPaths) -> tuple[list[Source], str | None]:
    """Every source in merge order (config_url from its cache; `online` refreshes it),
    and the config_url that the cmdline or a source names."""
    sources = []
    if paths.image_default.is_file():
        text = paths.image_default.read_text()
        sources.append(Source("image", load_yaml_mapping(text, str(paths.image_default))))
    cmd_cfg, control = from_cmdline(paths.cmdline.read_text() if paths.cmdline.is_file() else "")
    if cmd_cfg:
        sources.append(Source("cmdline", cmd_cfg))
    sources += boot_partition(paths.boot_dir)
    for cloud in (cloud_key_pair(paths.instance_data), cloud_user_data(paths.user_data)):
        if cloud is not None:
            sources.append(cloud)
    url = config_url(sources, control)
    if url and paths.config_url_cache.is_file():
        cached = paths.config_url_cache.read_text()
        sources.append(Source("config_url", load_yaml_mapping(cached, "config_url (cached)")))
    return sources, url


def config_url(sources: list[Source], control: dict[str, str] | None = None) -> str | None:
    url = (control or {}).get("config_url")
    for s in sources:
        url = block_of(s.data).get("config_url", url)
    return url if isinstance(url, str) else None


def split_error(exc: OsbError) -> tuple[str, str]:
    """'k3os.wifi[0].passphrase: too short' -> (key path or file, message)."""
    where, _, msg = str(exc).partition(": ")
    return (where, msg) if msg else ("(config)", where)


def resolve(paths: AgentPaths, facts: Facts
            ) -> tuple[dict[str, Any], list[str], list[tuple[str, str]]]:
    """(merged config, source names, errors as (key path, message)); nothing written.
    Checks the schema, then what only the appliers know (owners, passphrases, k3s args)."""
    try:
        merged, used = merge_all(collect(paths)[0], facts)
    except OsbError as exc:  # a source that is not YAML: name the file
        return {}, [], [split_error(exc)]
    last = read_json(paths.last_good) or {}
    if last.get("config") == merged and last.get("schema") == schema_digest():
        return merged, used, []  # validated when it became the last good config
    problems = validation_errors(merged, SCHEMA)
    if not problems:
        try:
            appliers.validate(parse(merged, validated=True), paths.root)
        except OsbError as exc:
            problems = [split_error(exc)]
    return merged, used, problems


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def schema_digest() -> str:
    return digest(load_schema(SCHEMA))


def apply_config(cfg: NodeConfig, facts: Facts, paths: AgentPaths) -> list[str]:
    errors = []
    for name, fn in appliers.APPLIERS:
        try:
            fn(cfg, facts, paths.root)
        except (OsbError, OSError) as exc:
            errors.append(f"{name}: {exc}")
    return errors


def activate(cfg: NodeConfig, hostname: str, paths: AgentPaths) -> None:
    """Tell the running system (only on a real node, root == /)."""
    if str(paths.root) != "/":
        return
    try:
        with open("/proc/sys/kernel/hostname", "w") as f:
            f.write(hostname)
    except OSError:
        pass
    units = ["systemd-sysctl.service"] if cfg.sysctl else []
    units += ["systemd-modules-load.service"] if cfg.modules else []
    # resolved starts alongside `boot` (osbuilder-boot.service): it may have read its
    # configuration before the DNS drop-in was written
    units += ["systemd-resolved.service"] if cfg.dns_nameservers else []
    if units:
        run(["systemctl", "restart", "--no-block", *units], check=False)
    run(["systemctl", "start", "--no-block", k3s_applier.unit_for(cfg)], check=False)


def boot(paths: AgentPaths, facts: Facts) -> Outcome:
    started = time.monotonic()
    merged, used, problems = resolve(paths, facts)
    seen = digest(merged)  # what the sources said, valid or not (`online` compares)
    errors = [f"at {where}: {msg}" for where, msg in problems]
    for e in errors:
        say(f"config error {e}")
    cfg = None
    if errors:
        last = read_json(paths.last_good) or {}
        merged, used = last.get("config", {}), last.get("sources", [])
        try:  # validated when it was saved, but an upgrade may have changed the schema
            cfg = parse(merged, "last good config")
        except OsbError:
            merged, used = {}, []
    cfg = cfg or parse(merged, "config", validated=True)
    out = Outcome(used, cfg, errors=errors)
    out.warnings += run_commands("init_cmd", cfg.init_cmd)
    out.errors += apply_config(cfg, facts, paths)
    name = hostname_applier.resolve_hostname(cfg, facts, paths.root)
    if not errors:
        # 0600: the config holds the password and the cluster token
        write_json(paths.last_good, {"config": merged, "sources": used,
                                     "schema": schema_digest()}, 0o600)
    out.warnings += run_commands("boot_cmd", cfg.boot_cmd)
    mark_later_work(cfg, paths)
    activate(cfg, name, paths)
    kept = " (kept last good config)" if errors else ""
    say(f"applied config{kept} (sources={','.join(used) or '(image defaults)'}, "
        f"role={cfg.k3s.role}, hostname={name})")
    record(paths, out, name, "error" if out.errors else "applied", seen,
           time.monotonic() - started)
    return out


# cloud-init brings user-data from the network (EC2's IMDS) after `boot` ran
CLOUD_INIT = "usr/bin/cloud-init"


def online_work(cfg: NodeConfig, paths: AgentPaths) -> list[str]:
    """What `online` would fetch or re-check for this config; nothing -> it is not run."""
    try:
        work = ["config_url"] if collect(paths)[1] else []
    except OsbError:  # a source that is not YAML may still name one: let `online` see
        work = ["config_url (unreadable sources)"]
    work += ["cloud-init user-data"] if (paths.root / CLOUD_INIT).exists() else []
    work += ["ssh_authorized_keys"] if any(map(ssh_keys.is_remote,
                                                cfg.ssh_authorized_keys)) else []
    work += ["k3os.manifests"] if (cfg.k3s.role == "server"
                                   and any(m.url for m in cfg.k3s.manifests)) else []
    work += ["k3os.airgap_images"] if cfg.k3s.airgap_images else []
    return work


def mark_later_work(cfg: NodeConfig, paths: AgentPaths) -> None:
    work = online_work(cfg, paths)
    write_or_remove(paths.online_marker, "\n".join(work) + "\n" if work else None)
    write_or_remove(paths.run_cmd_marker, "run_cmd\n" if cfg.run_cmd else None)


def record(paths: AgentPaths, out: Outcome, hostname: str, result: str, seen: str,
           seconds: float) -> None:
    write_json(paths.state_file, {
        "result": result, "sources": out.sources, "role": out.config.k3s.role, "seen": seen,
        "k3s_unit": k3s_applier.unit_for(out.config), "hostname": hostname,
        "errors": out.errors, "warnings": out.warnings, "time": int(time.time()),
        "seconds": round(seconds, 3),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    })


FIRST_RETRY_DELAY_S = 1.0


def fetch_config_url(url: str, tries: int = URL_TRIES) -> str:
    import requests  # here, not at the top: `boot` must not pay for it

    delay, last = FIRST_RETRY_DELAY_S, ""
    for attempt in range(tries):
        try:
            resp = requests.get(url, timeout=15)
            if resp.status_code == 200:
                return resp.text
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = exc.__class__.__name__
        if attempt < tries - 1:
            time.sleep(delay)
            delay *= 2
    raise OsbError(f"config_url {url}: {last} after {tries} tries")


def online(paths: AgentPaths, facts: Facts) -> list[str]:
    """Network-dependent sources; returns warnings (none of this may fail the boot)."""
    warnings: list[str] = []
    _, url = collect(paths)
    if url:
        try:
            text = fetch_config_url(url)
            load_yaml_mapping(text, f"config_url {url}")
            write_atomic(paths.config_url_cache, text, 0o600)  # may hold tokens
        except OsbError as exc:
            warnings.append(f"{exc} (using the cached copy)")
    merged, _, errors = resolve(paths, facts)
    if digest(merged) != (read_json(paths.state_file) or {}).get("seen"):
        say("config changed since boot: applying it")
        boot(paths, facts)
    if not errors:
        cfg = parse(merged, validated=True)  # resolve() just checked it
        warnings += ssh_keys.fetch_remote_keys(cfg, paths.root)
        ssh_keys.apply(cfg, facts, paths.root)
        warnings += k3s_applier.fetch_manifests(cfg, paths.root)
        warnings += k3s_applier.fetch_airgap_images(cfg, paths.root)
    for w in warnings:
        say(f"warning: {w}")
    return warnings
