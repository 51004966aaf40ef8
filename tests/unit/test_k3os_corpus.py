"""The k3OS config corpus (tests/data/k3os-corpus/, issue 16): every file applied by the
agent's `boot` on a temporary root, then compared key by key with what k3OS does with
it (tests/data/k3os-corpus/expected.yaml).

What k3OS does is read from its source at rancher/k3os@8cdfdf2675f1a4c06b2413fa8e3b669a8729a4a2
(each corpus file's `# expect:` lines say which part): pkg/config/read.go (sources, their
order, the kernel command line), pkg/config/rename.go and coerce.go (spellings and
coercions), pkg/config/config.go (the structs: a wrong type makes ReadConfig fail, and the
stage applies nothing), pkg/cc/apply.go and pkg/cc/funcs.go (the appliers of each stage;
ApplyK3S's role, K3S_URL, token, labels and taints; ApplyEnvironment), pkg/command (sh -c,
a list stops at its first failure), pkg/writefile, pkg/sysctl, pkg/module, pkg/ssh,
libexec/k3os/bootstrap (user rancher), and k3s's install.sh as k3OS runs it.

Each key of an expectation holds `k3os:` (k3OS's result), and where osbuilder deliberately
differs `osbuilder:` (its result) with `why:`; a difference nobody has explained yet is
marked `xfail_reason:` and recorded as a known failure (strict: once osbuilder matches
k3OS, the test fails until the mark is removed). The vocabulary of the keys is at the top
of expected.yaml; `observe` below reads each from the temp root.

The node has booted once before with a small good config (`PRIME`), so a refused file
shows what osbuilder does instead: its last good config. Commands are recorded, never run
(`boot`'s command runner is replaced); the run_cmd stage is the agent's `run-cmd` path
(the last good config's run_cmd, when `boot` left its marker). data_sources is compared as
the list the config names (what the agent reads today; probing through cloud-init is in
progress).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuilder.node.configure import boot, fallback
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.nodeconfig.appliers import dns, kernel, timesync
from osbuilder.shared.nodeconfig.appliers import environment as env_applier
from osbuilder.shared.nodeconfig.appliers import k3s as k3s_applier
from osbuilder.shared.nodeconfig.appliers.ssh_keys import is_remote
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.loader import load_bytes
from osbuilder.shared.nodeconfig.model import Command
from osbuilder.shared.nodeconfig.sources import K3OS_LOCAL, K3OS_LOCAL_DIR
from tests.unit.test_apply_fs import IS_ROOT, make_root

CORPUS = Path(__file__).resolve().parents[1] / "data/k3os-corpus"
EXPECTED: dict[str, Any] = yaml.safe_load((CORPUS / "expected.yaml").read_text())
NOT_CORPUS = ("README.md", "expected.yaml")
FILES = sorted(p.name for p in CORPUS.iterdir() if p.name not in NOT_CORPUS)
FACTS = Facts(macs=("52:54:00:ab:cd:ef",), wireless=("wlan0",), serial=None, hostname=None)
# the config the node booted with before (its last good config)
PRIME = "hostname: last-good-node\n"
PLACES = ("boot", "k3os_local", "k3os_config_d", "user_data", "cmdline")
STAGES = ("init_cmd", "boot_cmd", "run_cmd")


def corpus_text(name: str) -> str:
    """A YAML file as it is; a .cmdline file's command line (its non-comment lines)."""
    text = (CORPUS / name).read_text()
    if name.endswith(".cmdline"):
        return " ".join(line for line in text.splitlines()
                        if line.strip() and not line.startswith("#"))
    return text


def make_node(tmp: Path) -> AgentPaths:
    root = make_root(tmp / "root")
    (tmp / "boot").mkdir()
    (tmp / "cmdline").write_text("")
    return AgentPaths(root=root, cmdline=tmp / "cmdline", boot_dir=tmp / "boot",
                      image_default=tmp / "none.yaml", user_data=tmp / "user-data.txt",
                      instance_data=tmp / "none.json", state_dir=root / "var/lib/osbuilder")


