"""A local HTTP server that plays the k3s channel server and GitHub release downloads.

TEST DOUBLE: the real k3s binary cannot be downloaded on the test machine, so the
"binary" served here is a small stand-in script (it prints its argv). Builds for users
fetch the real release from github.com/k3s-io/k3s.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

VERSION = "v1.31.4+k3s1"
STANDIN = b'''#!/usr/bin/python3
# k3s stand-in: TEST DOUBLE served by tests/helpers/k3s_fixture.py, never in a product
# build. It records how systemd started it, reports on the console, serves this node's
# status to the kubelet credential it writes (the upgrade health gate reads it), tells
# systemd it is ready (the k3s units are Type=notify), then as a server answers HTTP on
# :6443 and as an agent connects to the server named in its config.
import json, os, socket, sys, time
rec = {"argv": sys.argv[1:], "env": sorted(k for k in os.environ if k.isupper())}
try:
    rec["config"] = open("/etc/rancher/k3s/config.yaml").read()
except OSError:
    rec["config"] = None
os.makedirs("/var/lib/rancher/k3s-standin", exist_ok=True)
with open("/var/lib/rancher/k3s-standin/record.json", "w") as f:
    json.dump(rec, f)
def console(msg):
    with open("/dev/console", "w") as c:
        c.write("k3s-standin: " + msg + "\\n")
console("started " + json.dumps(rec["argv"]))
READY = True
# the name k3s registers: --node-name or its config's node-name, else the host name
# lower-cased (k3s pkg/agent/config getHostnameAndIPs); the node API knows no other
NODE = socket.gethostname().lower()
for line in (rec["config"] or "").splitlines():
    if line.startswith("node-name:"):
        NODE = line.split(":", 1)[1].strip().strip(chr(34) + chr(39))
if "--node-name" in rec["argv"]:
    NODE = rec["argv"][rec["argv"].index("--node-name") + 1]
def node_api():
    # like k3s: a kubelet credential in agent/kubelet.kubeconfig, and the node's status from
    # an HTTPS API on 127.0.0.1:6444 (k3s's local API endpoint); a self-signed cert made
    # with the image's openssl serves as CA, server and client cert at once
    import ssl, subprocess, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    d = "/var/lib/rancher/k3s/agent"
    os.makedirs(d, exist_ok=True)
    crt, key = d + "/standin.crt", d + "/standin.key"
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "3650", "-subj", "/CN=k3s-standin",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                       capture_output=True)
    with open(d + "/kubelet.kubeconfig", "w") as f:
        f.write("apiVersion: v1\\nkind: Config\\nclusters:\\n- name: local\\n  cluster:\\n"
                "    server: https://127.0.0.1:6444\\n    certificate-authority: " + crt +
                "\\nusers:\\n- name: kubelet\\n  user:\\n    client-certificate: " + crt +
                "\\n    client-key: " + key + "\\n")
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            name = self.path.rsplit("/", 1)[-1]
            # like the API server: no Node of another name (a LIST, "nodes?...", gets the
            # stand-in's one answer, which the watcher reports as a LIST without items)
            if "?" not in name and name != NODE:
                body = json.dumps({"kind": "Status", "status": "Failure", "reason": "NotFound",
                                   "code": 404, "message": 'nodes "' + name + '" not found'})
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())
                return
            cond = {"type": "Ready", "status": "True" if READY else "False",
                    "reason": "KubeletReady" if READY else "StandInNeverReady",
                    "message": "stand-in"}
            body = json.dumps({"kind": "Node", "metadata": {"name": name},
                               "status": {"conditions": [cond]}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    srv = ThreadingHTTPServer(("127.0.0.1", 6444), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    console("node API on 127.0.0.1:6444, node " + NODE + " Ready=" + str(READY))
node_api()
ns = os.environ.get("NOTIFY_SOCKET")
if ns:
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.connect("\\0" + ns[1:] if ns.startswith("@") else ns)
    n.sendall(b"READY=1")
url = next((l.split(":", 1)[1].strip() for l in (rec["config"] or "").splitlines()
            if l.startswith("server:")), "")
def reach(role):
    # like k3s: an agent, or a server joining a cluster (--server / K3S_URL), connects to
    # the server it names; the stand-in reports what answered
    hostport = url.split("//", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    for _ in range(120):
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                said = s.recv(100).decode().split("\\n")[-2]
                console(role + ": reached " + url + ": " + said)
                return
        except OSError:
            time.sleep(2)
if rec["argv"][:1] == ["server"]:
    if url:
        import threading
        threading.Thread(target=reach, args=("server joining",), daemon=True).start()
    srv = socket.create_server(("0.0.0.0", 6443))
    while True:
        conn, peer = srv.accept()
        console("server: connection from " + peer[0])
        conn.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\nk3s stand-in server\\n")
        conn.close()
reach("agent")
while True:
    time.sleep(3600)
'''
ASSETS = {"amd64": "k3s", "arm64": "k3s-arm64", "arm": "k3s-armhf"}


@dataclass
class K3sRelease:
    """What the fixture serves; tests change it to provoke failures."""

    version: str = VERSION
    files: dict[str, bytes] = field(default_factory=dict)
    sums_override: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    requests: list[str] = field(default_factory=list)
    ready: bool = True  # False: the node never turns Ready (a broken release)

    def __post_init__(self) -> None:
        script = STANDIN if self.ready else STANDIN.replace(b"READY = True", b"READY = False")
        for arch, asset in ASSETS.items():
            self.files[asset] = script + f"# {arch}\n".encode()

    def sums(self, arch: str) -> bytes:
        lines = []
        for name, data in sorted(self.files.items()):
            if name == ASSETS[arch] or name.endswith(f"-{arch}.tar.zst"):
                digest = self.sums_override.get(name, hashlib.sha256(data).hexdigest())
                lines.append(f"{digest}  {name}\n")
        return "".join(lines).encode()


def _handler(rel: K3sRelease) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = unquote(self.path)
            rel.requests.append(path)
            if rel.delay_s:
                time.sleep(rel.delay_s)
            if path.startswith("/channels/"):
                self.send_response(302)
                tag = rel.version.replace("+", "%2B")
                self.send_header("Location",
                                 f"https://github.com/k3s-io/k3s/releases/tag/{tag}")
                self.end_headers()
                return
            prefix = f"/releases/{rel.version}/"
            name = path.removeprefix(prefix) if path.startswith(prefix) else None
            body = None
            if name and name.startswith("sha256sum-") and name.endswith(".txt"):
                body = rel.sums(name.removeprefix("sha256sum-").removesuffix(".txt"))
            elif name in rel.files:
                body = rel.files[name]
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@dataclass
class Served:
    release: K3sRelease
    channel_url: str
    release_url: str


@contextmanager
def serve_k3s(release: K3sRelease | None = None) -> Iterator[Served]:
    rel = release or K3sRelease()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rel))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Served(rel, f"{base}/channels", f"{base}/releases")
    finally:
        server.shutdown()
        server.server_close()


def write_release_dir(dest: Path, release: K3sRelease | None = None) -> Path:
    """A K3S_DIR-style folder with the stand-in binaries and sha256 files."""
    rel = release or K3sRelease()
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in rel.files.items():
        (dest / name).write_bytes(data)
        (dest / name).chmod(0o755)
    for arch in ASSETS:
        (dest / f"sha256sum-{arch}.txt").write_bytes(rel.sums(arch))
    (dest / "VERSION").write_text(rel.version + "\n")
    return dest
