"""The node watcher must not take an upgrade that just ended for one cut short. Found by
the 100-node scenario (tests/helpers/fleet_scale.py): the watcher read the upgrade record
("installing"), the upgrade then wrote "rebooting" and ended, the liveness check said
"not running", and the watcher started the same upgrade a second time. The installer
here ends the upgrade exactly between the two looks; the API server is the double (TEST
DOUBLE, tests/helpers/kube_double.py)."""

from __future__ import annotations

from pathlib import Path

from osbuilder.node.fleet import protocol as p
from osbuilder.node.fleet.informer import Informer
from osbuilder.node.fleet.watcher import NodeWatcher
from osbuilder.node.kubeapi import Endpoint, Kube
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.file_writes import read_json, write_json
from tests.helpers.kube_double import KubeDouble, serve

URL = "https://updates.example.com/pc/osbuilder-pc-1.4.0.raucb"
REQ = "uid-1/1.4.0"


class EndsWhenAsked:
    """An upgrade whose last step lands the moment the watcher asks if it still runs."""

    def __init__(self, paths: AgentPaths) -> None:
        self.paths, self.started = paths, 0

    def start(self, url: str) -> None:
        self.started += 1

    def running(self) -> bool:
        write_json(self.paths.upgrade_record, {"state": "rebooting", "source": URL,
                                               "started": 100, "to_slot": "b"})
        return False


def test_an_upgrade_ending_mid_look_is_not_started_again(tmp_path: Path) -> None:
    paths = AgentPaths(state_dir=tmp_path)
    write_json(paths.upgrade_record, {"state": "installing", "source": URL, "started": 100})
    write_json(tmp_path / "fleet-request.json", {"request": REQ, "url": URL,
                                                 "version": "1.4.0", "tries": 1,
                                                 "started": 100})
    api = KubeDouble()
    node = api.create("nodes", {"metadata": {"name": "n1", "annotations": {
        p.REQUEST: REQ, p.DESIRED_VERSION: "1.4.0", p.BUNDLE_URL: URL}}})
    installer = EndsWhenAsked(paths)
    with serve(api) as url:
        kube = Kube(Endpoint(url, None), "osbuilder-watch-node/n1")
        w = NodeWatcher(kube, "n1", paths, installer, lambda: "1.3.0", clock=lambda: 200.0)
        w.step(node, Informer(kube, p.NODES, lambda: None))
    ann = api.get("nodes", "n1")["metadata"]["annotations"]
    assert installer.started == 0, "the upgrade was started a second time"
    assert (ann[p.STATE], ann[p.STATE_FOR]) == ("rebooting", REQ)
    assert read_json(tmp_path / "fleet-request.json")["tries"] == 1