def place(paths: AgentPaths, where: str, text: str) -> None:
    """Where k3OS read the file -> where osbuilder reads the same thing."""
    targets = {"boot": paths.boot_dir / "config.yaml",  # k3OS: /k3os/system/config.yaml
               "k3os_local": paths.root / K3OS_LOCAL,
               "k3os_config_d": paths.root / K3OS_LOCAL_DIR / "config.yaml",
               "user_data": paths.user_data,  # k3OS: /run/config/userdata (run stage)
               "cmdline": paths.cmdline}
    target = targets[where]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


# --- reading what the agent left on the temp root -------------------------------------

def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _settings(path: Path) -> dict[str, str]:
    """key = value lines (sysctl.d) or Key=value lines (systemd drop-ins)."""
    out = {}
    for line in _lines(path):
        key, sep, value = line.partition("=")
        if sep and not line.startswith("["):
            out[key.strip()] = value.strip()
    return out


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in _lines(path):
        (word,) = shlex.split(line)  # NAME='value' or NAME="escaped", as sh reads it
        name, _, value = word.partition("=")
        out[name] = value
    return out


def _servers(path: Path, primary: str, fallback_key: str) -> dict[str, list[str]]:
    s = _settings(path)
    out = {}
    if s.get(primary):
        out["primary"] = s[primary].split()
    if s.get(fallback_key):
        out["fallback"] = s[fallback_key].split()
    return out


def _names(root: Path, table: str) -> dict[int, str]:
    return {int(f[2]): f[0] for f in (line.split(":") for line in _lines(root / "etc" / table))
            if len(f) > 2 and f[2].isdigit()}


def _file(root: Path, path: str, shape: dict[str, Any]) -> dict[str, Any] | None:
    p = root / path.lstrip("/")
    if not p.is_file():
        return None
    st = p.stat()
    data = p.read_bytes()
    out: dict[str, Any] = {"mode": f"{st.st_mode & 0o7777:04o}"}
    if "owner" in shape:
        user = _names(root, "passwd").get(st.st_uid, str(st.st_uid))
        out["owner"] = f"{user}:{_names(root, 'group').get(st.st_gid, str(st.st_gid))}"
    if "sha256" in shape:
        out["sha256"] = hashlib.sha256(data).hexdigest()
    else:
        out["content"] = data.decode(errors="replace")
    return out


def _shadow(root: Path) -> dict[str, str]:
    return {f[0]: f[1] for f in (line.split(":") for line in _lines(root / "etc/shadow"))
            if len(f) > 1}


def _password(field: str, wanted: Any) -> str:
    if not field or field[0] in "!*":
        return "unset"
    if isinstance(wanted, str) and wanted.startswith("plain:"):
        context = importlib.import_module("passlib.context").CryptContext(
            schemes=["sha512_crypt", "sha256_crypt", "md5_crypt"])
        if context.identify(field) and context.verify(wanted[6:], field):
            return wanted
    return f"crypt:{field}"


WPA_NETWORK = re.compile(r"network=\{(.*?)\}", re.S)


def _wifi(root: Path, wanted: list[dict[str, str]]) -> list[dict[str, str]]:
    """The networks of wlan0 in order; a psk is checked against the passphrase the
    expectation names (the file holds only the derived key)."""
    path = root / "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
    if not path.is_file():
        return []
    out = []
    for i, block in enumerate(WPA_NETWORK.findall(path.read_text())):
        s = dict(line.strip().partition("=")[::2] for line in block.strip().splitlines())
        ssid = s["ssid"]
        name = ssid[1:-1] if ssid.startswith('"') else bytes.fromhex(ssid).decode()
        net = {"name": name}
        if "psk" in s:
            phrase = wanted[i].get("passphrase", "") if i < len(wanted) else ""
            psk = hashlib.pbkdf2_hmac("sha1", phrase.encode(), name.encode(), 4096, 32).hex()
            net["passphrase"] = phrase if s["psk"] == psk else "(another passphrase)"
        out.append(net)
    return out


def _k3s(root: Path) -> dict[str, Any]:
    text = (root / k3s_applier.CONFIG).read_text() if (root / k3s_applier.CONFIG).is_file() \
        else ""
    cfg = yaml.safe_load(text) or {}
    assert isinstance(cfg, dict)
    return cfg


