"""The documented node protocol: Node annotations and labels the controller and the node
watcher exchange, and the OSUpgrade API's coordinates."""

from __future__ import annotations

PREFIX = "osbuilder.io/"
# controller → node
DESIRED_VERSION = PREFIX + "desired-version"
BUNDLE_URL = PREFIX + "bundle-url"
REQUEST = PREFIX + "request"  # "<OSUpgrade uid>/<version>": one attempt, answered once
CORDONED = PREFIX + "cordoned"  # the controller cordoned the node (and so uncordons it)
# node → controller
STATE = PREFIX + "state"
STATE_FOR = PREFIX + "state-for"  # the request the state answers
VERSION = PREFIX + "version"  # the running image version
MESSAGE = PREFIX + "message"
BOARD_LABEL = PREFIX + "board"

# node states; the first four mean the node is still at work
WORKING = ("downloading", "installing", "rebooting", "verifying")
DONE, FAILED = "done", "failed"

GROUP, API_VERSION = "osbuilder.io", "v1alpha1"
OSUPGRADES = f"/apis/{GROUP}/{API_VERSION}/osupgrades"
NODES = "/api/v1/nodes"
SERVER_ROLE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


def request_id(uid: str, version: str) -> str:
    return f"{uid}/{version}"
