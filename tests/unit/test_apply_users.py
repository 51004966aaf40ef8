"""Passwords in /etc/shadow and the home of `osb`.

The applier hashes with the system's libcrypt (osbuilder.shared.sha_crypt); passlib checks
the hashes here, an implementation of its own: those checks skip, saying so, where the
host lacks it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.appliers import users
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import parse
from tests.unit.test_apply_fs import IS_ROOT, make_root, mode

FACTS = Facts(macs=(), wireless=(), serial=None, hostname=None)
# The sha512-crypt test vector of "Hello world!" from the algorithm's specification.
CRYPT = ("$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiB"
         "FdcbYEdFCoEOfaS35inz1")


def shadow(root: Path) -> dict[str, list[str]]:
    lines = (root / "etc/shadow").read_text().splitlines()
    return {f[0]: f for f in (line.split(":") for line in lines)}


def passlib_hash() -> Any:
    return pytest.importorskip("passlib.hash", reason="python3-passlib not installed here")


def test_plain_password_is_hashed_and_kept_on_reapply(tmp_path: Path) -> None:
    ph = passlib_hash()
    root = make_root(tmp_path)
    cfg = parse({"k3os": {"password": "s3cret pw"}})
    users.apply(cfg, FACTS, root)
    first = shadow(root)
    assert first["osb"][1].startswith("$6$")
    assert ph.sha512_crypt.verify("s3cret pw", first["osb"][1])
    assert first["root"][1] == "!*"  # root_login is off
    assert first["daemon"] == ["daemon", "*", "19700", "0", "99999", "7", "", "", ""]
    assert first["osb"][2:] == ["19700", "0", "99999", "7", "", "", ""]  # only field 2
    mtime = (root / "etc/shadow").stat().st_mtime_ns
    users.apply(cfg, FACTS, root)  # a random salt would change the file: it must not
    assert (root / "etc/shadow").stat().st_mtime_ns == mtime
    users.apply(parse({"k3os": {"password": "other pw"}}), FACTS, root)
    assert ph.sha512_crypt.verify("other pw", shadow(root)["osb"][1])


def test_crypt_string_is_used_verbatim_and_root_login_shares_it(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    users.apply(parse({"k3os": {"password": CRYPT, "root_login": True}}), FACTS, root)
    s = shadow(root)
    assert s["osb"][1] == CRYPT and s["root"][1] == CRYPT
    assert mode(root / "etc/shadow") == 0o640
    if IS_ROOT:
        assert (root / "etc/shadow").stat().st_gid == 42  # group shadow


def test_no_password_locks_both_accounts(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc/shadow").write_text("root:$6$x$y:1:0:99999:7:::\nosb:$6$x$y:1:0:99999:7:::\n")
    users.apply(parse({}), FACTS, root)
    assert shadow(root)["osb"][1] == "!"
    assert shadow(root)["root"][1] == "!*"


def test_missing_shadow_lines_are_added(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc/shadow").write_text("daemon:*:19700:0:99999:7:::\n")
    users.apply(parse({"k3os": {"password": CRYPT}}), FACTS, root)
    s = shadow(root)
    assert s["osb"][1] == CRYPT and s["root"][1] == "!*" and "daemon" in s


def test_set_shadow_expires_or_clears_the_last_change_day() -> None:
    """Day 0 of the last change makes login ask for a new password (shadow(5)): set for
    the one-time password (first_login), cleared for any other, other fields kept."""
    text = "daemon:*:19700:0:99999:7:::\nosb:!:19700:0:99999:7:::\n"
    expired = users.set_shadow(text, {"osb": "$6$a$b", "rancher": "$6$a$b"}, expired=True)
    assert expired.splitlines() == ["daemon:*:19700:0:99999:7:::",
                                    "osb:$6$a$b:0:0:99999:7:::",
                                    "rancher:$6$a$b:0:0:99999:7:::"]
    assert users.set_shadow(expired, {"osb": "$6$c$d"}).splitlines()[1] == \
        "osb:$6$c$d::0:99999:7:::"
    assert users.set_shadow(text, {"osb": "$6$c$d"}).splitlines()[1] == \
        "osb:$6$c$d:19700:0:99999:7:::"


@pytest.mark.parametrize("crypt", ["$6$a:b$c", "$6$a\nb", "$6$a\x00b", "$6$a b", "$6$a\tb",
                                   "$6$a;b", "$6$a*b", "$6$a!b", "$6$a\\b", "$6$é", "$6$\ud800"])
def test_bad_crypt_string_names_the_key(tmp_path: Path, crypt: str) -> None:
    # crypt(5), libxcrypt: hashes are printable ASCII without whitespace or : ; * ! \
    root = make_root(tmp_path)
    with pytest.raises(OsbError, match=r"k3os\.password: a crypt string cannot contain"):
        users.check_password(parse({"k3os": {"password": crypt}}))
    with pytest.raises(OsbError, match=r"k3os\.password: a crypt string cannot contain"):
        users.apply(parse({"k3os": {"password": crypt}}), FACTS, root)
    assert "$6$a" not in (root / "etc/shadow").read_text()


@pytest.mark.parametrize("crypt", [
    CRYPT, "$6$rounds=5000$salt$" + "a" * 86, "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG",
    "$2b$12$" + "./" * 26 + "ab", "$1$salt$abcdefghijklmnopqrstuv"])
def test_crypt_strings_of_each_method_are_taken(tmp_path: Path, crypt: str) -> None:
    root = make_root(tmp_path)
    users.apply(parse({"k3os": {"password": crypt}}), FACTS, root)
    assert shadow(root)["osb"][1] == crypt


@given(st.text(max_size=40))
def test_any_crypt_string_is_taken_as_a_hash_or_refused_by_name(rest: str) -> None:
    try:
        got = users.password_hash("$" + rest, None)
    except OsbError as e:
        assert str(e).startswith("k3os.password: a crypt string cannot contain")
        return
    assert got == "$" + rest
    assert all(0x21 <= ord(c) <= 0x7e and c not in ":;*!\\" for c in got)


def test_home_is_made_with_owner_and_mode(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    users.apply(parse({}), FACTS, root)
    home = root / "home/osb"
    assert home.is_dir() and mode(home) == 0o750
    if IS_ROOT:
        assert (home.stat().st_uid, home.stat().st_gid) == (1000, 1000)


def test_image_without_osb_is_a_clear_error(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(OsbError, match="the image has no user 'osb'"):
        users.apply(parse({}), FACTS, root)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to chown")
def test_home_owner_is_repaired(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "home/osb").mkdir(parents=True)
    os.chown(root / "home/osb", 0, 0)
    users.apply(parse({}), FACTS, root)
    assert (root / "home/osb").stat().st_uid == 1000