def _values(v: Any) -> list[str]:
    items = v if isinstance(v, list) else [v]
    return ["true" if x is True else "false" if x is False else str(x) for x in items]


@dataclass
class Boot:
    """One corpus file's boot: what the agent said and did beside the files."""

    paths: AgentPaths
    printed: str
    errors: list[str]
    warnings: list[str]
    config: Any  # the NodeConfig the agent applied (the fallback when it refused)
    commands: list[dict[str, str | list[str]]]
    rewritten_for: list[str]  # stages that found the write_files freshly written
    files_at_first_stage: dict[str, dict[str, Any] | None]


def observe(b: Boot, key: str, wanted: Any) -> Any:
    """The value of `key` on the temp root, in expected.yaml's vocabulary; `wanted` (the
    expectation) only names what to look at (file paths, a passphrase to check)."""
    root = b.paths.root
    k3s = _k3s(root)
    if key == "applied":
        if not b.errors:
            return "all"
        return "last_good" if "(kept last good config)" in b.printed else "partial"
    if key == "hostname":
        return (root / "etc/hostname").read_text().strip()
    if key == "node_name":
        state = yaml.safe_load(b.paths.state_file.read_text())
        return state["node"]
    if key == "k3s_role":
        wants = root / k3s_applier.WANTS
        roles = [r for r, unit in k3s_applier.UNITS.items() if (wants / unit).is_symlink()]
        return roles[0] if len(roles) == 1 else roles or "none"
    if key == "k3s_server_url":
        return k3s.get("server")
    if key == "k3s_token":
        return k3s.get("token")
    if key == "k3s_labels":
        return sorted(_values(k3s.get("node-label", [])))
    if key == "k3s_taints":
        kubelet = [a.partition("=")[2] for a in _values(k3s.get("kubelet-arg", []))
                   if a.startswith("register-with-taints=")]
        return _values(k3s.get("node-taint", [])) + kubelet[-1:]
    if key == "k3s_args":
        shown = ("server", "token", "node-label", "node-taint")
        return {k: _values(v) for k, v in k3s.items() if k not in shown}
    if key == "k3s_environment":
        return _env_file(root / k3s_applier.ENVIRONMENT)
    if key == "environment":
        return _env_file(root / env_applier.FILE)
    if key == "files":
        return {p: b.files_at_first_stage.get(p) for p in wanted}
    if key == "sysctl":
        return _settings(root / kernel.SYSCTL)
    if key == "modules":
        options = {line.split()[1]: " ".join(line.split()[2:])
                   for line in _lines(root / kernel.OPTIONS)}
        return [f"{m} {options[m]}" if m in options else m
                for m in _lines(root / kernel.MODULES)]
    if key == "dns":
        return _servers(root / dns.DROPIN, "DNS", "FallbackDNS")
    if key == "ntp":
        return _servers(root / timesync.DROPIN, "NTP", "FallbackNTP")
    if key == "wifi":
        return _wifi(root, wanted if isinstance(wanted, list) else [])
    if key == "password":
        return _password(_shadow(root).get("rancher", ""), wanted)
    if key == "ssh_keys":
        online = _lines(b.paths.online_marker)
        return {"literal": _lines(root / "home/rancher/.ssh/authorized_keys"),
                "fetched_online": [e for e in b.config.ssh_authorized_keys if is_remote(e)]
                if "ssh_authorized_keys" in online else []}
    if key == "commands":
        return b.commands
    if key == "files_rewritten_for":
        return b.rewritten_for
    if key == "data_sources":
        return list(b.config.data_sources)
    if key == "ignored_keys":
        # "<source>: <key path>: unknown key" (or "...: another spelling of X, ignored")
        return [w.split(": ", 1)[1].rsplit(": ", 1)[0] for w in b.warnings]
    if key == "install":
        ins = b.config.install
        return {k: v for k, v in (("device", ins.device), ("silent", ins.silent),
                                  ("force_efi", ins.force_efi), ("power_off", ins.power_off),
                                  ("no_format", ins.no_format)) if v}
    raise AssertionError(f"expected.yaml names a key the test cannot observe: {key}")


