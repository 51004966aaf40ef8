"""Bundle download (resume, space check) against a local HTTP server, and the health gate's
polling verdicts with a fake clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from osbuilder.node.upgrade import bundle_download as fetch
from osbuilder.node.upgrade.bundle_download import fetch_bundle
from osbuilder.node.upgrade.health_gate import evaluate, user_check
from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.model import HealthCheck
from tests.helpers.http_files import serve_files


@pytest.fixture
def payload(tmp_path: Path) -> bytes:
    (tmp_path / "www").mkdir()
    data = os.urandom(3 << 20)
    (tmp_path / "www/b.raucb").write_bytes(data)
    return data


def test_interrupted_download_resumes_with_range(tmp_path: Path, payload: bytes) -> None:
    said: list[str] = []
    dest = tmp_path / "dl/update.raucb"
    with serve_files(tmp_path / "www") as www:
        www.cut_after = 1 << 20
        with pytest.raises(OsbError, match=r"interrupted|stopped at"):
            fetch_bundle(f"http://127.0.0.1:{www.port}/b.raucb", dest, said.append)
        part = dest.with_name("update.raucb.part")
        assert not dest.exists() and 0 < part.stat().st_size < len(payload)
        have = part.stat().st_size
        fetch_bundle(f"http://127.0.0.1:{www.port}/b.raucb", dest, said.append)
    assert dest.read_bytes() == payload and not part.exists()
    assert www.requests[-1] == ("/b.raucb", f"bytes={have}-")
    assert any(f"resuming at {have >> 20} MiB" in s for s in said)
    assert any(s.startswith("downloaded 100%") for s in said)


def test_not_enough_space_is_named_before_writing(tmp_path: Path, payload: bytes,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "SPARE_BYTES", 1 << 50)
    dest = tmp_path / "dl/update.raucb"
    with serve_files(tmp_path / "www") as www, \
            pytest.raises(OsbError, match=r"not enough space on .*dl for the bundle: 3 MiB"):
        fetch_bundle(f"http://127.0.0.1:{www.port}/b.raucb", dest, lambda s: None)
    assert list(dest.parent.iterdir()) == []


def test_missing_bundle_is_an_http_error(tmp_path: Path, payload: bytes) -> None:
    with serve_files(tmp_path / "www") as www, pytest.raises(OsbError, match="HTTP 404"):
        fetch_bundle(f"http://127.0.0.1:{www.port}/nope.raucb", tmp_path / "x", lambda s: None)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_gate_passes_once_every_check_passes_together() -> None:
    clock = Clock()
    ready = iter([False, False, True, True])
    checks = [lambda: (True, "k3s active"), lambda: (next(ready), "node n1 Ready")]
    v = evaluate(checks, 60, clock.now, clock.sleep)
    assert v.ok and v.reason == "k3s active; node n1 Ready" and clock.t == 10


def test_gate_fails_at_the_deadline_naming_the_check() -> None:
    clock = Clock()
    said: list[str] = []
    checks = [lambda: (True, "k3s active"), lambda: (False, "node n1 Ready=False")]
    v = evaluate(checks, 60, clock.now, clock.sleep, say=said.append)
    assert not v.ok and v.reason == "not healthy within 60 s: node n1 Ready=False"
    assert clock.t == 60 and said == ["health gate waiting: node n1 Ready=False"]


def test_user_checks_command_and_url(tmp_path: Path, payload: bytes) -> None:
    assert user_check(HealthCheck("ok", "true", None))()[0]
    ok, why = user_check(HealthCheck("disk", ("sh", "-c", "echo full >&2; exit 3"), None))()
    assert not ok and why == "check disk: exit 3 full"
    with serve_files(tmp_path / "www") as www:
        assert user_check(HealthCheck("app", None, f"http://127.0.0.1:{www.port}/b.raucb"))()[0]
        ok, why = user_check(HealthCheck("app", None, f"http://127.0.0.1:{www.port}/x"))()
    assert not ok and "404" in why
