"""`osbuilder-agent boot` and `online`: gather config, judge it whole (the one loader),
apply it.

boot   runs early (before sysinit.target, network, sshd, k3s) from local sources and the
       cached config_url copy. An invalid config is never applied: each problem is printed
       as `config error at <key>: <what>` and the last good config (else the image
       default, else nothing) is applied instead, so the node stays reachable; the run
       then fails, for systemd to show. Idempotent: every boot rewrites the tmpfs /etc.
online runs once the network is up (after cloud-init, before k3s): fetches config_url
       (with retries), SSH keys from github:/gitlab:/URLs, manifest and image URLs; applies
       the config again if it changed since boot (a new config_url copy, or user-data that
       cloud-init fetched from the network).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from osbuilder.node.activate import start as start_units
from osbuilder.node.node_name import node_name
from osbuilder.node.paths import AgentPaths
from osbuilder.node.replay import write_state
from osbuilder.node.user_commands import run_commands
from osbuilder.shared.boot_journal import note
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import read_json, write_atomic, write_json, write_or_remove
from osbuilder.shared.nodeconfig import appliers
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers import data_sources as data_sources_applier
from osbuilder.shared.nodeconfig.appliers import hostname as hostname_applier
from osbuilder.shared.nodeconfig.appliers import k3s as k3s_applier
from osbuilder.shared.nodeconfig.appliers import ssh_keys
from osbuilder.shared.nodeconfig.downloads import fetch_bytes
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.judged import (
    MAX_RECORD_BYTES,
    VALIDATOR,
    digest,
    judged_before,
    schema_digest,
)
from osbuilder.shared.nodeconfig.limits import MAX_CONFIG_URL_BYTES
from osbuilder.shared.nodeconfig.loader import Problem, Verdict, judge, problem
from osbuilder.shared.nodeconfig.model import Command, NodeConfig, Url, block_of, parse
from osbuilder.shared.nodeconfig.source_text import Source, cmdline, parse_source, read_source
from osbuilder.shared.nodeconfig.sources import (
    boot_partition,
    cloud_key_pair,
    cloud_user_data,
    k3os_local,
    k3os_local_dir,
    merge_all,
)

URL_TRIES = 5


@dataclass
class Outcome:
    sources: list[str]
    config: NodeConfig
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def say(msg: str) -> None:
    note("say", msg)
    print(f"osbuilder-agent: {msg}", flush=True)


Collected = tuple[list[Source], list[Problem], Url | None]


def collect(paths: AgentPaths) -> Collected:
    """Every source in merge order (config_url from its cache; `online` refreshes it), the
    problems of sources that could not be read, and the config_url they name."""
    sources: list[Source] = []
    problems: list[Problem] = []

    def add(read: Callable[[], Source | list[Source] | None]) -> None:
        try:
            got = read()
        except OsbError as exc:
            problems.append(problem(exc))
            return
        sources.extend(got if isinstance(got, list) else [got] if got else [])

    add(lambda: read_source(paths.image_default, "image")
        if paths.image_default.is_file() else None)
    add(lambda: cmdline(read(paths.cmdline))[0])
    add(lambda: boot_partition(paths.boot_dir))
    add(lambda: k3os_local(paths.root))
    add(lambda: cloud_key_pair(paths.instance_data))
    add(lambda: cloud_user_data(paths.user_data))
    add(lambda: k3os_local_dir(paths.root))
    url = config_url(sources, cmdline(read(paths.cmdline))[1])
    if url and paths.config_url_cache.is_file():
        add(lambda: read_source(paths.config_url_cache, "config_url"))
    return sources, problems, url


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def config_url(sources: list[Source], control: dict[str, str] | None = None) -> Url | None:
    """The config_url the sources name (the last one wins), read before the config is
    judged: so nothing here trusts its shape."""
    c = control or {}
    value: Any = ({"url": c["config_url"], "allow_http": c.get("config_url_allow_http") == "1"}
                  if "config_url" in c else None)
    for s in sources:
        value = block_of(s.data).get("config_url", value)
    if isinstance(value, str):
        return Url(value)
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return Url(value["url"], value.get("allow_http") is True)
    return None


def resolve(paths: AgentPaths, facts: Facts, collected: Collected | None = None
            ) -> tuple[Verdict, str]:
    """The verdict on what the sources say now (collected: read already); nothing
    written. A config judged valid before under the same schema (the last good one, or the
    one the build judged for the first boot) is not judged again: the validator's import
    alone costs seconds on a Pi or under emulation. Returns the verdict and who judged it."""
    sources, unreadable, _ = collected or collect(paths)
    if unreadable:
        return Verdict({}, (), tuple(unreadable), None), VALIDATOR
    merged, used = merge_all(sources, facts)
    warnings = tuple(w for s in sources for w in s.warnings)
    judged = judged_before(merged, read_json(paths.last_good),
                           read_json(paths.build_verdict, MAX_RECORD_BYTES))
    if judged:
        try:
            return (Verdict(merged, tuple(used), (), parse(merged, validated=True), warnings),
                    judged)
        except OsbError:
            pass  # judged below like any other config
    return (replace(judge(merged, tuple(used), Accounts.of_root(paths.root)),
                    warnings=warnings), VALIDATOR)


def fallback(paths: AgentPaths) -> tuple[NodeConfig, list[str], str]:
    """What to apply instead of a refused config: the last good one, else the image
    default, else nothing at all; each judged again (an upgrade may have changed the
    schema)."""
    accounts = Accounts.of_root(paths.root)
    last = read_json(paths.last_good)
    if isinstance(last, dict) and isinstance(last.get("config"), dict):
        used = [s for s in last.get("sources", []) if isinstance(s, str)]
        v = judge(last["config"], tuple(used), accounts)
        if v.config is not None:
            return v.config, used, "kept last good config"
    try:
        image = read_source(paths.image_default, "image").data \
            if paths.image_default.is_file() else {}
        v = judge(image, ("image",), accounts)
    except OsbError:
        v = Verdict({}, (), (Problem("image", "unreadable"),), None)
    if v.config is not None:
        return v.config, ["image"] if image else [], "image defaults"
    return parse({}, validated=True), [], "built-in defaults"


def apply_config(cfg: NodeConfig, facts: Facts, paths: AgentPaths) -> list[str]:
    errors = []
    for a in appliers.APPLIERS:
        try:
            a.apply(cfg, facts, paths.root)
        except (OsbError, OSError) as exc:
            errors.append(f"{a.name}: {exc}")
    return errors


def activate(cfg: NodeConfig, hostname: str, paths: AgentPaths, online: bool) -> None:
    units = ["systemd-sysctl.service"] if cfg.sysctl else []
    units += ["systemd-modules-load.service"] if cfg.modules else []
    # resolved and timesyncd start alongside `boot` (osbuilder-boot.service): each may
    # have read its configuration before the DNS or NTP drop-in was written
    units += ["systemd-resolved.service"] if cfg.dns_nameservers else []
    units += ["systemd-timesyncd.service"] if cfg.ntp_servers else []
    cloud_init = bool(cfg.data_sources) and data_sources_applier.active(cfg, paths.root)
    note("activate", hostname, units, cloud_init, online)
    start_units(paths.root, hostname, units, cloud_init, online)


# runs a stage's user commands, returns one warning per failure (tests record instead)
CommandRunner = Callable[[str, tuple[Command, ...], dict[str, str]], list[str]]


def boot(paths: AgentPaths, facts: Facts, commands: CommandRunner = run_commands) -> Outcome:
    started = time.monotonic()
    collected = collect(paths)  # read once: judged now, and the later units' work below
    verdict, judged = resolve(paths, facts, collected)
    seen = digest(verdict.merged)  # what the sources said, valid or not (`online` compares)
    errors = [f"at {p}" for p in verdict.problems]
    for e in errors:
        say(f"config error {e}")
    for w in verdict.warnings:
        say(f"warning: {w}, ignored")
    kept = ""
    if verdict.config is not None:
        cfg, used = verdict.config, list(verdict.sources)
    else:
        cfg, used, kept = fallback(paths)
    out = Outcome(used, cfg, errors=errors, warnings=list(verdict.warnings))
    try:
        # k3OS's order: the files first, then the stage's commands (pkg/cc/apply.go)
        failures = apply_config(cfg, facts, paths)
        out.warnings += run_stage("init_cmd", cfg, commands)
    except Exception as exc:  # a bug must not leave /etc half-written: apply the fallback
        failures = [f"agent error: {type(exc).__name__}: {exc}"]
        say(failures[0])
        if not kept:
            cfg, used, kept = fallback(paths)
            out = Outcome(used, cfg, errors=errors + failures)
            failures = apply_config(cfg, facts, paths)
    out.errors += failures
    name = hostname_applier.resolve_hostname(cfg, facts, paths.root)
    if not kept and not out.errors:
        # 0600: the config holds the password and the cluster token
        write_json(paths.last_good, {"config": verdict.merged, "sources": used,
                                     "schema": schema_digest()}, 0o600)
    out.warnings += run_stage("boot_cmd", cfg, commands)
    activate(cfg, name, paths, online=mark_later_work(cfg, paths, collected))
    why = f" ({kept})" if kept else ""
    say(f"applied config{why} (sources={','.join(used) or '(image defaults)'}, "
        f"role={cfg.k3s.role}, hostname={name})")
    record(paths, out, name, "error" if out.errors else "applied", seen, judged,
           list(verdict.warnings), time.monotonic() - started)
    return out


def run_stage(stage: str, cfg: NodeConfig, commands: CommandRunner) -> list[str]:
    """A stage's user commands (init_cmd, boot_cmd), with the config's environment."""
    cmds: tuple[Command, ...] = getattr(cfg, stage)
    env = dict(cfg.k3s.environment)
    if cmds:
        note("commands", stage, [c if isinstance(c, str) else list(c) for c in cmds], env)
    return commands(stage, cmds, env)


def online_work(cfg: NodeConfig, paths: AgentPaths, collected: Collected) -> list[str]:
    """What `online` would fetch or re-check for this config (collected: its sources);
    nothing -> it is not run."""
    _, unreadable, url = collected
    work = ["config_url"] if url else []
    work += ["config_url (unreadable sources)"] if unreadable and not url else []
    work += ["cloud-init user-data"] if data_sources_applier.active(cfg, paths.root) else []
    work += ["ssh_authorized_keys"] if any(map(ssh_keys.is_remote,
                                                cfg.ssh_authorized_keys)) else []
    work += ["k3os.manifests"] if (cfg.k3s.role == "server"
                                   and any(m.url for m in cfg.k3s.manifests)) else []
    work += ["k3os.airgap_images"] if cfg.k3s.airgap_images else []
    return work


def mark_later_work(cfg: NodeConfig, paths: AgentPaths, collected: Collected) -> bool:
    """Leave the markers of the later units; True when `online` has work to do."""
    work = online_work(cfg, paths, collected)
    write_or_remove(paths.online_marker, "\n".join(work) + "\n" if work else None)
    write_or_remove(paths.run_cmd_marker, "run_cmd\n" if cfg.run_cmd else None)
    return bool(work)


def record(paths: AgentPaths, out: Outcome, hostname: str, result: str, seen: str,
           judged: str, config_warnings: list[str], seconds: float) -> None:
    state = {
        "result": result, "sources": out.sources, "role": out.config.k3s.role, "seen": seen,
        "judged_by": judged,
        "k3s_unit": k3s_applier.unit_for(out.config), "hostname": hostname,
        "node": node_name(paths.root / k3s_applier.CONFIG, hostname),
        "errors": out.errors, "warnings": out.warnings,
    }
    # a replay of this boot has the config's own warnings, and its commands' of its run
    note("state", {**state, "warnings": config_warnings})
    write_state(paths, state, seconds)


FIRST_RETRY_DELAY_S = 1.0


def fetch_config_url(url: Url, tries: int = URL_TRIES) -> bytes:
    delay, last = FIRST_RETRY_DELAY_S, ""
    for attempt in range(tries):
        try:
            return fetch_bytes(url, MAX_CONFIG_URL_BYTES)
        except OsbError as exc:
            last = str(exc)
            if "refused" in last:  # a rule, not the network: trying again will not help
                break
        if attempt < tries - 1:
            time.sleep(delay)
            delay *= 2
    raise OsbError(f"config_url: {last} (after {attempt + 1} tries)")


def online(paths: AgentPaths, facts: Facts) -> list[str]:
    """Network-dependent sources; returns warnings (none of this may fail the boot)."""
    warnings: list[str] = []
    _, _, url = collect(paths)
    if url:
        try:
            data = fetch_config_url(url)
            parse_source(data, f"config_url {url.url}")
            write_atomic(paths.config_url_cache, data, 0o600)  # may hold tokens
        except OsbError as exc:
            warnings.append(f"{exc} (using the cached copy)")
    verdict, _ = resolve(paths, facts)
    if digest(verdict.merged) != (read_json(paths.state_file) or {}).get("seen"):
        say("config changed since boot: applying it")
        boot(paths, facts)
    if verdict.config is not None:
        cfg = verdict.config
        warnings += ssh_keys.fetch_remote_keys(cfg, paths.root)
        ssh_keys.apply(cfg, facts, paths.root)
        warnings += k3s_applier.fetch_manifests(cfg, paths.root)
        warnings += k3s_applier.fetch_airgap_images(cfg, paths.root)
    for w in warnings:
        say(f"warning: {w}")
    return warnings