def file_shapes(keys: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every path the `files` expectation names, with the fields to read back."""
    shapes: dict[str, dict[str, Any]] = {}
    spec = keys.get("files", {})
    for side in ("k3os", "osbuilder"):
        for path, entry in (spec.get(side) or {}).items():
            shapes.setdefault(path, {}).update(entry or {})
    return shapes


def run_boot(tmp: Path, name: str) -> Boot:
    spec = EXPECTED["files"][name]
    keys = spec["keys"]
    paths = make_node(tmp)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        place(paths, "boot", PRIME)
        assert not boot(paths, FACTS, lambda *_: []).errors, quiet.getvalue()
    (paths.boot_dir / "config.yaml").unlink()
    place(paths, spec.get("place", "boot"), corpus_text(name))
    shapes = file_shapes(keys)
    first: dict[str, dict[str, Any] | None] = {}
    commands: list[dict[str, str | list[str]]] = []
    rewritten: list[str] = []

    def record(stage: str, cmds: tuple[Command, ...], env: dict[str, str]) -> list[str]:
        if not first:
            first.update({p: _file(paths.root, p, s) for p, s in shapes.items()})
        commands.extend({stage: c if isinstance(c, str) else list(c)} for c in cmds)
        if cmds and "files_rewritten_for" in keys:
            # Were this stage's files written for it? Then take them away, as a command
            # that changes them would: the next stage finds them only if written again.
            targets = [paths.root / p.lstrip("/") for p, s in shapes.items() if s]
            if targets and all(t.is_file() for t in targets):
                rewritten.append(stage)
            for t in targets:
                t.unlink(missing_ok=True)
        return []

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        out = boot(paths, FACTS, record)
        if paths.run_cmd_marker.is_file():  # osbuilder-agent run-cmd
            cfg = fallback(paths)[0]
            record("run_cmd", cfg.run_cmd, dict(cfg.k3s.environment))
    return Boot(paths, printed.getvalue(), out.errors, list(out.warnings), out.config,
                commands, rewritten, first)


@dataclass(frozen=True)
class KeyResult:
    file: str
    key: str
    status: str  # equal, documented, xfail, MISMATCH, XPASS
    k3os: Any
    expected: Any  # what osbuilder should show: k3OS's result, or its documented own
    observed: Any
    note: str = ""

    def __str__(self) -> str:
        return (f"{self.file} {self.key}: {self.status}\n    k3OS:      {self.k3os!r}\n"
                f"    expected:  {self.expected!r}\n    osbuilder: {self.observed!r}"
                + (f"\n    ({self.note})" if self.note else ""))


def _comparable(key: str, value: Any) -> Any:
    if key == "files" and isinstance(value, dict) and not IS_ROOT:
        # without root the agent cannot chown: owners are compared only as root
        return {p: {k: v for k, v in (e or {}).items() if k != "owner"} if e else e
                for p, e in value.items()}
    return value


def compare(name: str, b: Boot) -> list[KeyResult]:
    out = []
    for key, spec in EXPECTED["files"][name]["keys"].items():
        assert "k3os" in spec, f"{name} {key}: no k3os value"
        assert ("osbuilder" in spec) == ("why" in spec), f"{name} {key}: osbuilder needs why"
        wanted = spec.get("osbuilder", spec["k3os"])
        seen = observe(b, key, wanted)
        same = _comparable(key, seen) == _comparable(key, wanted)
        if "xfail_reason" in spec:
            k3os_same = _comparable(key, seen) == _comparable(key, spec["k3os"])
            status, note = ("XPASS", "matches k3OS now: remove xfail_reason") if k3os_same \
                else ("xfail", spec["xfail_reason"])
        elif same:
            status, note = ("documented", spec["why"]) if "osbuilder" in spec else ("equal", "")
        else:
            status, note = "MISMATCH", spec.get("why", "")
        out.append(KeyResult(name, key, status, spec["k3os"], wanted, seen, note))
    return out


@contextlib.contextmanager
def no_fsync() -> Iterator[None]:
    """fsync orders writes against power cuts; on a throwaway temp root it only costs time
    (most of a corpus run), and what is written stays the same."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", lambda fd: None)
        yield


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[KeyResult]]:
    with no_fsync():
        return {name: compare(name, run_boot(tmp_path_factory.mktemp(name[:2]), name))
                for name in FILES}


