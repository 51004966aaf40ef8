"""The k3s stand-in (TEST DOUBLE) is Python that runs inside the image: a syntax error
there shows only as k3s never starting in every QEMU test, so it is compiled here."""

from __future__ import annotations

from tests.helpers.k3s_fixture import STANDIN


def test_standin_compiles() -> None:
    compile(STANDIN, "/usr/bin/k3s", "exec")
