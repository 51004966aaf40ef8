"""sha512-crypt through libcrypt (osbuilder.shared.sha_crypt).

The expected hashes are the test vectors of the algorithm's specification (Ulrich Drepper,
"Unix crypt using SHA-256 and SHA-512", https://www.akkadia.org/drepper/SHA-crypt.txt,
the SHA-512 table); passlib's pure-Python implementation (its `builtin` backend, not the
libcrypt one) checks random passwords and salts, where the host has passlib."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osbuilder.shared import sha_crypt
from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.appliers import users
from osbuilder.shared.nodeconfig.model import parse

# (password, setting, hash) from the specification's SHA-512 vectors
SPEC = [
    ("Hello world!", "$6$saltstring",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYE"
     "dFCoEOfaS35inz1"),
    ("Hello world!", "$6$rounds=10000$saltstringsaltstring",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0"
     "Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."),
    ("This is just a test", "$6$rounds=5000$toolongsaltstring",
     "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxU"
     "hx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"),
]
PASSWORDS = st.text(st.characters(codec="utf-8", blacklist_characters="\0"), max_size=40)
SALTS = st.text(st.sampled_from(sha_crypt.SALT_CHARS), min_size=1, max_size=16)


@pytest.mark.parametrize("password,setting,expected", SPEC)
def test_specification_vectors(password: str, setting: str, expected: str) -> None:
    assert sha_crypt.crypt(password, setting) == expected
    assert sha_crypt.verify(password, expected)
    assert not sha_crypt.verify(password + "x", expected)


def test_new_hash_has_a_random_salt_and_the_default_rounds_unnamed() -> None:
    a, b = sha_crypt.hash_password("pw"), sha_crypt.hash_password("pw")
    assert a != b
    for h in (a, b):
        prefix, salt, digest = h[1:].split("$")
        assert prefix == "6" and len(salt) == 16 and len(digest) == 86
        assert set(salt) <= set(sha_crypt.SALT_CHARS)
        assert sha_crypt.verify("pw", h)
    assert sha_crypt.hash_password("pw", 6000).startswith("$6$rounds=6000$")


@contextmanager
def passlib_builtin() -> Iterator[Any]:
    ph = pytest.importorskip("passlib.hash", reason="passlib not installed here")
    h = ph.sha512_crypt
    before = h.get_backend()
    h.set_backend("builtin")
    try:
        yield h
    finally:
        h.set_backend(before)


@settings(max_examples=40, deadline=None)
@given(PASSWORDS, SALTS)
def test_same_hash_as_an_implementation_of_its_own(password: str, salt: str) -> None:
    with passlib_builtin() as h:
        expected = h.using(salt=salt, rounds=sha_crypt.DEFAULT_ROUNDS).hash(password)
        assert sha_crypt.crypt(password, f"$6${salt}") == expected


@pytest.mark.parametrize("other", [
    "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/",  # md5-crypt: not what this module makes
    "!", "*", "", "$6$", "plain text",
])
def test_verify_is_false_for_anything_else(other: str) -> None:
    assert not sha_crypt.verify("pw", other)


def test_nul_is_refused_with_the_field_named() -> None:
    with pytest.raises(OsbError, match="NUL"):
        sha_crypt.hash_password("a\0b")
    with pytest.raises(OsbError, match=r"^k3os\.password: .*NUL"):
        users.check_password(parse({"k3os": {"password": "a\0b"}}))
    with pytest.raises(OsbError, match=r"^k3os\.password: .*NUL"):
        users.password_hash("a\0b", None)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=20).filter(lambda p: not p.startswith("$")))
def test_any_text_is_a_hash_or_an_error_naming_the_field(password: str) -> None:
    # plain text: one starting with "$" is a crypt string, kept as given, not hashed
    # (tests/unit/test_apply_users.py); a YAML escape can make a NUL or a lone surrogate:
    # never a traceback
    try:
        assert sha_crypt.verify(password, users.password_hash(password, None))
    except OsbError as e:
        assert str(e).startswith("k3os.password: ")
        assert "\0" in password or any(0xD800 <= ord(c) <= 0xDFFF for c in password)


def test_a_setting_libcrypt_refuses_is_an_error() -> None:
    with pytest.raises(OsbError, match="refused"):
        sha_crypt.crypt("pw", "$6$rounds=x$salt")


def test_hashing_imports_neither_passlib_nor_ctypes_util() -> None:
    # the point of the module: a node's first boot imported passlib (4.2 s under TCG)
    # and a config without a password (or a config check) loads no ctypes at all
    code = ("import sys\n"
            "from osbuilder.shared.nodeconfig.appliers import users\n"
            "from osbuilder.shared.nodeconfig.model import parse\n"
            "users.check_password(parse({'k3os': {'password': 'pw'}}))\n"
            "print('ctypes' in sys.modules)\n"
            "users.password_hash('pw', None)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('passlib', 'ctypes.util',"
            " 'legacycrypt'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "[]"]