def test_every_corpus_file_has_one_expectation() -> None:
    assert sorted(EXPECTED["files"]) == FILES
    for name, spec in EXPECTED["files"].items():
        assert spec.get("place", "boot") in PLACES, name
        assert name.endswith(".cmdline") == (spec.get("place") == "cmdline"), name
        assert spec["keys"].keys() >= {"applied", "k3s_role"}, name
        text = (CORPUS / name).read_text()
        assert text.startswith("# source: "), f"{name}: cite the source on the first line"
        assert "# expect: " in text, name


@pytest.mark.parametrize("name", FILES)
def test_corpus_file(name: str, results: dict[str, list[KeyResult]]) -> None:
    got = results[name]
    bad = [r for r in got if r.status in ("MISMATCH", "XPASS")]
    assert not bad, "\n".join(map(str, bad))
    known = [r for r in got if r.status == "xfail"]
    if known:
        pytest.xfail("; ".join(f"{r.key}: {r.note}" for r in known))


def test_osb_has_what_rancher_has(tmp_path: Path) -> None:
    """osbuilder's own login user gets the password and keys k3OS gave `rancher`
    (libexec/k3os/bootstrap made only rancher): checked on the corpus files that set
    both."""
    for name in ("01-readme-full-sample.yaml", "26-packer-vagrant.yaml"):
        with no_fsync():
            b = run_boot(tmp_path / name[:2], name)
        shadow = _shadow(b.paths.root)
        assert shadow["osb"] == shadow["rancher"] != "!"
        keys = [(b.paths.root / f"home/{u}/.ssh/authorized_keys").read_text()
                for u in ("osb", "rancher")]
        assert keys[0] == keys[1] and "ssh-rsa" in keys[0]


def test_strict_refuses_exactly_the_ignored_keys() -> None:
    """`validate-config --strict` (for CI): the keys k3OS ignored silently are errors."""
    for name in FILES:
        spec = EXPECTED["files"][name]
        if spec.get("place") == "cmdline":
            continue
        keys = spec["keys"].get("ignored_keys", {})
        ignored = keys.get("osbuilder", keys.get("k3os", []))
        lax = load_bytes(corpus_text(name), name)
        strict = load_bytes(corpus_text(name), name, strict=True)
        extra = [p for p in strict.problems if p not in lax.problems]
        assert [p.message for p in extra] == ["unknown key"] * len(ignored), name
        assert [p.where.split(": ", 1)[1] for p in extra] == ignored, name


def test_summary(results: dict[str, list[KeyResult]], capsys: pytest.CaptureFixture[str]
                 ) -> None:
    flat = [r for rs in results.values() for r in rs]
    count = {s: sum(r.status == s for r in flat) for s in
             ("equal", "documented", "xfail", "MISMATCH", "XPASS")}
    files_ok = sum(all(r.status in ("equal", "documented") for r in rs)
                   for rs in results.values())
    with capsys.disabled():
        print(f"\nk3OS corpus: {len(results)} files, {len(flat)} keys compared: "
              f"{count['equal']} equal to k3OS, {count['documented']} documented "
              f"differences, {count['xfail']} known failures (xfail), "
              f"{count['MISMATCH']} mismatches, {count['XPASS']} fixed xfails; "
              f"{files_ok} files fully as expected")
        for r in flat:
            if r.status not in ("equal", "documented"):
                print(f"  {r.file} {r.key}: {r.status}: k3OS {r.k3os!r}, "
                      f"osbuilder {r.observed!r}")
    # every key of expected.yaml was compared, none skipped
    assert len(flat) == sum(len(spec["keys"]) for spec in EXPECTED["files"].values())
    assert sum(count.values()) == len(flat)
