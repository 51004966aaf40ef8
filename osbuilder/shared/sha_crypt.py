"""sha512-crypt ($6$, the /etc/shadow format) through the system's libcrypt (libxcrypt,
Debian's libcrypt1: what PAM and shadow use to check the same hashes).

Why not passlib: Python 3.13 has no crypt module, so Debian's passlib reaches the same
libcrypt through legacycrypt, which imports ctypes.util, and that shutil, bz2 and lzma.
Profiled in a node's first boot under TCG (cProfile as osbuilder-boot's ExecStart,
docs/benchmarks.md), `import passlib.hash` took 4.2 s of the agent's 11.8 s, the hash
itself 14 ms. Here: ctypes and one library, loaded only when a password is hashed or
verified (a config check and a config without a password load neither).
"""

from __future__ import annotations

from collections.abc import Callable

from osbuilder.shared.errors import OsbError

LIBRARY = "libcrypt.so.1"
PREFIX = "$6$"
# the algorithm's default, and glibc's and Debian's: a hash made with it does not name it
DEFAULT_ROUNDS = 5000
SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SALT_LEN = 16  # the longest salt the algorithm uses

_crypt: Callable[[bytes, bytes], bytes | None] | None = None


def _library_crypt() -> Callable[[bytes, bytes], bytes | None]:
    global _crypt
    if _crypt is None:
        import ctypes

        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError as e:
            raise OsbError(f"hashing a password needs {LIBRARY} "
                           "(Debian package libcrypt1)") from e
        fn = lib.crypt
        fn.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
        fn.restype = ctypes.c_char_p
        _crypt = fn
    return _crypt


def check(password: str) -> None:
    """Raise what hashing password would for the password itself: a NUL (C strings end
    there), text that is no UTF-8 (a lone surrogate from a YAML escape). Not the library:
    a config check loads none."""
    if "\0" in password:
        raise OsbError("a password cannot contain a NUL character")
    try:
        password.encode()
    except UnicodeEncodeError as e:
        raise OsbError(f"a password must be UTF-8 text; character {e.start + 1} is a lone "
                       "surrogate") from None


def crypt(password: str, setting: str) -> str:
    """crypt(3): the hash of password with the method, rounds and salt setting names
    (a whole hash is a setting too: its own prefix, rounds and salt)."""
    check(password)
    if "\0" in setting:
        raise OsbError("a crypt setting cannot contain a NUL character")
    out = _library_crypt()(password.encode(), setting.encode())
    # libxcrypt answers a setting it cannot use with a failure token ("*0", "*1")
    if not out or out.startswith(b"*"):
        raise OsbError(f"libcrypt refused the setting {setting[:3]}...: not a sha512-crypt "
                       "hash")
    return out.decode("ascii")


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    """A new sha512-crypt hash with a random 16-character salt."""
    import secrets

    salt = "".join(secrets.choice(SALT_CHARS) for _ in range(SALT_LEN))
    spec = "" if rounds == DEFAULT_ROUNDS else f"rounds={rounds}$"
    return crypt(password, f"{PREFIX}{spec}{salt}")


def identify(hashed: str) -> bool:
    return hashed.startswith(PREFIX)


def verify(password: str, hashed: str) -> bool:
    """True when hashed is a sha512-crypt hash of password."""
    if not identify(hashed):
        return False
    import hmac

    try:
        return hmac.compare_digest(crypt(password, hashed), hashed)
    except OsbError:
        return False
